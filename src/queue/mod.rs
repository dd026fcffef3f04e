//! The durable job queue: webhook intake stores jobs here before it answers,
//! and the workers take them out one issue at a time, in order. The jobs live
//! in the store ([`crate::store::JobStore`]); the queue adds the wake-ups that
//! tell the workers to look.

mod overview;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::event::CommentInfo;
use crate::issue_ref::IssueRef;
use crate::store::Store;
use crate::trigger::{Control, Trigger};

pub use overview::{JobLine, QueueDepth};

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
    /// The pull request the trigger came from, when kugetsu opened it for this
    /// job's issue: the run continues the issue, and answers on the pull request.
    #[serde(default)]
    pub on_pull_request: Option<u64>,
    /// On a review: which, and, once confirmed, its comments as the forge has them.
    #[serde(default)]
    pub review: Option<ReviewRequest>,
}

/// A review a job answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRequest {
    pub event: crate::event::ReviewInfo,
    /// Filled in from the forge when the trigger is confirmed.
    #[serde(default)]
    pub review: Option<crate::forge::Review>,
}

impl Job {
    /// Where the trigger was made, and where the answer goes: the issue, or
    /// its pull request.
    pub fn place(&self) -> IssueRef {
        self.on_pull_request.and_then(|n| self.issue.repo().issue(n).ok()).unwrap_or_else(|| self.issue.clone())
    }

    /// What kugetsu reacts on: the triggering comment, or the issue it was made on.
    pub fn reaction_target(&self) -> crate::forge::ReactionTarget {
        use crate::forge::ReactionTarget;
        self.comment.as_ref().map_or(ReactionTarget::Issue(self.place().number()), |c| ReactionTarget::Comment(c.id))
    }
}

#[cfg(test)]
impl Job {
    /// A job by alice with no text, for tests.
    pub fn minimal(issue: &str, trigger: JobTrigger, delivery: &str) -> Job {
        Job {
            issue: issue.parse().expect("a ref"),
            delivery_id: delivery.into(),
            trigger,
            author: "alice".into(),
            title: String::new(),
            issue_body: String::new(),
            comment: None,
            is_pull_request: false,
            repo_html_url: None,
            default_branch: None,
            on_pull_request: None,
            review: None,
        }
    }
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
    /// A pull request review (its comments are read from the forge).
    Review,
    /// CI failed on `sha`, the head kugetsu pushed; `checks` are the failures
    /// the forge confirms, filled in before the run.
    CiFix {
        sha: String,
        #[serde(default)]
        checks: Vec<crate::forge::FailedCheck>,
    },
    /// Not run: the reason is posted as a reply (rate limit, full queue).
    Refused {
        reason: String,
    },
    /// A comment while the issue's run waits for a person: the answer to job
    /// `job`'s question asked at `asked_at`, if its author may give one.
    Answer {
        job: i64,
        asked_at: i64,
    },
}

impl JobTrigger {
    /// Whether the job waits for the issue's earlier work (`work`) or is answered at once (`control`).
    pub fn lane(&self) -> &'static str {
        match self {
            Self::Mention
            | Self::Label { .. }
            | Self::Review
            | Self::CiFix { .. }
            | Self::Control { command: Control::Reset } => "work",
            Self::Control { .. } | Self::Refused { .. } | Self::Answer { .. } => "control",
        }
    }
}

impl From<Trigger> for JobTrigger {
    fn from(t: Trigger) -> Self {
        match t {
            Trigger::Mention => Self::Mention,
            Trigger::Label(name) => Self::Label { name },
            Trigger::Control(command) => Self::Control { command },
            Trigger::Review => Self::Review,
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueuedJob {
    pub id: i64,
    pub job: Job,
    /// The comment a run already produced, when the process died before posting it.
    pub outcome: Option<String>,
    /// Why that run failed, if it did.
    pub run_error: Option<String>,
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
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    /// Issues that may have a run waiting for an answer: every comment on them
    /// is looked at for one, and only on them, so intake reads no more for the
    /// rest. Loaded at start-up ([`Queue::load_waits`]) and added to before a
    /// question is posted; never shrunk while running (a look that finds no wait
    /// costs one read).
    may_wait: Arc<std::sync::Mutex<std::collections::HashSet<IssueRef>>>,
    /// Other replicas share the store: a question one asked is unknown to the
    /// others' set, so every comment is looked at in the store.
    shared: bool,
}

/// Methods that are the store's, unchanged.
macro_rules! from_the_store {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        $(
            $(#[$doc])*
            pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.store.$name($($arg),*).await
            }
        )*
    };
}

impl Queue {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, wake: Arc::new(Notify::new()), may_wait: Arc::default(), shared: false }
    }

