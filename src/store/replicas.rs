//! What lets several kugetsu replicas share one database: each says it is
//! alive, holds leases on the issues it works on (and on tasks that must run
//! once), and checks them before it acts for an issue; a dead replica's jobs go
//! back to the queue, and its issues' sessions live on in checkpoints.

use async_trait::async_trait;

use crate::issue_ref::IssueRef;

/// The lease on an issue's working copy and session.
pub fn issue_lease(issue: &IssueRef) -> String {
    format!("issue:{issue}")
}

/// The lease on a task that runs on one replica at a time.
pub fn task_lease(task: &str) -> String {
    format!("task:{task}")
}

/// A session as `opencode export` writes it, saved after a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub session_id: String,
    /// `{info, messages}` JSON.
    pub export: String,
    pub at: i64,
    /// The replica whose run it was saved after: if not this one, this one's
    /// own copy of the session (if it has one) misses that run.
    pub replica: String,
}

#[async_trait]
pub trait ReplicaStore: Send + Sync {
    /// This process's replica id (kept in its state dir across restarts).
    fn replica(&self) -> &str;

    /// Says this replica is alive at `now_ms`, and keeps the leases still in its
    /// name until `now_ms + ttl_ms`; one another replica has taken is not its
    /// any more, whatever this one thinks.
    async fn heartbeat(&self, now_ms: i64, ttl_ms: i64) -> anyhow::Result<()>;

    /// Takes `key` until `now_ms + ttl_ms` if it is free, expired or this
    /// replica's already; its fencing token, which grows whenever the lease
    /// changes hands, or `None` while another replica holds it.
    async fn take_lease(&self, key: &str, now_ms: i64, ttl_ms: i64) -> anyhow::Result<Option<i64>>;

    /// Whether this replica still holds `key` as `token` at `now_ms`.
    async fn holds_lease(&self, key: &str, token: i64, now_ms: i64) -> anyhow::Result<bool>;

    /// Gives up this replica's leases (a clean shutdown: others may take its issues at once).
    async fn release_leases(&self) -> anyhow::Result<()>;

    /// Running jobs of replicas not seen alive since `dead_before_ms` go back to the queue.
    async fn requeue_orphans(&self, now_ms: i64, dead_before_ms: i64) -> anyhow::Result<u64>;

    /// Of `ids`, jobs this replica runs, those no longer running as its own,
    /// each with whether another replica took it (after this one was thought
    /// dead; whatever became of it since) or, if not, it was stopped.
    async fn jobs_taken_away(&self, ids: &[i64]) -> anyhow::Result<Vec<(i64, bool)>>;

    /// The work job running on the issue, on whichever replica.
    async fn running_work(&self, issue: &IssueRef) -> anyhow::Result<Option<i64>>;

    async fn save_checkpoint(&self, issue: &IssueRef, session_id: &str, export: &str) -> anyhow::Result<()>;

    async fn checkpoint(&self, issue: &IssueRef) -> anyhow::Result<Option<Checkpoint>>;
}

/// What a replica checks before it acts for an issue (pushes, comments): that
/// the issue's lease is still its own, as it was when it took the job.
#[derive(Clone)]
pub struct Fence {
    store: std::sync::Arc<dyn super::Store>,
    key: String,
    token: i64,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence").field("key", &self.key).field("token", &self.token).finish()
    }
}

impl Fence {
    pub fn new(store: std::sync::Arc<dyn super::Store>, key: String, token: i64) -> Self {
        Self { store, key, token }
    }

    /// Whether the lease is still held. A store that cannot say counts as a
    /// lease lost: a push or comment put off is retried, one made twice is not undone.
    pub async fn holds(&self) -> bool {
        match self.store.holds_lease(&self.key, self.token, super::now_millis()).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(lease = %self.key, error = %format!("{e:#}"), "cannot read the lease; acting as if lost");
                false
            }
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}
