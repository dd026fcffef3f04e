//! The durable job queue in SQLite: webhook intake stores jobs here before it
//! answers, and the workers take them out one issue at a time, in order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use tokio::sync::Notify;

use crate::event::CommentInfo;
use crate::issue_ref::IssueRef;
use crate::store::now_millis;
use crate::trigger::{Control, Trigger};

/// Everything a run needs, captured when the trigger arrived, so later edits of
/// the issue change nothing about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub issue: IssueRef,
    pub delivery_id: String,
    pub trigger: JobTrigger,
    pub author: String,
    pub title: String,
    pub issue_body: String,
    pub comment: Option<CommentInfo>,
    pub is_pull_request: bool,
    pub repo_html_url: Option<String>,
    pub default_branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobTrigger {
    Mention,
    Label {
        name: String,
    },
    Control {
        command: Control,
    },
    /// Not run: the reason is posted as a reply (rate limit, full queue).
    Refused {
        reason: String,
    },
}

impl JobTrigger {
    /// Whether the job waits for the issue's earlier work (`work`) or is answered at once (`control`).
    pub fn lane(&self) -> &'static str {
        match self {
            Self::Mention | Self::Label { .. } | Self::Control { command: Control::Reset } => "work",
            Self::Control { .. } | Self::Refused { .. } => "control",
        }
    }
}

impl From<Trigger> for JobTrigger {
    fn from(t: Trigger) -> Self {
        match t {
            Trigger::Mention => Self::Mention,
            Trigger::Label(name) => Self::Label { name },
            Trigger::Control(command) => Self::Control { command },
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueuedJob {
    pub id: i64,
    pub job: Job,
    /// The comment a run already produced, when the process died before posting it.
    pub outcome: Option<String>,
    /// How often the job was put back after forge faults.
    pub attempts: u32,
    /// When the trigger was stored (unix milliseconds).
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued(i64),
    /// The delivery was seen before; nothing was stored.
    Duplicate,
}

#[derive(Clone)]
pub struct Queue {
    pool: SqlitePool,
    wake: Arc<Notify>,
}

impl Queue {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool, wake: Arc::new(Notify::new()) }
    }

    /// Records the delivery (and the event's identity) and stores its job,
    /// atomically. A delivery id or identity seen before stores nothing.
    pub async fn enqueue(&self, instance: &str, identity: Option<&str>, job: &Job) -> anyhow::Result<Enqueued> {
        let now = now_millis();
        // One statement (see the `one_statement_intake` migration): nothing is
        // stored when the delivery or the event was seen before.
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO jobs (issue, job, status, created_at, updated_at, author, repo, lane, \
                               delivery_instance, delivery_id, identity) \
             SELECT ?1, ?2, 'pending', ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9 \
             WHERE NOT EXISTS (SELECT 1 FROM deliveries WHERE instance = ?7 AND delivery_id = ?8) \
               AND NOT EXISTS (SELECT 1 FROM event_identities WHERE identity = ?9) \
             RETURNING id",
        )
        .bind(job.issue.to_string())
        .bind(serde_json::to_string(job)?)
        .bind(now)
        .bind(job.author.to_ascii_lowercase())
        .bind(job.issue.repo().to_string())
        .bind(job.trigger.lane())
        .bind(instance)
        .bind(&job.delivery_id)
        .bind(identity)
        .fetch_optional(&self.pool)
        .await?;
        let Some(id) = id else { return Ok(Enqueued::Duplicate) };
        self.wake.notify_one();
        Ok(Enqueued::Queued(id))
    }

    /// Whether an event with this identity was stored already.
    pub async fn knows_event(&self, identity: &str) -> anyhow::Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM event_identities WHERE identity = ?")
            .bind(identity)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    /// Admitted jobs created since `since_ms` by `author`, and in `repo`.
    pub async fn recent_jobs(&self, author: &str, repo: &str, since_ms: i64) -> anyhow::Result<(i64, i64)> {
        let by_author: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE authorized = 1 AND author = ? AND created_at >= ?")
                .bind(author.to_ascii_lowercase())
                .bind(since_ms)
                .fetch_one(&self.pool)
                .await?;
        let by_repo: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE authorized = 1 AND repo = ? AND created_at >= ?")
                .bind(repo)
                .bind(since_ms)
                .fetch_one(&self.pool)
                .await?;
        Ok((by_author, by_repo))
    }

