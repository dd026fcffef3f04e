//! The store test suite, run against both backends: SQLite in a temporary
//! file, and PostgreSQL in a throwaway cluster (tests/support/postgres.rs).
//! Each case gets a fresh database and two stores on it, as two replicas
//! would have: what one writes, the other must see, and what both race for,
//! only one may win.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use kugetsu::budget::Spend;
use kugetsu::issue_ref::IssueRef;
use kugetsu::question::{Asked, Choice, Question};
use kugetsu::queue::{Enqueued, Job, JobTrigger};
use kugetsu::store::{
    Answer, BaseSession, IssueSession, PostgresStore, PullRequestRecord, SessionStatus, SqliteStore, Store, Wait,
    issue_lease, now_millis, task_lease,
};
use kugetsu::trigger::Control;
use secrecy::SecretString;

/// Two stores on one database, and what keeps it alive.
struct Replicas {
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Replicas {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("kugetsu.db");
    let a = SqliteStore::open(&file).await.expect("SQLite opens");
    let b = SqliteStore::open(&file).await.expect("SQLite opens twice");
    Replicas { a: Arc::new(a), b: Arc::new(b), _dir: Some(dir) }
}

async fn postgres() -> Replicas {
    let url = SecretString::from(support::postgres::cluster().new_database().await);
    let a = PostgresStore::connect(&url).await.expect("PostgreSQL connects and migrates");
    let b = PostgresStore::connect(&url).await.expect("a second replica connects; the schema is there");
    Replicas { a: Arc::new(a), b: Arc::new(b), _dir: None }
}

/// Each case once per backend.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::sqlite().await).await })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::postgres().await).await })*
        }
    };
}

suite!(
    issue_sessions_round_trip_in_issue_order,
    base_sessions_and_pull_requests_round_trip,
    a_delivery_or_event_seen_before_stores_nothing_even_when_replicas_race,
    claims_take_one_job_per_issue_in_order_and_never_one_job_twice,
    jobs_are_put_back_stopped_finished_and_requeued,
    triggers_deny_replies_labels_and_closed_issues,
    the_job_history_is_counted_then_removed_and_work_is_kept,
    the_queue_overview_and_rate_counts,
    spending_counts_by_scope_and_resume,
    the_first_answer_wins_and_a_wait_lasts_until_it_ends,
    replicas_keep_their_issues_and_a_dead_ones_work_is_taken_over,
);

fn job(issue: &str, trigger: JobTrigger, delivery: &str) -> Job {
    Job {
        issue: issue.parse().expect("a ref"),
        delivery_id: delivery.into(),
        trigger,
        author: "Alice".into(),
        title: "a title".into(),
        issue_body: "a body, with 'quotes' and ünïcode".into(),
        comment: None,
        is_pull_request: false,
        repo_html_url: None,
        default_branch: None,
        on_pull_request: None,
        review: None,
    }
}

async fn queued(store: &dyn Store, issue: &str, trigger: JobTrigger, delivery: &str) -> i64 {
    match store.enqueue("tea", None, &job(issue, trigger, delivery)).await.expect("stored") {
        Enqueued::Queued(id) => id,
        Enqueued::Duplicate => panic!("{delivery} was taken for a duplicate"),
    }
}

fn issue(text: &str) -> IssueRef {
    text.parse().expect("a ref")
}

fn session(issue: &IssueRef, updated_at: i64) -> IssueSession {
    IssueSession {
        issue: issue.clone(),
        session_id: Some(format!("ses_{}", issue.number())),
        branch: format!("kugetsu/{}", issue.number()),
        worktree: PathBuf::from(format!("/state/worktrees/{}", issue.number())),
        status: SessionStatus::Idle,
        last_pushed_sha: None,
        last_result: None,
        last_error: None,
        created_at: 1,
        updated_at,
        last_run_at: None,
    }
}