    /// A queue whose store other replicas share (see `shared`).
    pub fn shared(store: Arc<dyn Store>) -> Self {
        Self { shared: true, ..Self::new(store) }
    }

    /// Records the delivery (and the event's identity) and stores its job,
    /// atomically. A delivery id or identity seen before stores nothing.
    pub async fn enqueue(&self, instance: &str, identity: Option<&str>, job: &Job) -> anyhow::Result<Enqueued> {
        let enqueued = self.store.enqueue(instance, identity, job).await?;
        if matches!(enqueued, Enqueued::Queued(_)) {
            self.wake.notify_one();
        }
        Ok(enqueued)
    }

    pub async fn finish(&self, id: i64, outcome: Result<(), String>) -> anyhow::Result<()> {
        self.store.finish(id, outcome).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Records a running job as stopped; a job that already finished is left as it is.
    pub async fn stop(&self, id: i64, why: &str) -> anyhow::Result<bool> {
        let stopped = self.store.stop(id, why).await?;
        self.wake.notify_one();
        Ok(stopped)
    }

    /// Learns which issues have waits on record, before intake starts.
    pub async fn load_waits(&self) -> anyhow::Result<()> {
        let issues = self.store.waiting_issues().await?;
        self.lock_may_wait().extend(issues);
        Ok(())
    }

    fn lock_may_wait(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<IssueRef>> {
        self.may_wait.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a run's question; its issue's comments are looked at for the answer from now.
    pub async fn begin_wait(&self, wait: &crate::store::Wait) -> anyhow::Result<()> {
        self.lock_may_wait().insert(wait.issue.clone());
        self.store.begin_wait(wait).await
    }

    /// Whether any issue may have a run waiting for an answer.
    pub fn any_waits(&self) -> bool {
        self.shared || !self.lock_may_wait().is_empty()
    }

    /// Whether the issue may have a run waiting for an answer; if not, it has none.
    pub fn may_wait_on(&self, issue: &IssueRef) -> bool {
        self.shared || self.lock_may_wait().contains(issue)
    }

    /// The issue's question that waits for an answer, if any.
    pub async fn open_wait(&self, issue: &IssueRef) -> anyhow::Result<Option<crate::store::Wait>> {
        if !self.may_wait_on(issue) {
            return Ok(None);
        }
        self.store.open_wait(issue).await
    }

    /// Has the workers look at the queue now (a slot came free).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Resolves when a job was added or finished.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    from_the_store! {
        /// Whether an event with this identity was stored already.
        fn knows_event(&self, identity: &str) -> anyhow::Result<bool>;
        /// Admitted jobs created since `since_ms` by `author`, and in `repo`.
        fn recent_jobs(&self, author: &str, repo: &str, since_ms: i64) -> anyhow::Result<(i64, i64)>;
        fn mark_authorized(&self, id: i64) -> anyhow::Result<()>;
        fn claim_deny_reply(&self, issue: &IssueRef, since_ms: i64) -> anyhow::Result<bool>;
        fn save_outcome(&self, id: i64, comment: &str, run_error: Option<&str>) -> anyhow::Result<()>;
        fn defer(&self, id: i64, not_before_ms: i64, why: &str) -> anyhow::Result<()>;
        fn retry_later(&self, id: i64, not_before_ms: i64, why: &str) -> anyhow::Result<()>;
        fn waiting_reasons(&self, issue: &IssueRef) -> anyhow::Result<Vec<String>>;
        fn claim(&self, lane: &str, limit: usize) -> anyhow::Result<Vec<QueuedJob>>;
        fn claim_joiner(&self, issue: &IssueRef) -> anyhow::Result<Option<QueuedJob>>;
        fn requeue_interrupted(&self) -> anyhow::Result<u64>;
        fn claim_trigger(&self, key: &str, id: i64) -> anyhow::Result<bool>;
        fn trigger_handled(&self, key: &str) -> anyhow::Result<bool>;
        fn label_job_since(&self, issue: &IssueRef, label: &str, since_ms: i64) -> anyhow::Result<bool>;
        fn deny_reply_due(&self, issue: &IssueRef, since_ms: i64) -> anyhow::Result<bool>;
        fn release_deny_reply(&self, issue: &IssueRef) -> anyhow::Result<()>;
        fn waiting_authors(&self, issue: &IssueRef) -> anyhow::Result<Vec<(String, bool)>>;
        fn waiting_for(&self, issue: &IssueRef) -> anyhow::Result<i64>;
        fn served_repos(&self) -> anyhow::Result<Vec<(String, i64)>>;
        fn set_reconciled(&self, repo: &str, at_ms: i64) -> anyhow::Result<()>;
        fn labels(&self, issue: &IssueRef) -> anyhow::Result<Option<Vec<String>>>;
        fn set_labels(&self, issue: &IssueRef, labels: &[String]) -> anyhow::Result<()>;
        fn mark_closed(&self, issue: &IssueRef) -> anyhow::Result<()>;
        fn depth(&self) -> anyhow::Result<QueueDepth>;
        fn unfinished_jobs(&self, limit: u32) -> anyhow::Result<Vec<JobLine>>;
        fn recent_failures(&self, limit: u32) -> anyhow::Result<Vec<JobLine>>;
        fn issue_of_pull_request(&self, pull: &IssueRef) -> anyhow::Result<Option<IssueRef>>;
        fn pull_request_of(&self, issue: &IssueRef) -> anyhow::Result<Option<crate::store::PullRequestRecord>>;
        fn save_pull_request(&self, record: &crate::store::PullRequestRecord) -> anyhow::Result<()>;
        fn pull_requests(&self) -> anyhow::Result<Vec<crate::store::PullRequestRecord>>;
        fn issue_pushed(&self, repo: &crate::issue_ref::RepoRef, sha: &str) -> anyhow::Result<Option<IssueRef>>;
        fn ci_fix_history(&self, issue: &IssueRef, before_job: i64) -> anyhow::Result<crate::store::CiFixHistory>;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn job(delivery: &str) -> Job {
        Job {
            author: "Alice".to_owned(),
            title: "t".to_owned(),
            ..Job::minimal("g/o/r#1", JobTrigger::Mention, delivery)
        }
    }

    async fn count(store: &SqliteStore, table: &'static str) -> i64 {
        let sql = match table {
            "jobs" => "SELECT COUNT(*) FROM jobs",
            "deliveries" => "SELECT COUNT(*) FROM deliveries",
            _ => "SELECT COUNT(*) FROM event_identities",
        };
        sqlx::query_scalar(sql).fetch_one(store.pool()).await.unwrap()
    }

    #[tokio::test]
    async fn a_delivery_or_event_seen_before_stores_nothing() {
        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        let queue = Queue::new(store.clone());
        let first = queue.enqueue("g", Some("event-1"), &job("d-1")).await.unwrap();
        assert!(matches!(first, Enqueued::Queued(_)), "{first:?}");
        assert_eq!(
            queue.enqueue("g", Some("event-2"), &job("d-1")).await.unwrap(),
            Enqueued::Duplicate,
            "same delivery"
        );
        assert_eq!(queue.enqueue("g", Some("event-1"), &job("d-2")).await.unwrap(), Enqueued::Duplicate, "same event");
        assert_eq!(
            (count(&store, "jobs").await, count(&store, "deliveries").await, count(&store, "event_identities").await),
            (1, 1, 1),
            "a refused delivery records nothing, not even itself"
        );
        // Another instance may reuse a delivery id; a job without an identity is
        // kept apart only by its delivery.
        let other = queue.enqueue("h", None, &job("d-1")).await.unwrap();
        assert!(matches!(other, Enqueued::Queued(id) if Enqueued::Queued(id) != first), "{other:?}");
        assert_eq!(queue.enqueue("h", None, &job("d-1")).await.unwrap(), Enqueued::Duplicate);
        assert_eq!((count(&store, "deliveries").await, count(&store, "event_identities").await), (2, 1));
    }
}
