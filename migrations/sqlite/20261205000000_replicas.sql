-- Several replicas (on PostgreSQL; SQLite has the same tables, so both answer
-- one store suite, and one replica is the simplest case of many).
-- Which replica claimed a running job: only that one records its end, and a
-- dead replica's jobs go back to the queue.
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
-- Leases: an issue's working copy and session (`issue:<ref>`), or a task that
-- runs on one replica at a time (`task:<name>`). The token grows each time the
-- lease changes hands, so a replica that lost it can tell.
CREATE TABLE leases (
    key         TEXT PRIMARY KEY NOT NULL,
    replica     TEXT NOT NULL,
    token       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL          -- unix milliseconds
);
CREATE INDEX leases_by_replica ON leases (replica);
-- When each replica was last seen alive.
CREATE TABLE replicas (
    id       TEXT PRIMARY KEY NOT NULL,
    seen_at  INTEGER NOT NULL
);
-- An issue's opencode session as `opencode export` writes it, saved after every
-- run, so another replica can take the issue over with its history.
CREATE TABLE checkpoints (
    issue       TEXT PRIMARY KEY NOT NULL,
    session_id  TEXT NOT NULL,
    export      TEXT NOT NULL,            -- JSON {info, messages}
    replica     TEXT NOT NULL,            -- the replica whose run it follows
    at          INTEGER NOT NULL
);
