-- kugetsu's state on PostgreSQL: the SQLite schema (migrations/sqlite) as it
-- stands after 20261203000000_waits, in PostgreSQL's types. Timestamps are unix
-- milliseconds; JSON is kept as text, as in SQLite, and cast where a query looks
-- inside it; flags are 0/1 integers, so both backends read them the same way.

-- One row per issue that kugetsu has started work on.
CREATE TABLE issue_sessions (
    issue           TEXT PRIMARY KEY,            -- instance/owner/repo#number
    repo            TEXT NOT NULL,               -- instance/owner/repo
    session_id      TEXT,                        -- opencode session, once one exists
    branch          TEXT NOT NULL,
    worktree        TEXT NOT NULL,
    status          TEXT NOT NULL,               -- idle | running | failed
    last_pushed_sha TEXT,
    last_result     TEXT,                        -- JSON RunResult of the last good run
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_run_at     BIGINT
);
CREATE INDEX issue_sessions_repo ON issue_sessions (repo);

-- A repository's primed session that new issue sessions are forked from.
CREATE TABLE base_sessions (
    repo        TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    worktree    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Webhook deliveries seen, so a redelivery is not acted on twice. A stored
-- delivery is one statement (see `PostgresStore::enqueue`): the rows here are
-- inserted first, and the unique keys make a concurrent duplicate wait for the
-- first one's commit, then find it.
CREATE TABLE deliveries (
    instance     TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (instance, delivery_id)
);

-- Event identities: Gitea's replay sends the same event under a new delivery id.
CREATE TABLE event_identities (
    identity     TEXT PRIMARY KEY,
    received_at  BIGINT NOT NULL
);

-- Durable job queue: a job is stored before the webhook is answered.
CREATE TABLE jobs (
    id                 BIGSERIAL PRIMARY KEY,
    issue              TEXT NOT NULL,
    job                TEXT NOT NULL,                 -- JSON Job
    status             TEXT NOT NULL,                 -- pending | running | done | failed
    error              TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    author             TEXT NOT NULL DEFAULT '',
    repo               TEXT NOT NULL DEFAULT '',
    outcome            TEXT,
    lane               TEXT NOT NULL DEFAULT 'work',
    not_before         BIGINT NOT NULL DEFAULT 0,
    attempts           BIGINT NOT NULL DEFAULT 0,
    authorized         BIGINT NOT NULL DEFAULT 0,
    delivery_instance  TEXT,
    delivery_id        TEXT,
    identity           TEXT,
    run_error          TEXT
);
CREATE INDEX jobs_by_status ON jobs (status, issue, id);
CREATE INDEX jobs_authorized_by_author ON jobs (authorized, author, created_at);
CREATE INDEX jobs_authorized_by_repo ON jobs (authorized, repo, created_at);
CREATE INDEX jobs_by_lane ON jobs (lane, status, not_before, id);

-- Each issue's labels as last seen: Gitea reports only the new full set.
CREATE TABLE issue_labels (
    issue   TEXT PRIMARY KEY,
    labels  TEXT NOT NULL               -- JSON array
);

-- When each issue last got the reply for people without write access.
CREATE TABLE deny_replies (
    issue  TEXT PRIMARY KEY,
    at     BIGINT NOT NULL
);

-- Triggers the forge confirmed and a job acted on.
CREATE TABLE handled_triggers (
    key  TEXT PRIMARY KEY,
    job  BIGINT NOT NULL,
    at   BIGINT NOT NULL
);

-- When the reconciler last looked at a repository's comments.
CREATE TABLE reconciled (
    repo TEXT PRIMARY KEY,
    at   BIGINT NOT NULL
);

-- Issues closed, and when: their working copies go after bot.closed_issue_grace.
CREATE TABLE closed_issues (
    issue TEXT PRIMARY KEY,
    at    BIGINT NOT NULL
);

-- The pull request kugetsu opened for an issue's branch.
CREATE TABLE pull_requests (
    issue       TEXT PRIMARY KEY,
    pull        TEXT NOT NULL UNIQUE,
    html_url    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- What each agent run spent, and when a writer last said `@kugetsu resume`.
CREATE TABLE runs (
    id           BIGSERIAL PRIMARY KEY,
    issue        TEXT NOT NULL,
    repo         TEXT NOT NULL,
    instance     TEXT NOT NULL,
    job_id       BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL,
    tokens       BIGINT NOT NULL,
    cost         DOUBLE PRECISION NOT NULL
);
CREATE INDEX runs_by_issue ON runs (issue, finished_at);
CREATE INDEX runs_by_repo ON runs (repo, finished_at);
CREATE INDEX runs_by_instance ON runs (instance, finished_at);

CREATE TABLE budget_resumes (
    issue  TEXT PRIMARY KEY,
    at     BIGINT NOT NULL
);

-- Runs waiting for a person's answer in the thread.
CREATE TABLE waits (
    job_id          BIGINT PRIMARY KEY,
    issue           TEXT NOT NULL,
    asked           TEXT NOT NULL,
    asked_at        BIGINT NOT NULL,
    deadline        BIGINT NOT NULL,
    comment_id      BIGINT,
    answer          TEXT,
    answered_by     TEXT,
    answer_comment  BIGINT,
    answered_at     BIGINT,
    expired         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX waits_by_issue ON waits (issue);
