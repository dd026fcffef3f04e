//! What agent runs spent, for budgets and the running totals people see. Part of
//! [`super::Store`], as the job queue's persistence is.

use async_trait::async_trait;

use crate::budget::{Spend, Spent};
use crate::issue_ref::IssueRef;

#[async_trait]
pub trait SpendingStore: Send + Sync {
    /// Records what one run (of job `job_id`) spent, finished at `at_ms`.
    async fn record_spend(&self, issue: &IssueRef, job_id: i64, spend: Spend, at_ms: i64) -> anyhow::Result<()>;

    /// What a trigger on `issue` counts against at `now_ms`: the issue's spend
    /// and its runs in the last hour, from the issue's last `resume` on, and its
    /// repository's and instance's spend today (UTC).
    async fn spent(&self, issue: &IssueRef, now_ms: i64) -> anyhow::Result<Spent>;

    /// The issue's runs and spend, all told.
    async fn issue_total(&self, issue: &IssueRef) -> anyhow::Result<(u64, Spend)>;

    /// A writer said `@kugetsu resume`: the issue's own budget and the loop
    /// breaker count from `at_ms`.
    async fn resume_budgets(&self, issue: &IssueRef, at_ms: i64) -> anyhow::Result<()>;
}