async fn issue_sessions_round_trip_in_issue_order(r: Replicas) {
    let refs = ["tea/acme/widget#1000", "gh/zeta/a#5", "tea/acme/widget#2", "tea/acme/gadget#30"].map(issue);
    for (n, issue) in refs.iter().enumerate() {
        r.a.save_issue_session(&session(issue, 10 + n as i64)).await.expect("saved");
    }
    let order: Vec<String> = r.b.issue_sessions().await.expect("read").iter().map(|s| s.issue.to_string()).collect();
    assert_eq!(order, ["gh/zeta/a#5", "tea/acme/gadget#30", "tea/acme/widget#2", "tea/acme/widget#1000"]);
    let recent: Vec<u64> = r.b.recent_issue_sessions(2).await.expect("read").iter().map(|s| s.issue.number()).collect();
    assert_eq!(recent, [30, 2], "newest first, at most two");

    let mut changed = session(&refs[0], 99);
    changed.status = SessionStatus::Failed;
    changed.last_error = Some("boom; 'quoted'".into());
    changed.last_pushed_sha = Some("c0ffee".into());
    r.a.save_issue_session(&changed).await.expect("replaced");
    assert_eq!(r.b.issue_session(&refs[0]).await.expect("read"), Some(changed.clone()));
    assert_eq!(r.b.issue_pushed(refs[0].repo(), "c0ffee").await.expect("read"), Some(refs[0].clone()));
    assert_eq!(r.b.issue_pushed(refs[2].repo(), "beef").await.expect("read"), None);
    r.b.delete_issue_session(&refs[0]).await.expect("deleted");
    assert_eq!(r.a.issue_session(&refs[0]).await.expect("read"), None);
    assert_eq!(r.a.issue_sessions().await.expect("read").len(), 3);
}

async fn base_sessions_and_pull_requests_round_trip(r: Replicas) {
    let repo = issue("tea/acme/widget#1").repo().clone();
    let base = BaseSession {
        repo: repo.clone(),
        session_id: "ses_base".into(),
        worktree: "/state/base".into(),
        created_at: 5,
    };
    r.a.save_base_session(&base).await.expect("saved");
    r.a.save_base_session(&BaseSession { session_id: "ses_base2".into(), ..base.clone() }).await.expect("replaced");
    assert_eq!(r.b.base_session(&repo).await.expect("read").map(|b| b.session_id), Some("ses_base2".into()));
    assert_eq!(r.b.base_sessions().await.expect("read").len(), 1);
    r.b.delete_base_session(&repo).await.expect("deleted");
    assert_eq!(r.a.base_session(&repo).await.expect("read"), None);

    let seven = issue("tea/acme/widget#7");
    let first =
        PullRequestRecord { issue: seven.clone(), number: 8, html_url: "http://forge/pr/8".into(), created_at: 1 };
    r.a.save_pull_request(&first).await.expect("saved");
    assert_eq!(r.b.pull_request_of(&seven).await.expect("read"), Some(first.clone()));
    assert_eq!(r.b.issue_of_pull_request(&issue("tea/acme/widget#8")).await.expect("read"), Some(seven.clone()));
    // Merged, then a new one: the issue has one pull request, the newest.
    let second = PullRequestRecord { number: 12, html_url: "http://forge/pr/12".into(), ..first.clone() };
    r.b.save_pull_request(&second).await.expect("replaced");
    assert_eq!(r.a.pull_request_of(&seven).await.expect("read"), Some(second.clone()));
    assert_eq!(r.a.issue_of_pull_request(&issue("tea/acme/widget#8")).await.expect("read"), None);
    assert_eq!(r.a.pull_requests().await.expect("read"), vec![second]);
}

