-- Triggers the forge confirmed and a job acted on, by what names the trigger
-- itself (a comment and its text, a label record, a body): a replay under a new
-- delivery id and a new update time is still the same trigger.
CREATE TABLE handled_triggers (
    key  TEXT PRIMARY KEY NOT NULL,
    job  INTEGER NOT NULL,
    at   INTEGER NOT NULL              -- unix milliseconds
);
