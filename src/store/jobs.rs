//! The job queue's persistence: jobs, the deliveries and event identities that
//! keep replays out, labels as last seen, closed issues, and the reconciler's
//! marks. It is part of [`super::Store`], so one store holds all of kugetsu's
//! state and another database is another implementation of one trait. The queue
//! ([`crate::queue::Queue`]) is its user, and adds the workers' wake-ups.

use async_trait::async_trait;

use crate::issue_ref::IssueRef;
use crate::queue::{Enqueued, Job, JobLine, QueueDepth, QueuedJob};
use crate::store::CiFixHistory;

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Records the delivery (and the event's identity) and stores its job,
    /// atomically. A delivery id or identity seen before stores nothing.
    async fn enqueue(&self, instance: &str, identity: Option<&str>, job: &Job) -> anyhow::Result<Enqueued>;

    /// The issue's CI repairs before job `before_job` and since the last admitted
    /// request by a person (a mention, a trigger label or a review).
    async fn ci_fix_history(&self, issue: &IssueRef, before_job: i64) -> anyhow::Result<CiFixHistory>;

    /// Whether an event with this identity was stored already.
    async fn knows_event(&self, identity: &str) -> anyhow::Result<bool>;

    /// Admitted jobs created since `since_ms` by `author`, and in `repo`.
    async fn recent_jobs(&self, author: &str, repo: &str, since_ms: i64) -> anyhow::Result<(i64, i64)>;

    /// Marks a job as admitted: its trigger confirmed, its author allowed.
    async fn mark_authorized(&self, id: i64) -> anyhow::Result<()>;

    /// Takes the issue's deny reply if none was given since `since_ms`; false
    /// when one was, so the caller stays silent.
    async fn claim_deny_reply(&self, issue: &IssueRef, since_ms: i64) -> anyhow::Result<bool>;

    /// Keeps the comment a finished run produced, before it is posted, and why
    /// its run failed, if it did.
    async fn save_outcome(&self, id: i64, comment: &str, run_error: Option<&str>) -> anyhow::Result<()>;

    /// Puts a claimed job back, not to be taken before `not_before_ms`; `why` is
    /// what it waits for, shown by `status`. A job that is no longer running
    /// (stopped meanwhile) stays as it is.
    async fn defer(&self, id: i64, not_before_ms: i64, why: &str) -> anyhow::Result<()>;

    /// Puts a job back after a forge fault, counting the attempt.
    async fn retry_later(&self, id: i64, not_before_ms: i64, why: &str) -> anyhow::Result<()>;

    /// Why the issue's pending jobs wait, if they were put back.
    async fn waiting_reasons(&self, issue: &IssueRef) -> anyhow::Result<Vec<String>>;

    /// Takes up to `limit` jobs of `lane`: for each issue with no running job in
    /// that lane, its oldest pending one. Claimed jobs are marked running.
    async fn claim(&self, lane: &str, limit: usize) -> anyhow::Result<Vec<QueuedJob>>;

    /// Takes the issue's oldest pending work job if it is a mention that can join
    /// the issue's running turn (one with no saved outcome), marking it running.
    async fn claim_joiner(&self, issue: &IssueRef) -> anyhow::Result<Option<QueuedJob>>;

    /// Records how a running job of this replica's ended. A job no longer
    /// running as its own (stopped meanwhile, or taken over by another replica)
    /// is left as it is; so is its saved outcome in [`Self::save_outcome`].
    async fn finish(&self, id: i64, outcome: Result<(), String>) -> anyhow::Result<()>;

    /// Records a running job as stopped; a job that already finished is left as it is.
    async fn stop(&self, id: i64, why: &str) -> anyhow::Result<bool>;

    /// Jobs that were running when the process stopped go back to the queue.
    async fn requeue_interrupted(&self) -> anyhow::Result<u64>;

    /// Records that job `id` acts on the trigger `key`; false when another job
    /// already did (a replay). The same job may claim its key again on a retry.
    async fn claim_trigger(&self, key: &str, id: i64) -> anyhow::Result<bool>;

    /// Whether a job has acted on the trigger `key` (see `claim_trigger`).
    async fn trigger_handled(&self, key: &str) -> anyhow::Result<bool>;

    /// Whether a job on the issue was stored at or after `since_ms` for the
    /// trigger `label` (whatever became of it), or refused at the door.
    async fn label_job_since(&self, issue: &IssueRef, label: &str, since_ms: i64) -> anyhow::Result<bool>;

    /// Whether the issue may get a deny reply: none was given since `since_ms`.
    async fn deny_reply_due(&self, issue: &IssueRef, since_ms: i64) -> anyhow::Result<bool>;

    /// Forgets the issue's last deny reply, which could not be posted.
    async fn release_deny_reply(&self, issue: &IssueRef) -> anyhow::Result<()>;

    /// Authors of the issue's queued or running work jobs, and whether each job
    /// was admitted already.
    async fn waiting_authors(&self, issue: &IssueRef) -> anyhow::Result<Vec<(String, bool)>>;

    /// Work jobs on the issue that are queued or running.
    async fn waiting_for(&self, issue: &IssueRef) -> anyhow::Result<i64>;

    /// Repositories kugetsu has had a job or a session for, with when it last
    /// looked at their comments (or, never having looked, when their last job came).
    async fn served_repos(&self) -> anyhow::Result<Vec<(String, i64)>>;

    /// Records that the repository's comments were looked at up to `at_ms`.
    async fn set_reconciled(&self, repo: &str, at_ms: i64) -> anyhow::Result<()>;

    async fn labels(&self, issue: &IssueRef) -> anyhow::Result<Option<Vec<String>>>;

    async fn set_labels(&self, issue: &IssueRef, labels: &[String]) -> anyhow::Result<()>;

    /// Records that the issue was closed now.
    async fn mark_closed(&self, issue: &IssueRef) -> anyhow::Result<()>;

    async fn depth(&self) -> anyhow::Result<QueueDepth>;

    /// Running jobs first, then the rest in the order they will run; at most `limit`.
    async fn unfinished_jobs(&self, limit: u32) -> anyhow::Result<Vec<JobLine>>;

    /// The latest failed jobs, newest first.
    async fn recent_failures(&self, limit: u32) -> anyhow::Result<Vec<JobLine>>;
}