async fn a_delivery_or_event_seen_before_stores_nothing_even_when_replicas_race(r: Replicas) {
    let first = job("tea/acme/widget#1", JobTrigger::Mention, "d-1");
    assert!(matches!(r.a.enqueue("tea", Some("event-1"), &first).await.expect("stored"), Enqueued::Queued(_)));
    assert!(
        matches!(r.b.enqueue("tea", Some("event-2"), &first).await.expect("read"), Enqueued::Duplicate),
        "same delivery"
    );
    let replay = job("tea/acme/widget#1", JobTrigger::Mention, "d-2");
    assert!(
        matches!(r.b.enqueue("tea", Some("event-1"), &replay).await.expect("read"), Enqueued::Duplicate),
        "same event"
    );
    assert!(r.b.knows_event("event-1").await.expect("read"));
    assert!(!r.b.knows_event("event-3").await.expect("read"));
    assert!(
        matches!(r.b.enqueue("other", None, &first).await.expect("stored"), Enqueued::Queued(_)),
        "another instance's d-1"
    );

    // Forty deliveries of one event, ten of each delivery id, at once on both stores.
    let mut racing = Vec::new();
    for n in 0..40 {
        let store = if n % 2 == 0 { r.a.clone() } else { r.b.clone() };
        let job = job("tea/acme/widget#2", JobTrigger::Mention, &format!("race-{}", n % 4));
        racing.push(tokio::spawn(async move { store.enqueue("tea", Some("raced-event"), &job).await }));
    }
    let mut stored = 0;
    for task in racing {
        if let Enqueued::Queued(_) = task.await.expect("joined").expect("no error under the race") {
            stored += 1;
        }
    }
    assert_eq!(stored, 1, "one job stored of forty deliveries of one event");
    assert_eq!(r.a.waiting_for(&issue("tea/acme/widget#2")).await.expect("read"), 1);
}

async fn claims_take_one_job_per_issue_in_order_and_never_one_job_twice(r: Replicas) {
    let one = queued(&*r.a, "tea/acme/widget#1", JobTrigger::Mention, "d1").await;
    let two = queued(&*r.a, "tea/acme/widget#1", JobTrigger::Mention, "d2").await;
    let other = queued(&*r.b, "tea/acme/widget#9", JobTrigger::Label { name: "kugetsu".into() }, "d3").await;
    let status = queued(&*r.b, "tea/acme/widget#1", JobTrigger::Control { command: Control::Status }, "d4").await;

    let work: Vec<i64> = r.a.claim("work", 10).await.expect("claimed").iter().map(|j| j.id).collect();
    assert_eq!(work, [one, other], "the oldest of each issue");
    assert!(r.b.claim("work", 10).await.expect("read").is_empty(), "the issue's second waits for its first");
    let control = r.b.claim("control", 10).await.expect("claimed");
    assert_eq!(control.iter().map(|j| j.id).collect::<Vec<_>>(), [status], "control runs beside work");
    assert_eq!(
        control[0].job,
        job("tea/acme/widget#1", JobTrigger::Control { command: Control::Status }, "d4"),
        "the job, whole"
    );

    // A follow-up joins the running work, once.
    let joiner = r.b.claim_joiner(&issue("tea/acme/widget#1")).await.expect("read").map(|j| j.id);
    assert_eq!(joiner, Some(two));
    assert_eq!(r.a.claim_joiner(&issue("tea/acme/widget#1")).await.expect("read").map(|j| j.id), None);

    // Many jobs, many claimers on both stores: each job is handed out once.
    let mut ids = Vec::new();
    for n in 0..60 {
        ids.push(queued(&*r.a, &format!("tea/acme/many#{}", n + 1), JobTrigger::Mention, &format!("m{n}")).await);
    }
    let mut claimers = Vec::new();
    for n in 0..8 {
        let store = if n % 2 == 0 { r.a.clone() } else { r.b.clone() };
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim("work", 3).await.expect("no error under the race");
                assert!(got.len() <= 3, "a claim takes at most its limit: {}", got.len());
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut handed = Vec::new();
    for claimer in claimers {
        handed.extend(claimer.await.expect("joined"));
    }
    handed.sort();
    assert_eq!(handed, ids, "every job once, none twice");
}

async fn jobs_are_put_back_stopped_finished_and_requeued(r: Replicas) {
    let id = queued(&*r.a, "tea/acme/widget#1", JobTrigger::Mention, "d1").await;
    assert_eq!(r.b.claim("work", 1).await.expect("claimed").len(), 1);
    r.b.retry_later(id, now_millis() + 60_000, "the forge said 502").await.expect("put back");
    assert!(r.a.claim("work", 1).await.expect("read").is_empty(), "not before its time");
    assert_eq!(r.a.waiting_reasons(&issue("tea/acme/widget#1")).await.expect("read"), ["the forge said 502"]);
    let depth = r.a.depth().await.expect("read");
    assert_eq!((depth.queued, depth.running, depth.waiting), (0, 0, 1));

    r.a.retry_later(id, 0, "again").await.expect("no change: it is not running");
    let later = queued(&*r.a, "tea/acme/widget#2", JobTrigger::Mention, "d2").await;
    r.a.defer(later, 0, "not yet").await.expect("no change: not running");
    let claimed = r.a.claim("work", 5).await.expect("claimed");
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [later]);

    r.a.save_outcome(later, "the answer", Some("the run failed")).await.expect("saved");
    // As at a restart: the replica's own running jobs go back.
    assert_eq!(r.a.requeue_interrupted().await.expect("requeued"), 1);
    let again = r.b.claim("work", 5).await.expect("claimed");
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].outcome.as_deref(), again[0].run_error.as_deref()),
        (Some("the answer"), Some("the run failed"))
    );
    assert!(r.a.stop(later, "stopped by @alice").await.expect("stopped"));
    assert!(!r.a.stop(later, "twice").await.expect("read"), "only a running job stops");
    let failures = r.b.recent_failures(5).await.expect("read");
    assert_eq!((failures[0].id, failures[0].error.as_deref()), (later, Some("stopped by @alice")));
    r.b.finish(later, Ok(())).await.expect("no error");
    assert_eq!(r.a.recent_failures(5).await.expect("read").len(), 1, "a run ending after its stop leaves it stopped");
}

