-- Set once the worker confirmed a job's trigger with the forge and its author's
-- permission: only such jobs count toward the rate limits.
ALTER TABLE jobs ADD COLUMN authorized INTEGER NOT NULL DEFAULT 0;

CREATE INDEX jobs_authorized_by_author ON jobs (authorized, author, created_at);
CREATE INDEX jobs_authorized_by_repo ON jobs (authorized, repo, created_at);

-- When each issue last got the reply for people without write access.
CREATE TABLE deny_replies (
    issue  TEXT PRIMARY KEY NOT NULL,
    at     INTEGER NOT NULL             -- unix milliseconds
);
