-- How often a job was put back because the forge failed it; each time it waits
-- longer. `error` holds why it waits while it is pending.
ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