async fn triggers_deny_replies_labels_and_closed_issues(r: Replicas) {
    let seven = issue("tea/acme/widget#7");
    assert!(r.a.claim_trigger("comment:5", 1).await.expect("claimed"));
    assert!(!r.b.claim_trigger("comment:5", 2).await.expect("read"), "another job's");
    assert!(r.b.claim_trigger("comment:5", 1).await.expect("read"), "still the first job's");
    assert!(r.b.trigger_handled("comment:5").await.expect("read"));
    assert!(!r.b.trigger_handled("comment:6").await.expect("read"));
    let mut racing = Vec::new();
    for n in 0..20 {
        let store = if n % 2 == 0 { r.a.clone() } else { r.b.clone() };
        racing.push(tokio::spawn(async move { store.claim_trigger("raced", n).await }));
    }
    let mut owners = 0;
    for task in racing {
        owners += usize::from(task.await.expect("joined").expect("no error under the race"));
    }
    assert_eq!(owners, 1, "one job owns a trigger");

    let now = now_millis();
    assert!(r.a.deny_reply_due(&seven, now - 1_000).await.expect("read"));
    assert!(r.a.claim_deny_reply(&seven, now - 1_000).await.expect("claimed"));
    assert!(!r.b.claim_deny_reply(&seven, now - 1_000).await.expect("read"), "replied within the window");
    assert!(!r.b.deny_reply_due(&seven, now - 1_000).await.expect("read"));
    r.b.release_deny_reply(&seven).await.expect("released");
    assert!(r.a.deny_reply_due(&seven, now - 1_000).await.expect("read"));

    assert_eq!(r.a.labels(&seven).await.expect("read"), None);
    r.a.set_labels(&seven, &["bug".into(), "kugetsu".into()]).await.expect("set");
    r.b.set_labels(&seven, &["kugetsu".into()]).await.expect("replaced");
    assert_eq!(r.a.labels(&seven).await.expect("read"), Some(vec!["kugetsu".into()]));

    let label = JobTrigger::Label { name: "Kugetsu".into() };
    queued(&*r.a, "tea/acme/widget#7", label, "d-label").await;
    assert!(r.b.label_job_since(&seven, "kugetsu", now - 1_000).await.expect("read"), "labels match in any case");
    assert!(!r.b.label_job_since(&seven, "other", now - 1_000).await.expect("read"));
    assert!(!r.b.label_job_since(&seven, "kugetsu", now + 60_000).await.expect("read"), "later");

    r.a.save_issue_session(&session(&seven, 1)).await.expect("saved");
    r.a.mark_closed(&seven).await.expect("closed");
    assert_eq!(r.b.closed_issues(now_millis() + 1).await.expect("read"), vec![seven.clone()]);
    assert!(r.b.closed_issues(now - 1_000).await.expect("read").is_empty(), "closed after");
    r.b.forget_closed(&seven).await.expect("forgotten");
    assert!(r.a.closed_issues(now_millis() + 1).await.expect("read").is_empty());

    let served = r.a.served_repos().await.expect("read");
    assert_eq!(served.iter().map(|(repo, _)| repo.as_str()).collect::<Vec<_>>(), ["tea/acme/widget"]);
    r.b.set_reconciled("tea/acme/widget", 42).await.expect("set");
    assert_eq!(r.a.served_repos().await.expect("read"), vec![("tea/acme/widget".to_owned(), 42)]);
}

