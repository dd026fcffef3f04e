-- One row per issue that kugetsu has started work on.
CREATE TABLE issue_sessions (
    issue           TEXT PRIMARY KEY NOT NULL,   -- instance/owner/repo#number
    repo            TEXT NOT NULL,               -- instance/owner/repo
    session_id      TEXT,                        -- opencode session, once one exists
    branch          TEXT NOT NULL,
    worktree        TEXT NOT NULL,
    status          TEXT NOT NULL,               -- idle | running | failed
    last_pushed_sha TEXT,
    last_result     TEXT,                        -- JSON RunResult of the last good run
    last_error      TEXT,
    created_at      INTEGER NOT NULL,            -- unix milliseconds
    updated_at      INTEGER NOT NULL,
    last_run_at     INTEGER
);

CREATE INDEX issue_sessions_repo ON issue_sessions (repo);

-- A repository's primed session that new issue sessions are forked from.
CREATE TABLE base_sessions (
    repo        TEXT PRIMARY KEY NOT NULL,
    session_id  TEXT NOT NULL,
    worktree    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
