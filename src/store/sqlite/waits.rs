//! [`WaitStore`] in SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::issue_ref::IssueRef;
use crate::store::rows::{WaitRow as Row, wait_from};
use crate::store::{Answer, Wait, WaitStore};

#[async_trait]
impl WaitStore for SqliteStore {
    async fn begin_wait(&self, wait: &Wait) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO waits (job_id, issue, asked, asked_at, deadline, comment_id) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(wait.job_id)
        .bind(wait.issue.to_string())
        .bind(serde_json::to_string(&wait.asked)?)
        .bind(wait.asked_at)
        .bind(wait.deadline)
        .bind(wait.comment_id.and_then(|id| i64::try_from(id).ok()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_wait_posted(&self, job_id: i64, comment_id: u64) -> anyhow::Result<()> {
        sqlx::query("UPDATE waits SET comment_id = ? WHERE job_id = ?")
            .bind(i64::try_from(comment_id).unwrap_or(i64::MAX))
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn wait_of_job(&self, job_id: i64) -> anyhow::Result<Option<Wait>> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT job_id, issue, asked, asked_at, deadline, comment_id, answer, answered_by, answer_comment, \
             answered_at FROM waits WHERE job_id = ?",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(wait_from).transpose()
    }

    async fn open_wait(&self, issue: &IssueRef) -> anyhow::Result<Option<Wait>> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT job_id, issue, asked, asked_at, deadline, comment_id, answer, answered_by, answer_comment, \
             answered_at FROM waits WHERE issue = ? AND answer IS NULL AND expired = 0 \
             AND job_id IN (SELECT id FROM jobs WHERE status IN ('pending', 'running')) ORDER BY asked_at LIMIT 1",
        )
        .bind(issue.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(wait_from).transpose()
    }

    async fn answer_wait(&self, job_id: i64, asked_at: i64, answer: &Answer) -> anyhow::Result<bool> {
        // One statement: of two answers, or an answer and the deadline, one wins.
        let done = sqlx::query(
            "UPDATE waits SET answer = ?, answered_by = ?, answer_comment = ?, answered_at = ?
             WHERE job_id = ? AND asked_at = ? AND answer IS NULL AND expired = 0",
        )
        .bind(&answer.text)
        .bind(&answer.author)
        .bind(answer.comment_id.and_then(|id| i64::try_from(id).ok()))
        .bind(answer.at)
        .bind(job_id)
        .bind(asked_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expire_wait(&self, job_id: i64, asked_at: i64) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE waits SET expired = 1 WHERE job_id = ? AND asked_at = ? AND answer IS NULL")
            .bind(job_id)
            .bind(asked_at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn waiting_issues(&self) -> anyhow::Result<Vec<IssueRef>> {
        let issues: Vec<String> = sqlx::query_scalar("SELECT DISTINCT issue FROM waits").fetch_all(&self.pool).await?;
        issues.iter().map(|i| i.parse().map_err(|e| anyhow::anyhow!("a wait names a bad issue `{i}`: {e}"))).collect()
    }

    async fn end_wait(&self, job_id: i64) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM waits WHERE job_id = ?").bind(job_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn end_waits_on(&self, issue: &IssueRef) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM waits WHERE issue = ?").bind(issue.to_string()).execute(&self.pool).await?;
        Ok(())
    }
}