async fn the_job_history_is_counted_then_removed_and_work_is_kept(r: Replicas) {
    let done = queued(&*r.a, "tea/acme/widget#1", JobTrigger::Mention, "d1").await;
    let failed = queued(&*r.a, "tea/acme/widget#2", JobTrigger::Mention, "d2").await;
    queued(&*r.a, "tea/acme/widget#3", JobTrigger::Mention, "d3").await;
    r.a.claim("work", 2).await.expect("claimed");
    r.a.finish(done, Ok(())).await.expect("done");
    r.a.finish(failed, Err("no".into())).await.expect("failed");
    let running = queued(&*r.a, "tea/acme/widget#4", JobTrigger::Mention, "d4").await;
    r.a.claim("work", 5).await.expect("claimed");
    let cutoff = now_millis() + 1;
    let expected = kugetsu::store::History { jobs: 2, deliveries: 4, identities: 0 };
    assert_eq!(r.b.old_history(cutoff, false).await.expect("counted"), expected);
    assert_eq!(r.b.old_history(cutoff, false).await.expect("counted"), expected, "a count removes nothing");
    assert_eq!(r.b.old_history(cutoff, true).await.expect("removed"), expected);
    assert!(r.a.old_history(cutoff, false).await.expect("counted").is_empty());
    let unfinished: Vec<i64> = r.a.unfinished_jobs(10).await.expect("read").iter().map(|j| j.id).collect();
    assert_eq!(unfinished.len(), 2, "work in progress stays");
    assert!(unfinished.contains(&running));
}

