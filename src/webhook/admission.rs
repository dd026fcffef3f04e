//! Admission: what a verified event asks for, decided by plain functions from
//! the event and what was stored before ([`admit`], [`within_queue_limit`]),
//! then done against the queue ([`accept`]). The decisions read nothing and
//! write nothing, so they are tested without a database or an agent.

use std::borrow::Cow;

use crate::comment::is_bot_comment;
use crate::event::{ChecksFailed, EventKind, ForgeEvent};
use crate::queue::{Enqueued, Job, JobTrigger, Queue};
use crate::store::Wait;
use crate::trigger::{Trigger, control_command, mentions, trigger_for};

/// What admission needs besides the event.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The handle people mention.
    pub handle: &'a str,
    /// The bot account's login on the event's forge.
    pub bot_login: &'a str,
    pub trigger_labels: &'a [String],
    /// Requests by writers one issue may have queued or running.
    pub queued_per_issue: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Nothing to do; the reason is the delivery's answer.
    Ignore(Cow<'static, str>),
    /// The issue was closed (by anyone, a stale bot too): its working copy goes
    /// after `bot.closed_issue_grace`; its session and record stay.
    Closed,
    /// Store this job.
    Enqueue(Job),
    /// A request for work by someone known to be allowed: it is stored if the
    /// issue has room ([`within_queue_limit`]), refused with a reply if not.
    EnqueueIfRoom(Job),
}

/// Whether the event's kind carries the issue's labels, which are kept to
/// tell a newly added trigger label from one that was there (Gitea sends only
/// the new set).
pub fn tracks_labels(event: &ForgeEvent) -> bool {
    matches!(event.kind, EventKind::IssueLabeled { .. } | EventKind::IssueOpened | EventKind::IssueEdited)
}

/// What `event` asks for. `previous_labels` are the issue's labels as last
/// stored (for events that [`tracks_labels`]); `is_known_writer` answers from
/// the permission cache, without asking the forge.
pub fn admit(
    event: &ForgeEvent,
    rules: &Rules<'_>,
    previous_labels: Option<&[String]>,
    is_known_writer: impl Fn(&str) -> bool,
) -> Admission {
    if event.kind == EventKind::IssueClosed {
        return Admission::Closed;
    }
    if written_by_bot(event, rules) {
        return Admission::Ignore("ignored: written by a bot".into());
    }
    let Some(trigger) = trigger_for(event, rules.handle, rules.trigger_labels, previous_labels) else {
        return Admission::Ignore("ignored: no mention or trigger label".into());
    };
    let (trigger, limited) = match trigger {
        Trigger::Control(command) => (JobTrigger::Control { command }, false),
        // Requests from anyone else do not count against the issue's limit, so
        // strangers cannot fill it; the hourly limits apply later, to admitted runs.
        work => (work.into(), is_known_writer(&event.author)),
    };
    let job = job_for(event, trigger);
    if limited { Admission::EnqueueIfRoom(job) } else { Admission::Enqueue(job) }
}

fn written_by_bot(event: &ForgeEvent, rules: &Rules<'_>) -> bool {
    event.author_is_bot
        || event.author.eq_ignore_ascii_case(rules.bot_login)
        || event.comment.as_ref().is_some_and(|c| is_bot_comment(&c.body))
}

/// Whether a new comment may answer a waiting run's question: mention or not,
/// but not a command for the bot (`stop` must still stop a waiting run), and
/// not a bot's words.
pub fn may_answer(event: &ForgeEvent, rules: &Rules<'_>) -> bool {
    event.kind == EventKind::CommentCreated
        && !written_by_bot(event, rules)
        && event.comment.as_ref().is_some_and(|c| control_command(&c.body, rules.handle).is_none())
}

/// The answer job for a comment on an issue whose run waits: only a comment
/// made after the question was posted answers it (forges number comments in
/// the order they are made), and it answers that question and no later one.
pub fn answer_job(event: &ForgeEvent, wait: &Wait) -> Option<Job> {
    let comment = event.comment.as_ref()?;
    let asked_in = wait.comment_id?;
    (comment.id > asked_in).then(|| job_for(event, JobTrigger::Answer { job: wait.job_id, asked_at: wait.asked_at }))
}

