//! [`SpendingStore`] on PostgreSQL.

use async_trait::async_trait;

use super::PostgresStore;
use crate::budget::{Spend, Spent, start_of_day};
use crate::issue_ref::IssueRef;
use crate::store::{HOUR_MS, SpendingStore};

impl PostgresStore {
    /// Runs and spend of one scope (`issue`, `repo` or `instance` = `key`) since `since_ms`.
    async fn spend_since(&self, column: Column, key: &str, since_ms: i64) -> anyhow::Result<(u64, Spend)> {
        // sqlx takes only literal SQL: one statement per column. SUM of BIGINT is NUMERIC here.
        let query = match column {
            Column::Issue => {
                "SELECT COUNT(*), COALESCE(SUM(tokens), 0)::BIGINT, COALESCE(SUM(cost), 0.0) FROM runs WHERE issue = $1 AND finished_at >= $2"
            }
            Column::Repo => {
                "SELECT COUNT(*), COALESCE(SUM(tokens), 0)::BIGINT, COALESCE(SUM(cost), 0.0) FROM runs WHERE repo = $1 AND finished_at >= $2"
            }
            Column::Instance => {
                "SELECT COUNT(*), COALESCE(SUM(tokens), 0)::BIGINT, COALESCE(SUM(cost), 0.0) FROM runs WHERE instance = $1 AND finished_at >= $2"
            }
        };
        let (runs, tokens, cost): (i64, i64, f64) =
            sqlx::query_as(query).bind(key).bind(since_ms).fetch_one(&self.pool).await?;
        let runs = u64::try_from(runs).unwrap_or(0);
        Ok((runs, Spend { tokens: u64::try_from(tokens).unwrap_or(0), cost }))
    }
}

#[derive(Clone, Copy)]
enum Column {
    Issue,
    Repo,
    Instance,
}

#[async_trait]
impl SpendingStore for PostgresStore {
    async fn record_spend(&self, issue: &IssueRef, job_id: i64, spend: Spend, at_ms: i64) -> anyhow::Result<()> {
        let repo = issue.repo();
        sqlx::query(
            "INSERT INTO runs (issue, repo, instance, job_id, finished_at, tokens, cost) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(issue.to_string())
        .bind(repo.to_string())
        .bind(repo.instance().to_string())
        .bind(job_id)
        .bind(at_ms)
        .bind(i64::try_from(spend.tokens).unwrap_or(i64::MAX))
        .bind(if spend.cost.is_finite() { spend.cost.max(0.0) } else { 0.0 })
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn spent(&self, issue: &IssueRef, now_ms: i64) -> anyhow::Result<Spent> {
        let resumed: Option<i64> = sqlx::query_scalar("SELECT at FROM budget_resumes WHERE issue = $1")
            .bind(issue.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let resumed = resumed.unwrap_or(i64::MIN);
        // As in SQLite: `resume` lifts the issue's budget and the loop breaker, not the day's.
        let today = start_of_day(now_ms);
        let repo = issue.repo();
        let (_, on_issue) = self.spend_since(Column::Issue, &issue.to_string(), resumed).await?;
        let (_, repo_today) = self.spend_since(Column::Repo, &repo.to_string(), today).await?;
        let (_, instance_today) = self.spend_since(Column::Instance, &repo.instance().to_string(), today).await?;
        let last_hour = now_ms.saturating_sub(HOUR_MS).max(resumed);
        let (runs, _) = self.spend_since(Column::Issue, &issue.to_string(), last_hour).await?;
        Ok(Spent { issue: on_issue, repo_today, instance_today, issue_runs_last_hour: runs })
    }

    async fn issue_total(&self, issue: &IssueRef) -> anyhow::Result<(u64, Spend)> {
        self.spend_since(Column::Issue, &issue.to_string(), i64::MIN).await
    }

    async fn resume_budgets(&self, issue: &IssueRef, at_ms: i64) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO budget_resumes (issue, at) VALUES ($1, $2) ON CONFLICT (issue) DO UPDATE SET at = $2")
            .bind(issue.to_string())
            .bind(at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