    /// Marks a job as admitted: its trigger confirmed, its author allowed.
    pub async fn mark_authorized(&self, id: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE jobs SET authorized = 1 WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Takes the issue's deny reply if none was given since `since_ms`; false
    /// when one was, so the caller stays silent.
    pub async fn claim_deny_reply(&self, issue: &IssueRef, since_ms: i64) -> anyhow::Result<bool> {
        let taken = sqlx::query(
            "INSERT INTO deny_replies (issue, at) VALUES (?1, ?2) \
             ON CONFLICT (issue) DO UPDATE SET at = ?2 WHERE deny_replies.at < ?3",
        )
        .bind(issue.to_string())
        .bind(now_millis())
        .bind(since_ms)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Keeps the comment a finished run produced, before it is posted.
    pub async fn save_outcome(&self, id: i64, comment: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE jobs SET outcome = ?, updated_at = ? WHERE id = ?")
            .bind(comment)
            .bind(now_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Puts a claimed job back, not to be taken before `not_before_ms`; `why` is
    /// what it waits for, shown by `status`. A job that is no longer running
    /// (stopped meanwhile) stays as it is.
    pub async fn defer(&self, id: i64, not_before_ms: i64, why: &str) -> anyhow::Result<()> {
        self.put_back(id, not_before_ms, why, 0).await
    }

    /// Puts a job back after a forge fault, counting the attempt.
    pub async fn retry_later(&self, id: i64, not_before_ms: i64, why: &str) -> anyhow::Result<()> {
        self.put_back(id, not_before_ms, why, 1).await
    }

    /// One statement, so nobody reading the row sees the attempt counted while
    /// the job still shows as running with no reason.
    async fn put_back(&self, id: i64, not_before_ms: i64, why: &str, attempt: i64) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE jobs SET status = 'pending', not_before = ?, error = ?, updated_at = ?, \
             attempts = attempts + ? WHERE id = ? AND status = 'running'",
        )
        .bind(not_before_ms)
        .bind(why)
        .bind(now_millis())
        .bind(attempt)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Why the issue's pending jobs wait, if they were put back.
    pub async fn waiting_reasons(&self, issue: &IssueRef) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT error FROM jobs WHERE issue = ? AND status = 'pending' AND error IS NOT NULL ORDER BY id",
        )
        .bind(issue.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Takes up to `limit` jobs of `lane`: for each issue with no running job in
    /// that lane, its oldest pending one. Claimed jobs are marked running.
    pub async fn claim(&self, lane: &str, limit: usize) -> anyhow::Result<Vec<QueuedJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now_millis();
        let rows: Vec<(i64, String, Option<String>, i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET status = 'running', updated_at = ?1 WHERE id IN (
                SELECT j.id FROM jobs j
                WHERE j.status = 'pending' AND j.not_before <= ?1 AND j.lane = ?3
                  AND NOT EXISTS (SELECT 1 FROM jobs r
                                  WHERE r.issue = j.issue AND r.lane = j.lane AND r.status = 'running')
                  AND j.id = (SELECT MIN(p.id) FROM jobs p
                              WHERE p.issue = j.issue AND p.lane = j.lane AND p.status = 'pending')
                ORDER BY j.id LIMIT ?2
            ) RETURNING id, job, outcome, attempts, created_at",
        )
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(lane)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs: Vec<QueuedJob> = rows
            .into_iter()
            .filter_map(|(id, json, outcome, attempts, created_at)| match serde_json::from_str(&json) {
                Ok(job) => {
                    Some(QueuedJob { id, job, outcome, attempts: u32::try_from(attempts).unwrap_or(0), created_at })
                }
                Err(e) => {
                    tracing::error!(job = id, error = %e, "unreadable job left in the queue");
                    None
                }
            })
            .collect();
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    pub async fn finish(&self, id: i64, outcome: Result<(), String>) -> anyhow::Result<()> {
        let (status, error) = match outcome {
            Ok(()) => ("done", None),
            Err(e) => ("failed", Some(e)),
        };
        sqlx::query("UPDATE jobs SET status = ?, error = ?, updated_at = ? WHERE id = ?")
            .bind(status)
            .bind(error)
            .bind(now_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Records a running job as stopped; a job that already finished is left as it is.
    pub async fn stop(&self, id: i64, why: &str) -> anyhow::Result<bool> {
        let stopped = sqlx::query(
            "UPDATE jobs SET status = 'failed', error = ?, updated_at = ? WHERE id = ? AND status = 'running'",
        )
        .bind(why)
        .bind(now_millis())
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.wake.notify_one();
        Ok(stopped.rows_affected() == 1)
    }

    /// Jobs that were running when the process stopped go back to the queue.
    pub async fn requeue_interrupted(&self) -> anyhow::Result<u64> {
        let done = sqlx::query("UPDATE jobs SET status = 'pending', updated_at = ? WHERE status = 'running'")
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Records that job `id` acts on the trigger `key`; false when another job
    /// already did (a replay). The same job may claim its key again on a retry.
    pub async fn claim_trigger(&self, key: &str, id: i64) -> anyhow::Result<bool> {
        sqlx::query("INSERT OR IGNORE INTO handled_triggers (key, job, at) VALUES (?, ?, ?)")
            .bind(key)
            .bind(id)
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        let owner: i64 = sqlx::query_scalar("SELECT job FROM handled_triggers WHERE key = ?")
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        Ok(owner == id)
    }

    /// Whether the issue may get a deny reply: none was given since `since_ms`.
    pub async fn deny_reply_due(&self, issue: &IssueRef, since_ms: i64) -> anyhow::Result<bool> {
        let last: Option<i64> = sqlx::query_scalar("SELECT at FROM deny_replies WHERE issue = ?")
            .bind(issue.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(last.is_none_or(|at| at < since_ms))
    }

    /// Forgets the issue's last deny reply, which could not be posted.
    pub async fn release_deny_reply(&self, issue: &IssueRef) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM deny_replies WHERE issue = ?").bind(issue.to_string()).execute(&self.pool).await?;
        Ok(())
    }

    /// Authors of the issue's queued or running work jobs, and whether each job
    /// was admitted already.
    pub async fn waiting_authors(&self, issue: &IssueRef) -> anyhow::Result<Vec<(String, bool)>> {
        Ok(sqlx::query_as(
            "SELECT author, authorized = 1 FROM jobs \
             WHERE issue = ? AND lane = 'work' AND status IN ('pending', 'running')",
        )
        .bind(issue.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Work jobs on the issue that are queued or running.
    pub async fn waiting_for(&self, issue: &IssueRef) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE issue = ? AND lane = 'work' AND status IN ('pending', 'running')",
        )
        .bind(issue.to_string())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Repositories kugetsu has had a job or a session for, with when it last
    /// looked at their comments (or, never having looked, when their last job came).
    pub async fn served_repos(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT repo, COALESCE((SELECT at FROM reconciled r WHERE r.repo = s.repo), \
                                   (SELECT MAX(created_at) FROM jobs j WHERE j.repo = s.repo), 0) \
             FROM (SELECT repo FROM jobs UNION SELECT repo FROM issue_sessions) s ORDER BY repo",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Records that the repository's comments were looked at up to `at_ms`.
    pub async fn set_reconciled(&self, repo: &str, at_ms: i64) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO reconciled (repo, at) VALUES (?1, ?2) ON CONFLICT (repo) DO UPDATE SET at = ?2")
            .bind(repo)
            .bind(at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn labels(&self, issue: &IssueRef) -> anyhow::Result<Option<Vec<String>>> {
        let json: Option<String> = sqlx::query_scalar("SELECT labels FROM issue_labels WHERE issue = ?")
            .bind(issue.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    pub async fn set_labels(&self, issue: &IssueRef, labels: &[String]) -> anyhow::Result<()> {
        sqlx::query("INSERT OR REPLACE INTO issue_labels (issue, labels) VALUES (?, ?)")
            .bind(issue.to_string())
            .bind(serde_json::to_string(labels)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records that the issue was closed now.
    pub async fn mark_closed(&self, issue: &IssueRef) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO closed_issues (issue, at) VALUES (?1, ?2) ON CONFLICT (issue) DO UPDATE SET at = ?2")
            .bind(issue.to_string())
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Resolves when a job was added or finished.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn job(delivery: &str) -> Job {
        Job {
            issue: "g/o/r#1".parse().unwrap(),
            delivery_id: delivery.to_owned(),
            trigger: JobTrigger::Mention,
            author: "Alice".to_owned(),
            title: "t".to_owned(),
            issue_body: String::new(),
            comment: None,
            is_pull_request: false,
            repo_html_url: None,
            default_branch: None,
        }
    }

    async fn count(queue: &Queue, table: &'static str) -> i64 {
        let sql = match table {
            "jobs" => "SELECT COUNT(*) FROM jobs",
            "deliveries" => "SELECT COUNT(*) FROM deliveries",
            _ => "SELECT COUNT(*) FROM event_identities",
        };
        sqlx::query_scalar(sql).fetch_one(&queue.pool).await.unwrap()
    }

    #[tokio::test]
    async fn a_delivery_or_event_seen_before_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("k.db")).await.unwrap();
        let queue = Queue::new(store.pool().clone());
        let first = queue.enqueue("g", Some("event-1"), &job("d-1")).await.unwrap();
        assert!(matches!(first, Enqueued::Queued(_)), "{first:?}");
        assert_eq!(
            queue.enqueue("g", Some("event-2"), &job("d-1")).await.unwrap(),
            Enqueued::Duplicate,
            "same delivery"
        );
        assert_eq!(queue.enqueue("g", Some("event-1"), &job("d-2")).await.unwrap(), Enqueued::Duplicate, "same event");
        assert_eq!(
            (count(&queue, "jobs").await, count(&queue, "deliveries").await, count(&queue, "event_identities").await),
            (1, 1, 1),
            "a refused delivery records nothing, not even itself"
        );
        // Another instance may reuse a delivery id; a job without an identity is
        // kept apart only by its delivery.
        let other = queue.enqueue("h", None, &job("d-1")).await.unwrap();
        assert!(matches!(other, Enqueued::Queued(id) if Enqueued::Queued(id) != first), "{other:?}");
        assert_eq!(queue.enqueue("h", None, &job("d-1")).await.unwrap(), Enqueued::Duplicate);
        assert_eq!((count(&queue, "deliveries").await, count(&queue, "event_identities").await), (2, 1));
    }
}
