-- A stored delivery is one statement: the job's insert, guarded against a
-- delivery or event seen before, records both through this trigger. Each
-- statement is a hop to SQLite's thread and back, and under load every hop is
-- a wait for a CPU; five of them were the slowest webhook answers.
ALTER TABLE jobs ADD COLUMN delivery_instance TEXT;
ALTER TABLE jobs ADD COLUMN delivery_id TEXT;
ALTER TABLE jobs ADD COLUMN identity TEXT;

CREATE TRIGGER jobs_record_their_delivery AFTER INSERT ON jobs
WHEN NEW.delivery_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO deliveries (instance, delivery_id, received_at)
        VALUES (NEW.delivery_instance, NEW.delivery_id, NEW.created_at);
    INSERT OR IGNORE INTO event_identities (identity, received_at)
        SELECT NEW.identity, NEW.created_at WHERE NEW.identity IS NOT NULL;
END;
