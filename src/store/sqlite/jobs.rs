//! [`JobStore`] in SQLite. Every statement is one short hop on the store's one
//! connection (see [`SqliteStore::open`]).

use async_trait::async_trait;

use super::SqliteStore;
use crate::issue_ref::IssueRef;
use crate::queue::{Enqueued, Job, JobLine, QueueDepth, QueuedJob};
use crate::store::CiFixHistory;
use crate::store::rows::{ClaimedRow, queued_job};
use crate::store::{JobStore, now_millis};

/// A [`JobLine`] query: the columns, then `$filter` (sqlx takes only literal SQL).
macro_rules! job_lines {
    ($filter:literal) => {
        concat!(
            "SELECT id, issue, COALESCE(json_extract(job, '$.trigger.kind'), '') AS kind, status, \
             COALESCE(author, '') AS author, created_at, updated_at, not_before, error, attempts FROM jobs ",
            $filter
        )
    };
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn enqueue(&self, instance: &str, identity: Option<&str>, job: &Job) -> anyhow::Result<Enqueued> {
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
        Ok(Enqueued::Queued(id))
    }

    async fn knows_event(&self, identity: &str) -> anyhow::Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM event_identities WHERE identity = ?")
            .bind(identity)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn recent_jobs(&self, author: &str, repo: &str, since_ms: i64) -> anyhow::Result<(i64, i64)> {
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

    async fn ci_fix_history(&self, issue: &IssueRef, before_job: i64) -> anyhow::Result<CiFixHistory> {
        let (attempts, stops): (i64, i64) = sqlx::query_as(
            "WITH last_person AS ( \
                 SELECT COALESCE(MAX(id), 0) AS id FROM jobs \
                  WHERE issue = ?1 AND id < ?2 AND authorized = 1 \
                    AND json_extract(job, '$.trigger.kind') IN ('mention', 'label', 'review')) \
             SELECT \
               (SELECT COUNT(*) FROM jobs, last_person WHERE jobs.issue = ?1 AND jobs.id > last_person.id \
                  AND jobs.id < ?2 AND jobs.authorized = 1 AND json_extract(job, '$.trigger.kind') = 'ci_fix'), \
               (SELECT COUNT(*) FROM jobs, last_person WHERE jobs.issue = ?1 AND jobs.id > last_person.id \
                  AND jobs.authorized = 1 AND json_extract(job, '$.trigger.kind') = 'control' \
                  AND json_extract(job, '$.trigger.command') = 'stop')",
        )
        .bind(issue.to_string())
        .bind(before_job)
        .fetch_one(&self.pool)
        .await?;
        Ok(CiFixHistory { attempts: u32::try_from(attempts).unwrap_or(u32::MAX), stopped: stops > 0 })
    }

    async fn mark_authorized(&self, id: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE jobs SET authorized = 1 WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn claim_deny_reply(&self, issue: &IssueRef, since_ms: i64) -> anyhow::Result<bool> {
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

    async fn save_outcome(&self, id: i64, comment: &str, run_error: Option<&str>) -> anyhow::Result<()> {
        sqlx::query("UPDATE jobs SET outcome = ?, run_error = ?, updated_at = ? WHERE id = ? AND status = 'running' AND claimed_by IS ?")
            .bind(comment)
            .bind(run_error)
            .bind(now_millis())
            .bind(id)
            .bind(&self.replica)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn defer(&self, id: i64, not_before_ms: i64, why: &str) -> anyhow::Result<()> {
        self.put_back(id, not_before_ms, why, 0).await
    }

    async fn retry_later(&self, id: i64, not_before_ms: i64, why: &str) -> anyhow::Result<()> {
        self.put_back(id, not_before_ms, why, 1).await
    }

    async fn waiting_reasons(&self, issue: &IssueRef) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT error FROM jobs WHERE issue = ? AND status = 'pending' AND error IS NOT NULL ORDER BY id",
        )
        .bind(issue.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn claim(&self, lane: &str, limit: usize) -> anyhow::Result<Vec<QueuedJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now_millis();
        let rows: Vec<ClaimedRow> = sqlx::query_as(
            "UPDATE jobs SET status = 'running', updated_at = ?1, claimed_by = ?4 WHERE id IN (
                SELECT j.id FROM jobs j
                WHERE j.status = 'pending' AND j.not_before <= ?1 AND j.lane = ?3
                  AND NOT EXISTS (SELECT 1 FROM jobs r
                                  WHERE r.issue = j.issue AND r.lane = j.lane AND r.status = 'running')
                  AND j.id = (SELECT MIN(p.id) FROM jobs p
                              WHERE p.issue = j.issue AND p.lane = j.lane AND p.status = 'pending')
                  -- An issue another live replica holds is that replica's to work on.
                  AND (j.lane <> 'work' OR NOT EXISTS (SELECT 1 FROM leases l
                       WHERE l.key = 'issue:' || j.issue AND l.replica <> ?4 AND l.expires_at > ?1))
                ORDER BY j.id LIMIT ?2
            ) RETURNING id, job, outcome, run_error, attempts, created_at",
        )
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(lane)
        .bind(&self.replica)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs: Vec<QueuedJob> = rows.into_iter().filter_map(queued_job).collect();
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    async fn claim_joiner(&self, issue: &IssueRef) -> anyhow::Result<Option<QueuedJob>> {
        let row: Option<ClaimedRow> = sqlx::query_as(
            "UPDATE jobs SET status = 'running', updated_at = ?1, claimed_by = ?3 WHERE id = (
                SELECT j.id FROM jobs j
                WHERE j.issue = ?2 AND j.lane = 'work' AND j.status = 'pending' AND j.not_before <= ?1
                  AND j.outcome IS NULL AND json_extract(j.job, '$.trigger.kind') = 'mention'
                  AND j.id = (SELECT MIN(p.id) FROM jobs p
                              WHERE p.issue = j.issue AND p.lane = 'work' AND p.status = 'pending')
            ) RETURNING id, job, outcome, run_error, attempts, created_at",
        )
        .bind(now_millis())
        .bind(issue.to_string())
        .bind(&self.replica)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(queued_job))
    }

    async fn finish(&self, id: i64, outcome: Result<(), String>) -> anyhow::Result<()> {
        let (status, error) = match outcome {
            Ok(()) => ("done", None),
            Err(e) => ("failed", Some(e)),
        };
        // A job claimed by another replica since (this one was thought dead) is its to finish.
        sqlx::query(
            "UPDATE jobs SET status = ?, error = ?, updated_at = ? WHERE id = ? AND status = 'running' AND claimed_by IS ?",
        )
            .bind(status)
            .bind(error)
            .bind(now_millis())
            .bind(id)
            .bind(&self.replica)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn stop(&self, id: i64, why: &str) -> anyhow::Result<bool> {
        let stopped = sqlx::query(
            "UPDATE jobs SET status = 'failed', error = ?, updated_at = ? WHERE id = ? AND status = 'running'",
        )
        .bind(why)
        .bind(now_millis())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(stopped.rows_affected() == 1)
    }

    async fn requeue_interrupted(&self) -> anyhow::Result<u64> {
        let done = sqlx::query("UPDATE jobs SET status = 'pending', updated_at = ? WHERE status = 'running'")
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn claim_trigger(&self, key: &str, id: i64) -> anyhow::Result<bool> {
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

    async fn trigger_handled(&self, key: &str) -> anyhow::Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM handled_triggers WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn label_job_since(&self, issue: &IssueRef, label: &str, since_ms: i64) -> anyhow::Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM jobs WHERE issue = ?1 AND created_at >= ?3 \
               AND ((json_extract(job, '$.trigger.kind') = 'label' \
                     AND lower(json_extract(job, '$.trigger.name')) = lower(?2)) \
                    OR json_extract(job, '$.trigger.kind') = 'refused') \
             LIMIT 1",
        )
        .bind(issue.to_string())
        .bind(label)
        .bind(since_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn deny_reply_due(&self, issue: &IssueRef, since_ms: i64) -> anyhow::Result<bool> {
        let last: Option<i64> = sqlx::query_scalar("SELECT at FROM deny_replies WHERE issue = ?")
            .bind(issue.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(last.is_none_or(|at| at < since_ms))
    }

    async fn release_deny_reply(&self, issue: &IssueRef) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM deny_replies WHERE issue = ?").bind(issue.to_string()).execute(&self.pool).await?;
        Ok(())
    }

    async fn waiting_authors(&self, issue: &IssueRef) -> anyhow::Result<Vec<(String, bool)>> {
        Ok(sqlx::query_as(
            "SELECT author, authorized = 1 FROM jobs \
             WHERE issue = ? AND lane = 'work' AND status IN ('pending', 'running')",
        )
        .bind(issue.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn waiting_for(&self, issue: &IssueRef) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE issue = ? AND lane = 'work' AND status IN ('pending', 'running')",
        )
        .bind(issue.to_string())
        .fetch_one(&self.pool)
        .await?)
    }

    async fn served_repos(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT repo, COALESCE((SELECT at FROM reconciled r WHERE r.repo = s.repo), \
                                   (SELECT MAX(created_at) FROM jobs j WHERE j.repo = s.repo), 0) \
             FROM (SELECT repo FROM jobs UNION SELECT repo FROM issue_sessions) s ORDER BY repo",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn set_reconciled(&self, repo: &str, at_ms: i64) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO reconciled (repo, at) VALUES (?1, ?2) ON CONFLICT (repo) DO UPDATE SET at = ?2")
            .bind(repo)
            .bind(at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn labels(&self, issue: &IssueRef) -> anyhow::Result<Option<Vec<String>>> {
        let json: Option<String> = sqlx::query_scalar("SELECT labels FROM issue_labels WHERE issue = ?")
            .bind(issue.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    async fn set_labels(&self, issue: &IssueRef, labels: &[String]) -> anyhow::Result<()> {
        sqlx::query("INSERT OR REPLACE INTO issue_labels (issue, labels) VALUES (?, ?)")
            .bind(issue.to_string())
            .bind(serde_json::to_string(labels)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn mark_closed(&self, issue: &IssueRef) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO closed_issues (issue, at) VALUES (?1, ?2) ON CONFLICT (issue) DO UPDATE SET at = ?2")
            .bind(issue.to_string())
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn depth(&self) -> anyhow::Result<QueueDepth> {
        let (queued, running, waiting, oldest_due_at): (i64, i64, i64, Option<i64>) = sqlx::query_as(
            "SELECT COALESCE(SUM(status = 'pending' AND not_before <= ?1), 0), \
                    COALESCE(SUM(status = 'running'), 0), \
                    COALESCE(SUM(status = 'pending' AND not_before > ?1), 0), \
                    MIN(CASE WHEN status = 'pending' AND not_before <= ?1 THEN MAX(created_at, not_before) END) \
             FROM jobs WHERE status IN ('pending', 'running')",
        )
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(QueueDepth { queued: count(queued), running: count(running), waiting: count(waiting), oldest_due_at })
    }

    async fn unfinished_jobs(&self, limit: u32) -> anyhow::Result<Vec<JobLine>> {
        Ok(sqlx::query_as(job_lines!(
            "WHERE status IN ('pending', 'running') ORDER BY status = 'running' DESC, not_before, id LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn recent_failures(&self, limit: u32) -> anyhow::Result<Vec<JobLine>> {
        Ok(sqlx::query_as(job_lines!("WHERE status = 'failed' ORDER BY updated_at DESC, id DESC LIMIT ?"))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }
}

impl SqliteStore {
    /// One statement, so nobody reading the row sees the attempt counted while
    /// the job still shows as running with no reason.
    async fn put_back(&self, id: i64, not_before_ms: i64, why: &str, attempt: i64) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE jobs SET status = 'pending', not_before = ?, error = ?, updated_at = ?, \
             attempts = attempts + ? WHERE id = ? AND status = 'running' AND claimed_by IS ?",
        )
        .bind(not_before_ms)
        .bind(why)
        .bind(now_millis())
        .bind(attempt)
        .bind(id)
        .bind(&self.replica)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
