//! Durable state behind a small interface, so another database can replace SQLite
//! (for several replicas) without touching its callers.

mod checkpoint;
mod jobs;
pub mod postgres;
mod replicas;
mod rows;
mod spending;
mod sqlite;
mod waits;

use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::issue_ref::{IssueRef, RepoRef};
use crate::result::RunResult;

pub use jobs::JobStore;
pub use postgres::PostgresStore;
pub use replicas::{Checkpoint, Fence, ReplicaStore, issue_lease, task_lease};
pub use spending::SpendingStore;
pub use sqlite::SqliteStore;
pub use waits::{Answer, Wait, WaitStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Idle,
    Running,
    Failed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Running => "running",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "idle" => Ok(Self::Idle),
            "running" => Ok(Self::Running),
            "failed" => Ok(Self::Failed),
            other => anyhow::bail!("unknown session status `{other}` in the database"),
        }
    }
}

/// What kugetsu keeps per issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueSession {
    pub issue: IssueRef,
    pub session_id: Option<String>,
    pub branch: String,
    pub worktree: PathBuf,
    pub status: SessionStatus,
    pub last_pushed_sha: Option<String>,
    pub last_result: Option<RunResult>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_run_at: Option<i64>,
}

/// CI repairs on an issue since a person last asked for work there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CiFixHistory {
    /// Repairs run (or refused for want of attempts), counted.
    pub attempts: u32,
    /// Someone said `stop` since.
    pub stopped: bool,
}

/// A pull request kugetsu opened for an issue's branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestRecord {
    pub issue: IssueRef,
    /// The pull request's number, in the issue's repository.
    pub number: u64,
    pub html_url: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseSession {
    pub repo: RepoRef,
    pub session_id: String,
    pub worktree: PathBuf,
    pub created_at: i64,
}

/// All of kugetsu's state: issue and base sessions here, jobs and what guards
/// them in [`JobStore`].
#[async_trait]
pub trait Store: JobStore + SpendingStore + WaitStore + ReplicaStore + Send + Sync {
    async fn issue_session(&self, issue: &IssueRef) -> anyhow::Result<Option<IssueSession>>;
    /// Inserts or replaces the issue's record.
    async fn save_issue_session(&self, record: &IssueSession) -> anyhow::Result<()>;
    async fn delete_issue_session(&self, issue: &IssueRef) -> anyhow::Result<()>;
    async fn issue_sessions(&self) -> anyhow::Result<Vec<IssueSession>>;
    /// The `limit` records changed last, newest first.
    async fn recent_issue_sessions(&self, limit: u32) -> anyhow::Result<Vec<IssueSession>>;

    async fn base_session(&self, repo: &RepoRef) -> anyhow::Result<Option<BaseSession>>;
    async fn save_base_session(&self, base: &BaseSession) -> anyhow::Result<()>;
    async fn delete_base_session(&self, repo: &RepoRef) -> anyhow::Result<()>;
    async fn base_sessions(&self) -> anyhow::Result<Vec<BaseSession>>;

    /// Finished jobs, and the deliveries and event identities kept against
    /// replays, from before `before_ms`; removed too when `remove`.
    async fn old_history(&self, before_ms: i64, remove: bool) -> anyhow::Result<History>;

    /// The pull request kugetsu opened for the issue's branch.
    async fn pull_request_of(&self, issue: &IssueRef) -> anyhow::Result<Option<PullRequestRecord>>;
    /// The issue whose branch the pull request `pull` (a ref in the same
    /// repository) was opened for, if kugetsu opened it.
    async fn issue_of_pull_request(&self, pull: &IssueRef) -> anyhow::Result<Option<IssueRef>>;
    /// Every issue's pull request (one row per issue kugetsu opened one for).
    async fn pull_requests(&self) -> anyhow::Result<Vec<PullRequestRecord>>;
    /// Records the issue's pull request, replacing an earlier one (merged, say).
    async fn save_pull_request(&self, record: &PullRequestRecord) -> anyhow::Result<()>;

    /// The issue whose branch kugetsu last pushed as `sha` in `repo`.
    async fn issue_pushed(&self, repo: &RepoRef, sha: &str) -> anyhow::Result<Option<IssueRef>>;

    /// Issues closed before `before_ms`, with when, that kugetsu has not run on since.
    async fn closed_issues(&self, before_ms: i64) -> anyhow::Result<Vec<IssueRef>>;
    /// Forgets that the issue was closed (its working copy is gone).
    async fn forget_closed(&self, issue: &IssueRef) -> anyhow::Result<()>;
}

/// The configured store: PostgreSQL when `database_url` is set, else SQLite
/// in the state directory. A process that serves keeps SQLite's log short in
/// the background ([`SqliteStore::with_background_checkpoints`]). Either acts as
/// the state directory's replica (see [`ReplicaStore`]).
pub async fn open(config: &crate::config::Config, serving: bool) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    let layout = crate::engine::Layout::new(&config.state_dir);
    let replica = replica_id(&layout.replica_id())?;
    if let Some(url) = &config.database_url {
        return Ok(std::sync::Arc::new(PostgresStore::connect(url).await?.with_replica(replica)));
    }
    let sqlite = SqliteStore::open(&layout.database()).await?.with_replica(replica);
    Ok(match serving {
        true => std::sync::Arc::new(sqlite.with_background_checkpoints().await?),
        false => std::sync::Arc::new(sqlite),
    })
}

/// The replica id kept in `file`, made on first use: a replica that restarts
/// is the same replica, and takes up its own interrupted jobs at once.
fn replica_id(file: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    if let Ok(id) = std::fs::read_to_string(file)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_owned());
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let id = new_replica_id();
    std::fs::write(file, &id).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(id)
}

/// A replica id no other process has: the host, the process and the moment.
fn new_replica_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{}-{:x}", if host.is_empty() { "kugetsu" } else { &host }, std::process::id(), nanos)
}

/// Rows of the job history, counted by [`Store::old_history`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct History {
    pub jobs: u64,
    pub deliveries: u64,
    pub identities: u64,
}

impl History {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A store timestamp as RFC 3339, to the second.
pub fn format_millis(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// An hour and a day in the store's timestamp unit.
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Milliseconds since the Unix epoch, the store's timestamp unit.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