async fn the_queue_overview_and_rate_counts(r: Replicas) {
    let since = now_millis() - 1_000;
    let one = queued(&*r.a, "tea/acme/widget#1", JobTrigger::Mention, "d1").await;
    queued(&*r.a, "tea/acme/widget#1", JobTrigger::Mention, "d2").await;
    let label = queued(&*r.a, "tea/acme/gadget#3", JobTrigger::Label { name: "x".into() }, "d3").await;
    assert_eq!(r.b.recent_jobs("alice", "tea/acme/widget", since).await.expect("read"), (0, 0), "none authorized yet");
    r.b.mark_authorized(one).await.expect("marked");
    r.b.mark_authorized(label).await.expect("marked");
    assert_eq!(r.a.recent_jobs("ALICE", "tea/acme/widget", since).await.expect("read"), (2, 1));
    let authors = r.a.waiting_authors(&issue("tea/acme/widget#1")).await.expect("read");
    assert_eq!(authors, vec![("alice".to_owned(), true), ("alice".to_owned(), false)]);
    assert_eq!(r.a.waiting_for(&issue("tea/acme/widget#1")).await.expect("read"), 2);
    r.a.claim("work", 5).await.expect("claimed");
    let depth = r.b.depth().await.expect("read");
    assert_eq!((depth.queued, depth.running, depth.waiting), (1, 2, 0));
    assert!(depth.oldest_due_at.is_some_and(|at| at >= since));
    let lines = r.b.unfinished_jobs(10).await.expect("read");
    assert_eq!(
        lines.iter().map(|l| (l.status.as_str(), l.kind.as_str())).collect::<Vec<_>>(),
        [("running", "mention"), ("running", "label"), ("pending", "mention")]
    );

    // CI repairs count since the last person's request, and a stop is seen.
    let seven = issue("tea/acme/widget#7");
    let asked = queued(&*r.a, "tea/acme/widget#7", JobTrigger::Mention, "c1").await;
    let fix = |n: &str| JobTrigger::CiFix { sha: n.into(), checks: Vec::new() };
    let fix_one = queued(&*r.a, "tea/acme/widget#7", fix("a"), "c2").await;
    let fix_two = queued(&*r.a, "tea/acme/widget#7", fix("b"), "c3").await;
    for id in [asked, fix_one] {
        r.a.mark_authorized(id).await.expect("marked");
    }
    let history = r.b.ci_fix_history(&seven, fix_two).await.expect("read");
    assert_eq!((history.attempts, history.stopped), (1, false));
    let stop = queued(&*r.a, "tea/acme/widget#7", JobTrigger::Control { command: Control::Stop }, "c4").await;
    r.a.mark_authorized(stop).await.expect("marked");
    assert!(r.b.ci_fix_history(&seven, fix_two).await.expect("read").stopped);
}

async fn spending_counts_by_scope_and_resume(r: Replicas) {
    let (seven, eight, elsewhere) = (issue("tea/acme/widget#7"), issue("tea/acme/widget#8"), issue("tea/zeta/other#1"));
    let now = now_millis();
    let spend = |tokens, cost| Spend { tokens, cost };
    r.a.record_spend(&seven, 1, spend(100, 0.5), now - 2 * 3_600_000).await.expect("recorded");
    r.a.record_spend(&seven, 2, spend(10, 0.25), now - 60_000).await.expect("recorded");
    r.b.record_spend(&eight, 3, spend(1, f64::NAN), now).await.expect("recorded");
    r.b.record_spend(&elsewhere, 4, spend(7, 1.0), now).await.expect("recorded");
    let spent = r.a.spent(&seven, now).await.expect("read");
    assert_eq!((spent.issue.tokens, spent.issue.cost), (110, 0.75));
    assert_eq!(spent.issue_runs_last_hour, 1);
    assert!(spent.repo_today.tokens >= 11 && spent.repo_today.tokens <= 111, "the day so far: {spent:?}");
    assert_eq!(
        spent.instance_today.tokens - spent.repo_today.tokens,
        7,
        "the other repository counts for the instance"
    );
    assert_eq!(r.b.issue_total(&seven).await.expect("read"), (2, spend(110, 0.75)));
    assert_eq!(r.b.issue_total(&eight).await.expect("read"), (1, spend(1, 0.0)), "a cost that is not a number is none");
    r.b.resume_budgets(&seven, now - 30_000).await.expect("resumed");
    let spent = r.a.spent(&seven, now).await.expect("read");
    assert_eq!((spent.issue.tokens, spent.issue_runs_last_hour), (0, 0), "counted from the resume");
    assert_eq!(r.a.issue_total(&seven).await.expect("read").0, 2, "the total stays");
}