/// `job`, or a refusal in its place when the issue already has
/// `queued_per_issue` requests waiting from people known to be allowed.
/// `waiting` is the issue's unfinished requests: author, and whether admitted.
pub fn within_queue_limit(
    job: Job,
    waiting: &[(String, bool)],
    rules: &Rules<'_>,
    is_known_writer: impl Fn(&str) -> bool,
) -> Job {
    let counted = waiting.iter().filter(|(author, admitted)| *admitted || is_known_writer(author)).count();
    let cap = usize::try_from(rules.queued_per_issue).unwrap_or(usize::MAX);
    if counted < cap {
        return job;
    }
    let reason =
        format!("{counted} requests on this issue are already queued or running; ask again once they are done.");
    Job { trigger: JobTrigger::Refused { reason }, ..job }
}

fn job_for(event: &ForgeEvent, trigger: JobTrigger) -> Job {
    Job {
        issue: event.issue.clone(),
        delivery_id: event.delivery_id.clone(),
        trigger,
        author: event.author.clone(),
        title: event.title.clone(),
        issue_body: event.body.clone(),
        comment: event.comment.clone(),
        is_pull_request: event.is_pull_request,
        repo_html_url: event.repo_html_url.clone(),
        default_branch: event.default_branch.clone(),
        on_pull_request: None,
        review: event.review.clone().map(|event| crate::queue::ReviewRequest { event, review: None }),
    }
}

/// The outcome of [`accept`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    Queued(i64),
    Duplicate,
    Closed,
    Ignored(Cow<'static, str>),
}

impl From<Enqueued> for Accepted {
    fn from(enqueued: Enqueued) -> Self {
        match enqueued {
            Enqueued::Queued(id) => Self::Queued(id),
            Enqueued::Duplicate => Self::Duplicate,
        }
    }
}

/// Admits `event` against the queue's state and stores what it asks for.
pub async fn accept(
    queue: &Queue,
    instance: &str,
    event: &ForgeEvent,
    rules: &Rules<'_>,
    is_known_writer: impl Fn(&str) -> bool + Copy,
) -> anyhow::Result<Accepted> {
    // Kept whoever changed them, a bot too: they mirror the forge's set, so a
    // label a bot put on is not taken for a new one at the next change.
    let previous = if tracks_labels(event) {
        let previous = queue.labels(&event.issue).await?;
        queue.set_labels(&event.issue, &event.labels).await?;
        previous
    } else {
        None
    };
    if queue.any_waits() && may_answer(event, rules) {
        let issue = match event.is_pull_request {
            true => queue.issue_of_pull_request(&event.issue).await?.unwrap_or_else(|| event.issue.clone()),
            false => event.issue.clone(),
        };
        if let Some(job) = queue.open_wait(&issue).await?.and_then(|wait| answer_job(event, &wait)) {
            let job = onto_its_issue(queue, job).await?;
            return Ok(queue.enqueue(instance, Some(&event.identity), &job).await?.into());
        }
    }
    let (job, limited) = match admit(event, rules, previous.as_deref(), is_known_writer) {
        Admission::Ignore(why) => return Ok(Accepted::Ignored(why)),
        Admission::Closed => {
            queue.mark_closed(&event.issue).await?;
            return Ok(Accepted::Closed);
        }
        Admission::Enqueue(job) => (job, false),
        Admission::EnqueueIfRoom(job) => (job, true),
    };
    let job = onto_its_issue(queue, job).await?;
    // Every review on kugetsu's own pull requests is kept, for the worker to read
    // whole from the forge (one of its comments may ask, or all may count);
    // elsewhere only one that mentions the bot.
    let review_text = job.review.as_ref().map(|r| r.event.text.as_str());
    if job.on_pull_request.is_none() && review_text.is_some_and(|text| !mentions(text, rules.handle)) {
        return Ok(Accepted::Ignored("ignored: a review that does not mention the bot".into()));
    }
    let job = if limited {
        let waiting = queue.waiting_authors(&job.issue).await?;
        within_queue_limit(job, &waiting, rules, is_known_writer)
    } else {
        job
    };
    Ok(queue.enqueue(instance, Some(&event.identity), &job).await?.into())
}

