//! What the status page and `/metrics` read of the queue.

/// Jobs not finished, by what they wait for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Due now, waiting for a worker.
    pub queued: u64,
    pub running: u64,
    /// Put back until later: a forge fault, a full disk, a busy issue.
    pub waiting: u64,
    /// Since when the longest-waiting queued job has been due (unix milliseconds).
    pub oldest_due_at: Option<i64>,
}

/// One job as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobLine {
    pub id: i64,
    pub issue: String,
    /// `mention`, `label`, `control` or `refused`.
    pub kind: String,
    pub status: String,
    pub author: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// For a job put back: when it is due, and why it waits (or why it failed).
    pub not_before: i64,
    pub error: Option<String>,
    pub attempts: i64,
}
