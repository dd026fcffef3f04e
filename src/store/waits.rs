//! Runs that wait for a person's answer (issue 11, "questions go through the
//! thread"). Part of [`super::Store`]: a wait outlives a restart.

use async_trait::async_trait;

use crate::issue_ref::IssueRef;
use crate::question::Asked;

/// A run's open question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub job_id: i64,
    pub issue: IssueRef,
    pub asked: Asked,
    pub asked_at: i64,
    /// When nobody's answer becomes the answer (`bot.question_timeout`).
    pub deadline: i64,
    /// The question's comment, once it is on the issue.
    pub comment_id: Option<u64>,
    pub answer: Option<Answer>,
}

/// A writer's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub author: String,
    pub comment_id: Option<u64>,
    pub at: i64,
}

#[async_trait]
pub trait WaitStore: Send + Sync {
    /// Records the job's question, replacing one it asked before.
    async fn begin_wait(&self, wait: &Wait) -> anyhow::Result<()>;
    /// The question was posted on the issue, as comment `comment_id`.
    async fn mark_wait_posted(&self, job_id: i64, comment_id: u64) -> anyhow::Result<()>;
    async fn wait_of_job(&self, job_id: i64) -> anyhow::Result<Option<Wait>>;
    /// The issue's question that takes an answer now, if any: asked by a job
    /// still pending or running, not answered, not expired.
    async fn open_wait(&self, issue: &IssueRef) -> anyhow::Result<Option<Wait>>;
    /// Answers job `job_id`'s question asked at `asked_at`, if it still takes an
    /// answer; the first answer wins. Whether this one did.
    async fn answer_wait(&self, job_id: i64, asked_at: i64, answer: &Answer) -> anyhow::Result<bool>;
    /// The deadline passed: the question takes no answer from now on, unless
    /// one came first. Whether it expired (`false`: it was answered).
    async fn expire_wait(&self, job_id: i64, asked_at: i64) -> anyhow::Result<bool>;
    /// Every issue with a wait on record.
    async fn waiting_issues(&self) -> anyhow::Result<Vec<IssueRef>>;
    async fn end_wait(&self, job_id: i64) -> anyhow::Result<()>;
    /// Ends every wait on the issue (`stop`).
    async fn end_waits_on(&self, issue: &IssueRef) -> anyhow::Result<()>;
}