async fn the_first_answer_wins_and_a_wait_lasts_until_it_ends(r: Replicas) {
    let (seven, eight) = (issue("tea/acme/widget#7"), issue("tea/acme/widget#8"));
    let id = queued(&*r.a, "tea/acme/widget#7", JobTrigger::Mention, "d").await;
    let asked = Asked::Question {
        questions: vec![Question {
            question: "Which?".into(),
            header: String::new(),
            options: vec![Choice { label: "A".into(), description: String::new() }],
            multiple: false,
        }],
    };
    let wait =
        Wait { job_id: id, issue: seven.clone(), asked, asked_at: 10, deadline: 20, comment_id: None, answer: None };
    r.a.begin_wait(&wait).await.expect("begun");
    assert_eq!(r.b.waiting_issues().await.expect("read"), vec![seven.clone()]);
    r.b.mark_wait_posted(id, 77).await.expect("marked");
    assert_eq!(r.a.open_wait(&seven).await.expect("read"), Some(Wait { comment_id: Some(77), ..wait.clone() }));
    assert_eq!(r.a.open_wait(&eight).await.expect("read"), None);
    let answer = |text: &str| Answer { text: text.into(), author: "alice".into(), comment_id: Some(9), at: 15 };
    assert!(!r.a.answer_wait(id, 11, &answer("x")).await.expect("read"), "not the question asked at 11");
    let (two, one) = (answer("2"), answer("1"));
    let (first, second) = tokio::join!(r.a.answer_wait(id, 10, &two), r.b.answer_wait(id, 10, &one));
    assert!(first.expect("answered") ^ second.expect("answered"), "one of two answers at once");
    assert!(!r.b.expire_wait(id, 10).await.expect("read"), "the answer came before the deadline");
    assert_eq!(r.a.open_wait(&seven).await.expect("read"), None);
    let kept = r.b.wait_of_job(id).await.expect("read").expect("kept until it ends");
    assert!(kept.answer.is_some());
    r.a.end_wait(id).await.expect("ended");
    assert_eq!(r.b.wait_of_job(id).await.expect("read"), None);

    // A new question replaces the last one whole; the deadline first: no answer after it.
    r.a.begin_wait(&wait).await.expect("begun");
    assert!(r.b.expire_wait(id, 10).await.expect("expired"));
    assert!(!r.a.answer_wait(id, 10, &answer("too late")).await.expect("read"));
    assert_eq!(r.a.open_wait(&seven).await.expect("read"), None, "an expired wait takes no answer");
    r.a.begin_wait(&Wait { asked_at: 12, ..wait.clone() }).await.expect("begun");
    assert_eq!(
        r.b.wait_of_job(id).await.expect("read").map(|w| w.answer),
        Some(None),
        "the new question has no answer"
    );
    assert!(r.b.open_wait(&seven).await.expect("read").is_some(), "control: the job still runs");
    r.b.claim("work", 1).await.expect("claimed");
    r.b.finish(id, Ok(())).await.expect("finished");
    assert_eq!(r.a.open_wait(&seven).await.expect("read"), None, "the job is done");
    r.a.end_waits_on(&seven).await.expect("ended");
    assert_eq!(r.b.wait_of_job(id).await.expect("read"), None, "stop ends it");
}

