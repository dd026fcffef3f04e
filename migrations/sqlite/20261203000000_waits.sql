-- Runs waiting for a person: what the agent asked (a question or a permission,
-- as JSON), until when, and the answer once a writer gave one. A row outlives a
-- restart, so the run still waits after it; it goes when the wait ends.
CREATE TABLE waits (
    job_id          INTEGER PRIMARY KEY NOT NULL,
    issue           TEXT NOT NULL,      -- instance/owner/repo#number
    asked           TEXT NOT NULL,      -- crate::question::Asked as JSON
    asked_at        INTEGER NOT NULL,   -- unix milliseconds
    deadline        INTEGER NOT NULL,   -- unix milliseconds
    comment_id      INTEGER,            -- the question on the issue, once posted
    answer          TEXT,
    answered_by     TEXT,
    answer_comment  INTEGER,
    answered_at     INTEGER,
    -- Nobody answered by the deadline: the wait takes no answer any more.
    expired         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX waits_by_issue ON waits (issue);
