-- Why a job's run failed, saved with its comment before the comment is posted,
-- so a job whose comment is posted after a crash or a forge fault is still
-- recorded as failed.
ALTER TABLE jobs ADD COLUMN run_error TEXT;
