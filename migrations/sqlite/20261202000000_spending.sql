-- What each agent run spent, for budgets and the issue's running total, and
-- when a writer last said `@kugetsu resume` on an issue: budgets count from then.
CREATE TABLE runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    issue        TEXT NOT NULL,      -- instance/owner/repo#number
    repo         TEXT NOT NULL,      -- instance/owner/repo
    instance     TEXT NOT NULL,
    job_id       INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,   -- unix milliseconds
    tokens       INTEGER NOT NULL,   -- input, output and reasoning
    cost         REAL NOT NULL       -- USD, as opencode reports it
);
CREATE INDEX runs_by_issue ON runs (issue, finished_at);
CREATE INDEX runs_by_repo ON runs (repo, finished_at);
CREATE INDEX runs_by_instance ON runs (instance, finished_at);

CREATE TABLE budget_resumes (
    issue  TEXT PRIMARY KEY NOT NULL,
    at     INTEGER NOT NULL
);