async fn replicas_keep_their_issues_and_a_dead_ones_work_is_taken_over(r: Replicas) {
    const TTL: i64 = 200;
    let x = issue("tea/acme/widget#1");
    let lease = issue_lease(&x);
    assert_ne!(r.a.replica(), r.b.replica());
    r.a.heartbeat(now_millis(), TTL).await.expect("alive");
    r.b.heartbeat(now_millis(), TTL).await.expect("alive");
    let first = queued(&*r.a, "tea/acme/widget#1", JobTrigger::Mention, "d1").await;
    assert_eq!(r.a.claim("work", 5).await.expect("claimed").len(), 1);
    let token = r.a.take_lease(&lease, now_millis(), TTL).await.expect("taken").expect("free");
    assert_eq!(
        r.a.take_lease(&lease, now_millis(), TTL).await.expect("taken again"),
        Some(token),
        "its own: same token"
    );
    assert_eq!(r.b.take_lease(&lease, now_millis(), TTL).await.expect("read"), None, "held by a");
    assert!(r.a.holds_lease(&lease, token, now_millis()).await.expect("read"));
    assert!(!r.b.holds_lease(&lease, token, now_millis()).await.expect("read"), "not b's");

    // While a lives, the issue's next job is a's, even with b idle.
    let second = queued(&*r.b, "tea/acme/widget#1", JobTrigger::Mention, "d2").await;
    queued(&*r.b, "tea/acme/widget#2", JobTrigger::Mention, "d3").await;
    r.a.finish(first, Ok(())).await.expect("finished");
    let b_took: Vec<String> =
        r.b.claim("work", 5).await.expect("read").iter().map(|j| j.job.issue.to_string()).collect();
    assert_eq!(b_took, ["tea/acme/widget#2"], "another issue, not a's");
    assert_eq!(r.a.claim("work", 5).await.expect("claimed").iter().map(|j| j.id).collect::<Vec<_>>(), [second]);
    assert!(r.b.running_work(&x).await.expect("read") == Some(second), "any replica finds the running job");

    // a stops answering: b keeps beating, a's lease lapses, a's job goes back, b takes both.
    tokio::time::sleep(std::time::Duration::from_millis(2 * TTL as u64)).await;
    r.b.heartbeat(now_millis(), TTL).await.expect("alive");
    assert_eq!(r.b.requeue_orphans(now_millis(), now_millis() - TTL).await.expect("requeued"), 1);
    // Before anyone takes it, a's late word about the job it was running changes nothing.
    r.a.save_outcome(second, "a's early comment", None).await.expect("no error");
    r.a.finish(second, Ok(())).await.expect("no error");
    let claimed = r.b.claim("work", 5).await.expect("claimed");
    let taken: Vec<i64> = claimed.iter().map(|j| j.id).collect();
    assert_eq!(taken, [second], "still pending for b to take");
    assert_eq!(claimed[0].outcome, None, "no comment of a's saved for b to post");
    let new_token = r.b.take_lease(&lease, now_millis(), TTL).await.expect("taken").expect("expired");
    assert!(new_token > token, "the fencing token grew: {new_token} > {token}");

    // a wakes up: it holds nothing, and what it records of the job is ignored.
    r.a.heartbeat(now_millis(), TTL).await.expect("alive again");
    assert!(!r.a.holds_lease(&lease, token, now_millis()).await.expect("read"), "a lost its lease");
    assert_eq!(r.a.jobs_taken_away(&[second]).await.expect("read"), [(second, true)], "taken over");
    r.a.finish(second, Err("a's late word".into())).await.expect("no error");
    r.a.save_outcome(second, "a's late comment", None).await.expect("no error");
    assert!(r.b.jobs_taken_away(&[second]).await.expect("read").is_empty(), "still b's, running");
    assert_eq!(r.b.requeue_orphans(now_millis(), now_millis() - TTL).await.expect("read"), 0, "b's own job stays");

    // `stop` on a reaches b's job through its row.
    assert!(r.a.stop(second, "stopped by @alice").await.expect("stopped"));
    assert_eq!(r.b.jobs_taken_away(&[second]).await.expect("read"), [(second, false)], "stopped");
    assert!(r.a.running_work(&x).await.expect("read").is_none());

    // Checkpoints, and a task only one replica runs at a time.
    assert_eq!(r.a.checkpoint(&x).await.expect("read"), None);
    r.b.save_checkpoint(&x, "ses_1", r#"{"info":{},"messages":[]}"#).await.expect("saved");
    r.b.save_checkpoint(&x, "ses_1", r#"{"info":{"id":"ses_1"},"messages":[]}"#).await.expect("replaced");
    let saved = r.a.checkpoint(&x).await.expect("read").expect("saved");
    assert_eq!(
        (saved.session_id.as_str(), saved.export.as_str()),
        ("ses_1", r#"{"info":{"id":"ses_1"},"messages":[]}"#)
    );
    let task = task_lease("reconcile");
    assert!(r.a.take_lease(&task, now_millis(), 60_000).await.expect("taken").is_some());
    assert!(r.b.take_lease(&task, now_millis(), 60_000).await.expect("read").is_none(), "one replica at a time");
    r.a.release_leases().await.expect("released");
    assert!(r.b.take_lease(&task, now_millis(), 60_000).await.expect("taken").is_some(), "free after a clean stop");
}
