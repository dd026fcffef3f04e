-- Issues closed, and when (ms): their working copies go after bot.closed_issue_grace.
CREATE TABLE closed_issues (
    issue TEXT PRIMARY KEY NOT NULL,
    at INTEGER NOT NULL
);
