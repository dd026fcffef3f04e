//! The store on PostgreSQL, for several kugetsu replicas sharing one state
//! (`database_url = "postgres://…"`). The schema is SQLite's in PostgreSQL's
//! types (`migrations/postgres`), so both answer the same store test suite.

mod jobs;
mod replicas;
mod spending;
mod waits;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::rows::{BaseRow, IssueRow};
use super::{BaseSession, History, IssueSession, PullRequestRecord, Store};
use crate::issue_ref::{IssueRef, RepoRef};

/// Connections per process: statements are short, and a replica's webhook
/// answers, workers and reconciler share them.
const MAX_CONNECTIONS: u32 = 8;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// See [`crate::store::ReplicaStore::replica`].
    replica: String,
}

impl PostgresStore {
    /// Connects and applies pending migrations (sqlx takes an advisory lock for
    /// them, so replicas starting together migrate once).
    pub async fn connect(url: &SecretString) -> anyhow::Result<Self> {
        // The URL may hold a password: errors name the database, never the URL.
        let options =
            PgConnectOptions::from_str(url.expose_secret()).context("database_url is not a PostgreSQL URL")?;
        let place = place(&options);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {place}"))?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.context("database migration failed")?;
        Ok(Self { pool, replica: super::new_replica_id() })
    }

    /// Acts as replica `id` (see [`crate::store::ReplicaStore`]).
    pub fn with_replica(mut self, id: String) -> Self {
        self.replica = id;
        self
    }

    /// The pool, for checks that read the database directly (doctor, tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Where the database is, without the URL's password.
pub fn describe(url: &SecretString) -> String {
    PgConnectOptions::from_str(url.expose_secret()).map_or_else(|_| "an unreadable URL".to_owned(), |o| place(&o))
}

fn place(options: &PgConnectOptions) -> String {
    format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or(""))
}

/// An issue ref read back from the database.
fn issue_ref(text: &str) -> anyhow::Result<IssueRef> {
    text.parse().map_err(|e| anyhow::anyhow!("bad issue ref `{text}` in the database: {e}"))
}

#[async_trait]
impl Store for PostgresStore {
    async fn issue_session(&self, issue: &IssueRef) -> anyhow::Result<Option<IssueSession>> {
        let row: Option<IssueRow> = sqlx::query_as("SELECT * FROM issue_sessions WHERE issue = $1")
            .bind(issue.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(IssueSession::try_from).transpose()
    }

    async fn save_issue_session(&self, r: &IssueSession) -> anyhow::Result<()> {
        let last_result = r.last_result.as_ref().map(serde_json::to_string).transpose()?;
        sqlx::query(
            "INSERT INTO issue_sessions (issue, repo, session_id, branch, worktree, status, \
             last_pushed_sha, last_result, last_error, created_at, updated_at, last_run_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (issue) DO UPDATE SET repo = EXCLUDED.repo, session_id = EXCLUDED.session_id, \
             branch = EXCLUDED.branch, worktree = EXCLUDED.worktree, status = EXCLUDED.status, \
             last_pushed_sha = EXCLUDED.last_pushed_sha, last_result = EXCLUDED.last_result, \
             last_error = EXCLUDED.last_error, created_at = EXCLUDED.created_at, \
             updated_at = EXCLUDED.updated_at, last_run_at = EXCLUDED.last_run_at",
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
        sqlx::query("DELETE FROM issue_sessions WHERE issue = $1").bind(issue.to_string()).execute(&self.pool).await?;
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
        let rows: Vec<IssueRow> = sqlx::query_as("SELECT * FROM issue_sessions ORDER BY updated_at DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(IssueSession::try_from).collect()
    }

    async fn issue_pushed(&self, repo: &RepoRef, sha: &str) -> anyhow::Result<Option<IssueRef>> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT issue FROM issue_sessions WHERE repo = $1 AND last_pushed_sha = $2 LIMIT 1")
                .bind(repo.to_string())
                .bind(sha)
                .fetch_optional(&self.pool)
                .await?;
        row.as_deref().map(issue_ref).transpose()
    }

    async fn pull_request_of(&self, issue: &IssueRef) -> anyhow::Result<Option<PullRequestRecord>> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as("SELECT pull, html_url, created_at FROM pull_requests WHERE issue = $1")
                .bind(issue.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(pull, html_url, created_at)| {
            Ok(PullRequestRecord { issue: issue.clone(), number: issue_ref(&pull)?.number(), html_url, created_at })
        })
        .transpose()
    }

    async fn issue_of_pull_request(&self, pull: &IssueRef) -> anyhow::Result<Option<IssueRef>> {
        let row: Option<String> = sqlx::query_scalar("SELECT issue FROM pull_requests WHERE pull = $1")
            .bind(pull.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_deref().map(issue_ref).transpose()
    }

    async fn pull_requests(&self) -> anyhow::Result<Vec<PullRequestRecord>> {
        let rows: Vec<(String, String, String, i64)> =
            sqlx::query_as("SELECT issue, pull, html_url, created_at FROM pull_requests").fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(issue, pull, html_url, created_at)| {
                Ok(PullRequestRecord {
                    issue: issue_ref(&issue)?,
                    number: issue_ref(&pull)?.number(),
                    html_url,
                    created_at,
                })
            })
            .collect()
    }

    async fn save_pull_request(&self, record: &PullRequestRecord) -> anyhow::Result<()> {
        let pull = record.issue.repo().issue(record.number)?;
        // SQLite's INSERT OR REPLACE drops a row that conflicts on either key.
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM pull_requests WHERE issue = $1 OR pull = $2")
            .bind(record.issue.to_string())
            .bind(pull.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO pull_requests (issue, pull, html_url, created_at) VALUES ($1, $2, $3, $4)")
            .bind(record.issue.to_string())
            .bind(pull.to_string())
            .bind(&record.html_url)
            .bind(record.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn base_session(&self, repo: &RepoRef) -> anyhow::Result<Option<BaseSession>> {
        let row: Option<BaseRow> = sqlx::query_as("SELECT * FROM base_sessions WHERE repo = $1")
            .bind(repo.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(BaseSession::try_from).transpose()
    }

    async fn save_base_session(&self, b: &BaseSession) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO base_sessions (repo, session_id, worktree, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repo) DO UPDATE SET session_id = EXCLUDED.session_id, worktree = EXCLUDED.worktree, \
             created_at = EXCLUDED.created_at",
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
        sqlx::query("DELETE FROM base_sessions WHERE repo = $1").bind(repo.to_string()).execute(&self.pool).await?;
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
             WHERE c.at < $1 AND COALESCE(s.last_run_at, 0) < c.at ORDER BY c.issue",
        )
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|issue| issue_ref(issue)).collect()
    }

    async fn forget_closed(&self, issue: &IssueRef) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM closed_issues WHERE issue = $1").bind(issue.to_string()).execute(&self.pool).await?;
        Ok(())
    }

    async fn old_history(&self, before_ms: i64, remove: bool) -> anyhow::Result<History> {
        // Pending and running jobs stay whatever their age: they are work.
        macro_rules! old_rows {
            ($verb:literal) => {
                [
                    concat!($verb, " FROM jobs WHERE status IN ('done', 'failed') AND updated_at < $1"),
                    concat!($verb, " FROM deliveries WHERE received_at < $1"),
                    concat!($verb, " FROM event_identities WHERE received_at < $1"),
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
