-- Who asked and where, for rate limits and per-issue caps.
ALTER TABLE jobs ADD COLUMN author TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN repo TEXT NOT NULL DEFAULT '';
-- The comment a finished run should post. Saved before posting, so a restart
-- after the run posts it instead of running the agent again.
ALTER TABLE jobs ADD COLUMN outcome TEXT;
-- `work` jobs on one issue run one after another; `control` jobs (stop, status,
-- help, refusals) are answered at once, even while work runs.
ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT 'work';
-- A deferred job is not taken before this time (unix milliseconds).
ALTER TABLE jobs ADD COLUMN not_before INTEGER NOT NULL DEFAULT 0;

CREATE INDEX jobs_by_author ON jobs (author, created_at);
CREATE INDEX jobs_by_repo ON jobs (repo, created_at);

-- Event identities (instance, repository id, issue or comment id, action, update
-- time): Gitea's replay sends the same event under a new delivery id.
CREATE TABLE event_identities (
    identity     TEXT PRIMARY KEY NOT NULL,
    received_at  INTEGER NOT NULL
);