/// A failed CI run on a commit kugetsu pushed asks for a repair of that issue's
/// branch; on any other commit it asks nothing. Whether repairs are on here,
/// and how many are left, the worker decides.
pub async fn accept_checks(queue: &Queue, instance: &str, checks: &ChecksFailed) -> anyhow::Result<Accepted> {
    let Some(issue) = queue.issue_pushed(&checks.repo, &checks.sha).await? else {
        return Ok(Accepted::Ignored("ignored: not a commit kugetsu pushed".into()));
    };
    let pull = queue.pull_request_of(&issue).await?;
    let job = Job {
        issue,
        delivery_id: checks.delivery_id.clone(),
        trigger: JobTrigger::CiFix { sha: checks.sha.clone(), checks: Vec::new() },
        author: checks.sender.clone(),
        title: String::new(),
        issue_body: String::new(),
        comment: None,
        is_pull_request: false,
        repo_html_url: None,
        default_branch: None,
        on_pull_request: pull.map(|p| p.number),
        review: None,
    };
    Ok(queue.enqueue(instance, Some(&checks.identity), &job).await?.into())
}

/// A job on a pull request that kugetsu opened for an issue continues that
/// issue: its session, its working copy, its place in the queue.
async fn onto_its_issue(queue: &Queue, mut job: Job) -> anyhow::Result<Job> {
    if !job.is_pull_request {
        return Ok(job);
    }
    if let Some(issue) = queue.issue_of_pull_request(&job.issue).await? {
        job.on_pull_request = Some(job.issue.number());
        job.issue = issue;
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CommentInfo;
    use crate::store::SqliteStore;

    const LABELS: &[String] = &[];

    fn rules(trigger_labels: &[String]) -> Rules<'_> {
        Rules { handle: "kugetsu", bot_login: "kugetsu-bot", trigger_labels, queued_per_issue: 2 }
    }

    fn comment(author: &str, body: &str, delivery: &str) -> ForgeEvent {
        ForgeEvent {
            delivery_id: delivery.into(),
            issue: "tea/acme/widget#7".parse().expect("a ref"),
            kind: EventKind::CommentCreated,
            author: author.into(),
            author_is_bot: false,
            title: "Flaky test".into(),
            body: "The parser test fails now and then.".into(),
            labels: Vec::new(),
            is_pull_request: false,
            comment: Some(CommentInfo { id: 11, body: body.into() }),
            repo_html_url: None,
            default_branch: Some("main".into()),
            repo_id: Some(1),
            previous_body: None,
            review: None,
            identity: format!("tea/acme/widget/comment/11/{delivery}"),
        }
    }

    fn nobody_known(_: &str) -> bool {
        false
    }

    fn waiting(comment_id: Option<u64>) -> Wait {
        let asked = crate::question::Asked::Permission { permission: "bash".into(), patterns: Vec::new() };
        let issue = "tea/acme/widget#7".parse().expect("a ref");
        Wait { job_id: 1, issue, asked, asked_at: 5, deadline: 9, comment_id, answer: None }
    }

    #[test]
    fn a_later_comment_answers_the_question_it_follows_unless_it_is_a_command_or_a_bots() {
        let r = rules(LABELS);
        let plain = comment("alice", "2", "a1");
        assert!(may_answer(&plain, &r));
        let answer = answer_job(&plain, &waiting(Some(10))).expect("plain words answer");
        assert_eq!(answer.trigger, JobTrigger::Answer { job: 1, asked_at: 5 }, "that question, no later one");
        assert_eq!(answer.author, "alice");
        assert_eq!(answer.trigger.lane(), "control", "answered beside runs, not behind them");
        assert!(answer_job(&plain, &waiting(Some(11))).is_none(), "comment 11 came before the question");
        assert!(answer_job(&plain, &waiting(None)).is_none(), "nobody has seen the question yet");
        assert!(may_answer(&comment("alice", "@kugetsu teal", "a2"), &r), "a mention answers too");
        assert!(!may_answer(&comment("alice", "@kugetsu stop", "a3"), &r), "stop stays a stop");
        assert!(!may_answer(&comment("kugetsu-bot", "2", "a4"), &r), "the bot's own words");
        let mut edited = comment("alice", "2", "a5");
        edited.kind = EventKind::CommentEdited;
        assert!(!may_answer(&edited, &r), "only a new comment");
    }

    #[test]
    fn a_mention_is_a_job_and_plain_talk_or_the_bots_own_words_are_not() {
        let r = rules(LABELS);
        let Admission::Enqueue(job) = admit(&comment("alice", "@kugetsu fix it", "d1"), &r, None, nobody_known) else {
            panic!("a mention asks for work");
        };
        assert_eq!((job.trigger, job.author.as_str()), (JobTrigger::Mention, "alice"));
        let ignored = |e: &ForgeEvent| match admit(e, &r, None, nobody_known) {
            Admission::Ignore(why) => why.into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(ignored(&comment("alice", "no mention here", "d2")), "ignored: no mention or trigger label");
        assert_eq!(ignored(&comment("KUGETSU-BOT", "@kugetsu fix it", "d3")), "ignored: written by a bot");
        let mut bot = comment("renovate", "@kugetsu fix it", "d4");
        bot.author_is_bot = true;
        assert_eq!(ignored(&bot), "ignored: written by a bot");
    }

    #[test]
    fn a_trigger_label_counts_only_when_it_is_new() {
        let labels = vec!["kugetsu".to_owned()];
        let r = rules(&labels);
        let mut labeled = comment("alice", "", "d5");
        labeled.kind = EventKind::IssueLabeled { added: None };
        labeled.comment = None;
        labeled.labels = labels.clone();
        assert!(tracks_labels(&labeled));
        assert!(matches!(admit(&labeled, &r, Some(&[]), nobody_known), Admission::Enqueue(_)));
        assert!(matches!(admit(&labeled, &r, Some(&labels), nobody_known), Admission::Ignore(_)));
        let mut closed = labeled.clone();
        closed.kind = EventKind::IssueClosed;
        assert_eq!(admit(&closed, &r, None, nobody_known), Admission::Closed);
    }

    #[test]
    fn only_known_writers_count_against_an_issues_queue() {
        let r = rules(LABELS);
        let writer = |who: &str| who == "alice";
        let event = comment("alice", "@kugetsu fix it", "d6");
        let Admission::EnqueueIfRoom(job) = admit(&event, &r, None, writer) else {
            panic!("a writer's request is limited")
        };
        // A stranger's requests fill nothing: the writer's goes on.
        let strangers = vec![("mallory".to_owned(), false); 10];
        assert_eq!(within_queue_limit(job.clone(), &strangers, &r, writer).trigger, JobTrigger::Mention);
        // Two by writers (one admitted, one known) fill the issue's two places.
        let full = vec![("bob".to_owned(), true), ("alice".to_owned(), false)];
        let refused = within_queue_limit(job, &full, &r, writer);
        assert!(
            matches!(&refused.trigger, JobTrigger::Refused { reason } if reason.starts_with("2 requests")),
            "{refused:?}"
        );
        // A stranger's own request is not limited here; the worker's permission check decides.
        let stranger = comment("mallory", "@kugetsu fix it", "d7");
        assert!(matches!(admit(&stranger, &r, None, writer), Admission::Enqueue(_)));
    }

    #[tokio::test]
    async fn a_plain_comment_is_stored_as_an_answer_only_while_the_issue_waits_for_one() {
        let queue = Queue::new(std::sync::Arc::new(SqliteStore::in_memory().await.expect("a database")));
        let r = rules(LABELS);
        let accepted = accept(&queue, "tea", &comment("alice", "2", "w1"), &r, nobody_known).await.expect("read");
        assert!(matches!(accepted, Accepted::Ignored(_)), "control: no question, plain talk: {accepted:?}");
        let Accepted::Queued(asker) =
            accept(&queue, "tea", &comment("alice", "@kugetsu go", "w0"), &r, nobody_known).await.expect("stored")
        else {
            panic!("a mention is a job")
        };
        queue.begin_wait(&Wait { job_id: asker, ..waiting(Some(10)) }).await.expect("stored");
        let accepted = accept(&queue, "tea", &comment("alice", "2", "w2"), &r, nobody_known).await.expect("stored");
        assert!(matches!(accepted, Accepted::Queued(_)), "{accepted:?}");
        let claimed = queue.claim("control", 5).await.expect("claimed");
        let triggers: Vec<_> = claimed.iter().map(|j| j.job.trigger.clone()).collect();
        assert_eq!(triggers, vec![JobTrigger::Answer { job: asker, asked_at: 5 }]);
    }

    #[tokio::test]
    async fn accepting_stores_once_per_delivery_and_per_event() {
        let store = SqliteStore::in_memory().await.expect("an in-memory database");
        let queue = Queue::new(std::sync::Arc::new(store));
        let r = rules(LABELS);
        let event = comment("alice", "@kugetsu fix it", "d8");
        let first = accept(&queue, "tea", &event, &r, nobody_known).await.expect("stored");
        assert!(matches!(first, Accepted::Queued(_)), "{first:?}");
        // The same delivery again, and the same event under a new delivery id (Gitea's replay).
        assert_eq!(accept(&queue, "tea", &event, &r, nobody_known).await.expect("read"), Accepted::Duplicate);
        let replay = ForgeEvent { delivery_id: "d9".into(), ..event.clone() };
        assert_eq!(accept(&queue, "tea", &replay, &r, nobody_known).await.expect("read"), Accepted::Duplicate);
        // Positive control: another event is stored.
        let other = ForgeEvent { delivery_id: "d10".into(), identity: "another".into(), ..event };
        assert!(matches!(accept(&queue, "tea", &other, &r, nobody_known).await.expect("stored"), Accepted::Queued(_)));
        assert_eq!(queue.depth().await.expect("depth").queued, 2);
    }

    #[tokio::test]
    async fn a_request_on_kugetsus_pull_request_is_queued_on_its_issue_and_others_stay_as_they_are() {
        let store = SqliteStore::in_memory().await.expect("an in-memory database");
        let queue = Queue::new(std::sync::Arc::new(store));
        let issue: crate::issue_ref::IssueRef = "tea/acme/widget#7".parse().expect("a ref");
        let record = crate::store::PullRequestRecord {
            issue: issue.clone(),
            number: 12,
            html_url: "https://git.example.com/acme/widget/pulls/12".into(),
            created_at: 0,
        };
        queue.save_pull_request(&record).await.expect("saved");
        let on_pull = |number: u64, delivery: &str| {
            let mut e = comment("alice", "@kugetsu go on", delivery);
            e.issue = format!("tea/acme/widget#{number}").parse().expect("a ref");
            e.is_pull_request = true;
            e.identity = format!("pull-{delivery}");
            e
        };
        let jobs = |queue: Queue| async move { queue.claim("work", 10).await.expect("claimed") };
        assert!(matches!(
            accept(&queue, "tea", &on_pull(12, "p1"), &rules(LABELS), nobody_known).await,
            Ok(Accepted::Queued(_))
        ));
        let claimed = jobs(queue.clone()).await;
        assert_eq!((claimed[0].job.issue.clone(), claimed[0].job.on_pull_request), (issue.clone(), Some(12)));
        assert_eq!(claimed[0].job.place().to_string(), "tea/acme/widget#12", "answered where it was asked");
        // Control: a pull request kugetsu did not open is its own issue.
        assert!(matches!(
            accept(&queue, "tea", &on_pull(13, "p2"), &rules(LABELS), nobody_known).await,
            Ok(Accepted::Queued(_))
        ));
        let claimed = jobs(queue.clone()).await;
        assert_eq!(
            (claimed[0].job.issue.to_string(), claimed[0].job.on_pull_request),
            ("tea/acme/widget#13".to_owned(), None)
        );
    }

    #[tokio::test]
    async fn labels_are_remembered_between_events() {
        let store = SqliteStore::in_memory().await.expect("an in-memory database");
        let queue = Queue::new(std::sync::Arc::new(store));
        let event = |labels: &[&str], n: u32| {
            let mut e = comment("alice", "", &format!("l{n}"));
            e.kind = if n == 0 { EventKind::IssueOpened } else { EventKind::IssueLabeled { added: None } };
            e.comment = None;
            e.labels = labels.iter().map(|l| (*l).to_owned()).collect();
            e.identity = format!("labels-{n}");
            e
        };
        let take = |e: ForgeEvent| {
            let queue = queue.clone();
            async move { accept(&queue, "tea", &e, &rules(&["kugetsu".to_owned()]), nobody_known).await.expect("read") }
        };
        // Opened with the trigger label on: a run.
        assert!(matches!(take(event(&["kugetsu"], 0)).await, Accepted::Queued(_)));
        // Gitea sends the whole set when another label is put on: `kugetsu` was there already.
        assert!(matches!(take(event(&["kugetsu", "bug"], 1)).await, Accepted::Ignored(_)));
        assert!(matches!(take(event(&["bug"], 2)).await, Accepted::Ignored(_)));
        // Put on again after it was taken off: a run.
        assert!(matches!(take(event(&["bug", "kugetsu"], 3)).await, Accepted::Queued(_)));
    }
}
