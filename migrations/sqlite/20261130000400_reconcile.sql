-- When the reconciler last looked at a repository's comments (ms since the epoch).
CREATE TABLE reconciled (
    repo TEXT PRIMARY KEY NOT NULL,
    at INTEGER NOT NULL
);
