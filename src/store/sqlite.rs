mod jobs;
mod replicas;
mod spending;
mod waits;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::checkpoint::Checkpointer;
use super::rows::{BaseRow, IssueRow};
use super::{BaseSession, History, IssueSession, PullRequestRecord, Store};
use crate::issue_ref::{IssueRef, RepoRef};

/// SQLite in WAL mode: readers never block the single writer, and a crash loses
/// nothing that was committed.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    options: SqliteConnectOptions,
    checkpoints: Option<std::sync::Arc<Checkpointer>>,
    /// See [`crate::store::ReplicaStore::replica`].
    replica: String,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // See `Checkpointer`.
            .pragma("wal_autocheckpoint", "0");
        // One connection: statements wait their turn in the pool, woken the moment
        // the one before ends. With more, a writer that finds another writing is
        // put to sleep by SQLite's busy handler (1, 2, 5, 10… ms), which is what
        // made the slowest webhook answers under load. Every statement here is
        // short, and no transaction waits on another query.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            // A ping before every statement is one more hop to SQLite's thread
            // and back; a local file has no connection to lose.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open database {}", path.display()))?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.context("database migration failed")?;
        Ok(Self { pool, options, checkpoints: None, replica: super::new_replica_id() })
    }

    /// A database in memory, gone with the store: for tests that need the real
    /// schema and SQL, and no file.
    pub async fn in_memory() -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::new().in_memory(true).foreign_keys(true);
        // The one connection is the database: it must never be closed as idle.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.context("database migration failed")?;
        Ok(Self { pool, options, checkpoints: None, replica: super::new_replica_id() })
    }

    /// Checkpoints in the background from now on (see [`Checkpointer`]). A
    /// process that does not, such as a CLI command, checkpoints when it closes.
    pub async fn with_background_checkpoints(mut self) -> anyhow::Result<Self> {
        let checkpoints = Checkpointer::start(self.options.clone()).await.context("cannot open a second connection")?;
        self.checkpoints = Some(std::sync::Arc::new(checkpoints));
        Ok(self)
    }

    /// Acts as replica `id` (see [`crate::store::ReplicaStore`]).
    pub fn with_replica(mut self, id: String) -> Self {
        self.replica = id;
        self
    }

    /// The pool, for modules that keep their own tables in the same database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn issue_session(&self, issue: &IssueRef) -> anyhow::Result<Option<IssueSession>> {
        let row: Option<IssueRow> = sqlx::query_as("SELECT * FROM issue_sessions WHERE issue = ?")
            .bind(issue.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(IssueSession::try_from).transpose()
    }

    async fn save_issue_session(&self, r: &IssueSession) -> anyhow::Result<()> {
        let last_result = r.last_result.as_ref().map(serde_json::to_string).transpose()?;
        sqlx::query(
            "INSERT OR REPLACE INTO issue_sessions (issue, repo, session_id, branch, worktree, status, \
             last_pushed_sha, last_result, last_error, created_at, updated_at, last_run_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(r.issue.to_string())
        .bind(r.issue.repo().to_string())
        .bind(&r.session_id)
        .bind(&r.branch)
        .bind(r.worktree.to_string_lossy())
        .bind(r.status.as_str())
        .bind(&r.last_pushed_sha)
        .bind(last_result)
        .bind(&r.last_error)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.last_run_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_issue_session(&self, issue: &IssueRef) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM issue_sessions WHERE issue = ?").bind(issue.to_string()).execute(&self.pool).await?;
        Ok(())
    }

    async fn issue_sessions(&self) -> anyhow::Result<Vec<IssueSession>> {
        let rows: Vec<IssueRow> = sqlx::query_as("SELECT * FROM issue_sessions").fetch_all(&self.pool).await?;
        let mut sessions = rows.into_iter().map(IssueSession::try_from).collect::<anyhow::Result<Vec<_>>>()?;
        // By instance, repository and issue number: as text, #1000 sorts before #2.
        sessions.sort_by(|a, b| a.issue.cmp(&b.issue));
        Ok(sessions)
    }

    async fn recent_issue_sessions(&self, limit: u32) -> anyhow::Result<Vec<IssueSession>> {
        let rows: Vec<IssueRow> = sqlx::query_as("SELECT * FROM issue_sessions ORDER BY updated_at DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(IssueSession::try_from).collect()
    }

    async fn issue_pushed(&self, repo: &RepoRef, sha: &str) -> anyhow::Result<Option<IssueRef>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT issue FROM issue_sessions WHERE repo = ? AND last_pushed_sha = ? LIMIT 1")
                .bind(repo.to_string())
                .bind(sha)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(issue,)| issue.parse().map_err(|e| anyhow::anyhow!("bad issue ref in the database: {e}"))).transpose()
    }

    async fn pull_request_of(&self, issue: &IssueRef) -> anyhow::Result<Option<PullRequestRecord>> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as("SELECT pull, html_url, created_at FROM pull_requests WHERE issue = ?")
                .bind(issue.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(pull, html_url, created_at)| {
            let pull: IssueRef =
                pull.parse().map_err(|e| anyhow::anyhow!("bad pull request ref in the database: {e}"))?;
            Ok(PullRequestRecord { issue: issue.clone(), number: pull.number(), html_url, created_at })
        })
        .transpose()
    }

    async fn issue_of_pull_request(&self, pull: &IssueRef) -> anyhow::Result<Option<IssueRef>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT issue FROM pull_requests WHERE pull = ?")
            .bind(pull.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|(issue,)| issue.parse().map_err(|e| anyhow::anyhow!("bad issue ref in the database: {e}"))).transpose()
    }

    async fn pull_requests(&self) -> anyhow::Result<Vec<PullRequestRecord>> {
        let rows: Vec<(String, String, String, i64)> =
            sqlx::query_as("SELECT issue, pull, html_url, created_at FROM pull_requests").fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(issue, pull, html_url, created_at)| {
                let issue: IssueRef =
                    issue.parse().map_err(|e| anyhow::anyhow!("bad issue ref in the database: {e}"))?;
                let pull: IssueRef =
                    pull.parse().map_err(|e| anyhow::anyhow!("bad pull request ref in the database: {e}"))?;
                Ok(PullRequestRecord { issue, number: pull.number(), html_url, created_at })
            })
            .collect()
    }

    async fn save_pull_request(&self, record: &PullRequestRecord) -> anyhow::Result<()> {
        let pull = record.issue.repo().issue(record.number)?;
        sqlx::query("INSERT OR REPLACE INTO pull_requests (issue, pull, html_url, created_at) VALUES (?, ?, ?, ?)")
            .bind(record.issue.to_string())
            .bind(pull.to_string())
            .bind(&record.html_url)
            .bind(record.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn base_session(&self, repo: &RepoRef) -> anyhow::Result<Option<BaseSession>> {
        let row: Option<BaseRow> = sqlx::query_as("SELECT * FROM base_sessions WHERE repo = ?")
            .bind(repo.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(BaseSession::try_from).transpose()
    }

    async fn save_base_session(&self, b: &BaseSession) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO base_sessions (repo, session_id, worktree, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(b.repo.to_string())
        .bind(&b.session_id)
        .bind(b.worktree.to_string_lossy())
        .bind(b.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_base_session(&self, repo: &RepoRef) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM base_sessions WHERE repo = ?").bind(repo.to_string()).execute(&self.pool).await?;
        Ok(())
    }

    async fn base_sessions(&self) -> anyhow::Result<Vec<BaseSession>> {
        let rows: Vec<BaseRow> =
            sqlx::query_as("SELECT * FROM base_sessions ORDER BY repo").fetch_all(&self.pool).await?;
        rows.into_iter().map(BaseSession::try_from).collect()
    }

    async fn closed_issues(&self, before_ms: i64) -> anyhow::Result<Vec<IssueRef>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT c.issue FROM closed_issues c JOIN issue_sessions s ON s.issue = c.issue \
             WHERE c.at < ?1 AND COALESCE(s.last_run_at, 0) < c.at ORDER BY c.issue",
        )
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|issue| Ok(IssueRef::from_str(issue)?)).collect()
    }

    async fn forget_closed(&self, issue: &IssueRef) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM closed_issues WHERE issue = ?").bind(issue.to_string()).execute(&self.pool).await?;
        Ok(())
    }

    async fn old_history(&self, before_ms: i64, remove: bool) -> anyhow::Result<History> {
        // The rows, each written once; sqlx takes only static statements.
        // Pending and running jobs stay whatever their age: they are work.
        macro_rules! old_rows {
            ($verb:literal) => {
                [
                    concat!($verb, " FROM jobs WHERE status IN ('done', 'failed') AND updated_at < ?"),
                    concat!($verb, " FROM deliveries WHERE received_at < ?"),
                    concat!($verb, " FROM event_identities WHERE received_at < ?"),
                ]
            };
        }
        const COUNT: [&str; 3] = old_rows!("SELECT COUNT(*)");
        const REMOVE: [&str; 3] = old_rows!("DELETE");
        let mut tx = self.pool.begin().await?;
        let mut counts = [0u64; 3];
        for ((count_sql, remove_sql), count) in COUNT.into_iter().zip(REMOVE).zip(&mut counts) {
            *count = match remove {
                true => sqlx::query(remove_sql).bind(before_ms).execute(&mut *tx).await?.rows_affected(),
                false => {
                    let n: i64 = sqlx::query_scalar(count_sql).bind(before_ms).fetch_one(&mut *tx).await?;
                    u64::try_from(n).unwrap_or(0)
                }
            };
        }
        tx.commit().await?;
        let [jobs, deliveries, identities] = counts;
        Ok(History { jobs, deliveries, identities })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SessionStatus, now_millis};

    // The behaviour both backends share is tested in tests/store.rs; here, SQLite's own.
    #[tokio::test]
    async fn the_database_is_a_wal_file_that_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("k.db");
        let store = SqliteStore::open(&db).await.unwrap();
        let issue: IssueRef = "gitea/acme/widget#4".parse().unwrap();
        let record = IssueSession {
            issue: issue.clone(),
            session_id: Some("ses_1".into()),
            branch: "kugetsu/4".into(),
            worktree: dir.path().join("wt"),
            status: SessionStatus::Running,
            last_pushed_sha: None,
            last_result: None,
            last_error: Some("boom".into()),
            created_at: now_millis(),
            updated_at: now_millis(),
            last_run_at: None,
        };
        store.save_issue_session(&record).await.unwrap();
        drop(store);
        let store = SqliteStore::open(&db).await.unwrap();
        assert_eq!(store.issue_session(&issue).await.unwrap(), Some(record));
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.pool()).await.unwrap();
        assert_eq!(mode, "wal");
    }
}
