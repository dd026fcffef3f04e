-- Webhook deliveries seen, so a redelivery is not acted on twice.
CREATE TABLE deliveries (
    instance     TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (instance, delivery_id)
);

-- Durable job queue: a job is stored before the webhook is answered.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    issue       TEXT NOT NULL,
    job         TEXT NOT NULL,          -- JSON Job
    status      TEXT NOT NULL,          -- pending | running | done | failed
    error       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE INDEX jobs_by_status ON jobs (status, issue, id);

-- Each issue's labels as last seen: Gitea reports only the new full set.
CREATE TABLE issue_labels (
    issue   TEXT PRIMARY KEY NOT NULL,
    labels  TEXT NOT NULL               -- JSON array
);
