-- Workers look for pending jobs lane by lane, at every new job. Without this a
-- lane with nothing pending was found empty only after reading every pending
-- job of the other lane, while webhook answers waited for the one connection.
CREATE INDEX jobs_by_lane ON jobs (lane, status, not_before, id);
