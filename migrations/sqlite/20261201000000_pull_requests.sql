-- The pull request kugetsu opened for an issue's branch. A mention on that
-- pull request continues the issue's session, so it is looked up both ways.
CREATE TABLE pull_requests (
    issue       TEXT PRIMARY KEY NOT NULL,   -- instance/owner/repo#number of the issue
    pull        TEXT NOT NULL UNIQUE,        -- instance/owner/repo#number of its pull request
    html_url    TEXT NOT NULL,
    created_at  INTEGER NOT NULL             -- unix milliseconds
);
