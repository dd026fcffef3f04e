//! Several `kugetsu serve` replicas on one PostgreSQL database (a throwaway
//! cluster, tests/support/postgres.rs), each with its own state directory, as
//! separate processes: any of them takes any delivery; an issue's jobs go to
//! the replica that holds it; a replica killed or paused mid-run is taken over,
//! session and all; `stop` reaches the run whichever replica got it.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::Step;
use support::bot_env::{gh, gh_comment};
use support::replicas::Replicas;

fn other_than(n: usize, count: usize) -> usize {
    (n + 1) % count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_run_is_taken_over_with_its_working_copy_and_session() {
    let mut r = Replicas::start(3, "2s").await;
    let model = r.t.env.model.clone();
    model.on(
        "MARK-FIRST",
        vec![
            Step::Bash("echo one > first.txt && git add first.txt && git commit -q -m first".into()),
            Step::Answer("FIRST-DONE".into()),
        ],
    );
    let first = gh(&gh_comment(81, 8101, "@kugetsu MARK-FIRST", "alice"), "rep-1");
    assert_eq!(first.post(&r.t.at(r.serve(0).url("gh"))).await.0, 202);
    r.t.forge.wait_for_comments("acme/widget", 81, 1).await;
    r.jobs_settled(1).await;

    // The second request goes to another replica; the issue's holder takes it, and hangs.
    model.on("MARK-SECOND", vec![Step::Hang]);
    let second = gh(&gh_comment(81, 8102, "@kugetsu MARK-SECOND", "alice"), "rep-2");
    assert_eq!(second.post(&r.t.at(r.serve(2).url("gh"))).await.0, 202);
    model.wait_for_request("MARK-SECOND", Duration::from_secs(120)).await;
    let holder = r.runner("gh/acme/widget#81").await;
    model.on(
        "MARK-SECOND",
        vec![
            Step::Bash("echo two > second.txt && git add second.txt && git commit -q -m second".into()),
            Step::Answer("SECOND-DONE".into()),
        ],
    );
    let killed_at = Instant::now();
    r.kill(holder, Signal::SIGKILL);
    r.serves[holder].take();

    let jobs = r.jobs_settled(2).await;
    let took = killed_at.elapsed();
    assert!(jobs.iter().all(|(_, _, status, _)| status == "done"), "{jobs:?}");
    let taker = jobs[1].3.clone().expect("claimed");
    assert_ne!(taker, r.replica_id(holder), "another replica finished it");
    let answers = r.t.forge.wait_for_comments("acme/widget", 81, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results: Vec<String> =
        r.t.forge.comments("acme/widget", 81).into_iter().map(|c| c.body).filter(|b| b.contains("-DONE")).collect();
    assert_eq!(results.len(), 2, "one answer each, none twice: {answers:?}");
    assert!(results[1].contains("SECOND-DONE"));
    // The work is on the remote, on top of the first run's.
    let files = r.t.env.remote_files("kugetsu/81");
    assert!(files.contains(&"first.txt".to_owned()) && files.contains(&"second.txt".to_owned()), "{files:?}");
    // The agent's next request after the takeover carries the first turn.
    let after = model.requests_for("MARK-SECOND");
    let last = serde_json::to_string(after.last().expect("a request")).expect("json");
    assert!(last.contains("MARK-FIRST") && last.contains("FIRST-DONE"), "the session's history came along: {last}");
    let taker = (0..3).find(|n| r.replica_id(*n) == taker).expect("a replica");
    let taker_log = r.serve(taker).log_text();
    assert!(taker_log.contains("took the issue's session over from its checkpoint"), "{taker_log}");
    eprintln!("takeover: the killed replica's issue was answered {} ms after the kill", took.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_said_to_a_replica_that_does_not_run_the_job_stops_it() {
    let r = Replicas::start(2, "2s").await;
    let model = r.t.env.model.clone();
    model.on("MARK-LONG", vec![Step::Hang]);
    let ask = gh(&gh_comment(82, 8201, "@kugetsu MARK-LONG", "alice"), "stop-1");
    assert_eq!(ask.post(&r.t.at(r.serve(0).url("gh"))).await.0, 202);
    model.wait_for_request("MARK-LONG", Duration::from_secs(120)).await;
    let runner = r.runner("gh/acme/widget#82").await;
    let elsewhere = other_than(runner, 2);
    let stop = gh(&gh_comment(82, 8202, "@kugetsu stop", "alice"), "stop-2");
    assert_eq!(stop.post(&r.t.at(r.serve(elsewhere).url("gh"))).await.0, 202);
    let jobs = r.jobs_settled(2).await;
    assert_eq!(jobs[0].2, "failed", "the run was stopped: {jobs:?}");
    let stopped =
        r.t.forge
            .comments("acme/widget", 82)
            .into_iter()
            .map(|c| c.body)
            .any(|b| b.contains("Stopped") || b.contains("stopped"));
    assert!(stopped, "the stop was answered: {:?}", r.t.forge.comments("acme/widget", 82));
    // The runner sees the row within a look or two (it looks every second, at its next wake-up).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !r.serve(runner).log_text().contains("ending its run here") {
        assert!(Instant::now() < deadline, "the runner never ended the run: {}", r.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = model.requests_for("MARK-LONG").len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(model.requests_for("MARK-LONG").len(), requests, "nothing more was asked of the model");
}

/// A replica paused past its lease (a stalled VM) at `point`, while another
/// takes the issue over: when it goes on, it finds the issue gone, says so, and
/// neither pushes nor comments.
async fn a_replica_paused_past_its_lease_at(point: &str, number: u64) {
    let mut r = Replicas::start_on(0, Some(support::postgres::cluster().new_database().await), "2s", "").await;
    let paused = r.add(&[("KUGETSU_PAUSE_AT", point)]);
    let model = r.t.env.model.clone();
    let marker = format!("MARK-PAUSE-{number}");
    let work = |file: &str, said: &str| {
        vec![
            Step::Bash(format!("echo {file} > {file}.txt && git add {file}.txt && git commit -q -m {file}")),
            Step::Answer(said.into()),
        ]
    };
    model.on(&marker, work("stale", "STALE-ANSWER"));
    let ask = gh(&gh_comment(number, number * 100, &format!("@kugetsu {marker}"), "alice"), &format!("pause-{number}"));
    assert_eq!(ask.post(&r.t.at(r.serve(paused).url("gh"))).await.0, 202);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !r.serve(paused).log_text().contains("pausing on purpose") {
        assert!(Instant::now() < deadline, "never paused at {point}: {}", r.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another replica starts, finds the paused one silent, and takes the issue.
    model.on(&marker, work("fresh", "FRESH-ANSWER"));
    let taker = r.add(&[]);
    let jobs = r.jobs_settled(1).await;
    assert_eq!(jobs[0].2, "done", "{jobs:?}\n{}", r.logs());
    assert_eq!(jobs[0].3.as_deref(), Some(r.replica_id(taker).as_str()), "the other replica did it");
    r.kill(paused, Signal::SIGCONT);
    let refusal = if point == "before-push" { "not pushing" } else { "not commenting" };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !r.serve(paused).log_text().contains(refusal) {
        assert!(Instant::now() < deadline, "the paused replica never checked its lease: {}", r.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let files = r.t.env.remote_files(&format!("kugetsu/{number}"));
    let comments: Vec<String> = r.t.forge.comments("acme/widget", number).into_iter().map(|c| c.body).collect();
    let answers = comments.iter().filter(|b| b.contains("-ANSWER")).count();
    assert_eq!(answers, 1, "one answer, none from the paused replica: {comments:?}");
    match point {
        // Paused before the push: the taker ran the agent again and pushed its own work.
        "before-push" => {
            assert!(files.contains(&"fresh.txt".to_owned()) && !files.contains(&"stale.txt".to_owned()), "{files:?}");
        }
        // Paused before the comment, its work pushed and its answer saved: the taker posted that answer.
        _ => assert!(comments.iter().any(|b| b.contains("STALE-ANSWER")), "the saved answer was posted: {comments:?}"),
    }
    let jobs = r.jobs_settled(1).await;
    assert_eq!(jobs[0].2, "done", "the paused replica's late word changed nothing: {jobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_lease_before_the_push_pushes_nothing() {
    a_replica_paused_past_its_lease_at("before-push", 85).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_lease_before_the_comment_posts_nothing() {
    a_replica_paused_past_its_lease_at("before-comment", 86).await;
}

/// Paused in the middle of the agent's turn: the run ends as soon as the
/// replica looks, and nothing of it reaches the remote or the issue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_paused_mid_run_ends_the_run_it_lost() {
    let mut r = Replicas::start(2, "2s").await;
    let model = r.t.env.model.clone();
    // The first replica's model call comes back after it was paused past its lease.
    model.on(
        "MARK-PAUSE",
        vec![Step::After(
            Duration::from_secs(6),
            Box::new(Step::Bash("echo stale > stale.txt && git add stale.txt && git commit -q -m stale".into())),
        )],
    );
    let ask = gh(&gh_comment(83, 8301, "@kugetsu MARK-PAUSE", "alice"), "lease-1");
    assert_eq!(ask.post(&r.t.at(r.serve(0).url("gh"))).await.0, 202);
    model.wait_for_request("MARK-PAUSE", Duration::from_secs(120)).await;
    let paused = r.runner("gh/acme/widget#83").await;
    r.kill(paused, Signal::SIGSTOP);
    // From now on the model answers at once, with other work.
    model.on(
        "MARK-PAUSE",
        vec![
            Step::Bash("echo fresh > fresh.txt && git add fresh.txt && git commit -q -m fresh".into()),
            Step::Answer("TAKEN-OVER".into()),
        ],
    );
    let jobs = r.jobs_settled(1).await;
    assert_eq!(jobs[0].2, "done", "{jobs:?}");
    assert_ne!(jobs[0].3.as_deref(), Some(r.replica_id(paused).as_str()), "the other replica did it");
    // The paused replica wakes after its agent finished the stale work.
    tokio::time::sleep(Duration::from_secs(6)).await;
    r.kill(paused, Signal::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = r.serve(paused).log_text();
        if log.contains("not pushing") || log.contains("not recording") || log.contains("not commenting") {
            break log;
        }
        assert!(Instant::now() < deadline, "the paused replica never noticed its lease was gone: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("the paused replica: {}", log.lines().filter(|l| l.contains("WARN")).collect::<Vec<_>>().join("\n"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let files = r.t.env.remote_files("kugetsu/83");
    assert!(files.contains(&"fresh.txt".to_owned()), "{files:?}");
    assert!(
        !files.contains(&"stale.txt".to_owned()),
        "the replica that lost the issue pushed nothing: {files:?}\n{log}"
    );
    let answers: Vec<String> =
        r.t.forge
            .comments("acme/widget", 83)
            .into_iter()
            .map(|c| c.body)
            .filter(|b| b.contains("TAKEN-OVER"))
            .collect();
    assert_eq!(answers.len(), 1, "one answer, from the replica that holds the issue");
    let jobs = r.jobs_settled(1).await;
    assert_eq!(jobs[0].2, "done", "the paused replica's late word changed nothing: {jobs:?}");
}

/// The fence itself, in one process: a run whose issue's lease another replica
/// took before the push pushes nothing, and says so; its control, with the
/// lease held, pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_pushes_only_while_its_replica_holds_the_issue() {
    use kugetsu::engine::{EngineError, Mode, RunOptions};
    use kugetsu::store::{Fence, ReplicaStore, SqliteStore, issue_lease, now_millis};
    let env = support::TestEnv::new("server").await;
    let engine = env.engine().await;
    let store = engine.store().clone();
    let step = |file: &str| Step::Bash(format!("echo x > {file} && git add {file} && git commit -q -m {file}"));
    env.model.on("MARK-HELD", vec![step("held.txt"), Step::Answer("held".into())]);
    env.model.on("MARK-LOST", vec![step("lost.txt"), Step::Answer("lost".into())]);
    let (held, lost): (kugetsu::issue_ref::IssueRef, kugetsu::issue_ref::IssueRef) =
        ("local/acme/widget#1".parse().expect("a ref"), "local/acme/widget#2".parse().expect("a ref"));

    let token = store.take_lease(&issue_lease(&held), now_millis(), 60_000).await.expect("taken").expect("free");
    let fence = Fence::new(store.clone(), issue_lease(&held), token);
    let opts = RunOptions { fence: Some(fence), ..RunOptions::default() };
    engine.run(&held, "MARK-HELD add a file", Mode::Auto, opts).await.expect("the control pushes");
    assert!(env.remote_files("kugetsu/1").contains(&"held.txt".to_owned()));

    let token = store.take_lease(&issue_lease(&lost), now_millis(), 50).await.expect("taken").expect("free");
    let fence = Fence::new(store.clone(), issue_lease(&lost), token);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let other = SqliteStore::open(&env.state_dir().join("kugetsu.db"))
        .await
        .expect("a second replica")
        .with_replica("other".into());
    assert!(other.take_lease(&issue_lease(&lost), now_millis(), 60_000).await.expect("taken").is_some(), "taken over");
    let opts = RunOptions { fence: Some(fence), ..RunOptions::default() };
    let refused = engine.run(&lost, "MARK-LOST add a file", Mode::Auto, opts).await;
    assert!(matches!(refused, Err(EngineError::LeaseLost(_))), "{refused:?}");
    assert_eq!(env.model.requests_for("MARK-LOST").len(), 2, "the agent ran, and kugetsu went as far as the push");
    assert!(!env.remote_has_branch("kugetsu/2"), "nothing was pushed for an issue another replica holds");
}

/// 300 signed deliveries (and 60 redeliveries of them) spread over three
/// replicas: every trigger answered once, each issue's in the order they came.
/// The triggers are `status`, answered without the agent, so the test is about
/// intake and claims across replicas, not opencode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_deliveries_over_three_replicas_each_answered_once_in_order() {
    const ISSUES: u64 = 20;
    const EACH: u64 = 15;
    let r = Replicas::start(3, "2s").await;
    let urls: Vec<String> = (0..3).map(|n| r.serve(n).url("gh")).collect();
    let mut senders = Vec::new();
    for issue in 1..=ISSUES {
        let (urls, forge) = (urls.clone(), r.t.forge.clone());
        senders.push(tokio::spawn(async move {
            for k in 0..EACH {
                let comment_id = 900_000 + issue * 100 + k;
                let payload = gh_comment(100 + issue, comment_id, "@kugetsu status", "alice");
                let delivery = gh(&payload, &format!("many-{issue}-{k}"));
                let to = urls[usize::try_from((issue + k) % 3).expect("small")].clone();
                let (status, text) = delivery.post(&support::webhook::Endpoint { url: to, forge: forge.clone() }).await;
                assert_eq!(status, 202, "{text}");
                // A forge that timed out redelivers: the same delivery, to another replica.
                if k % 5 == 0 {
                    let again = urls[usize::try_from((issue + k + 1) % 3).expect("small")].clone();
                    let (status, _) =
                        delivery.post(&support::webhook::Endpoint { url: again, forge: forge.clone() }).await;
                    assert!(status == 200 || status == 202, "a redelivery is acknowledged: {status}");
                }
            }
        }));
    }
    for sender in senders {
        sender.await.expect("the deliveries went out");
    }
    let jobs = r.jobs_settled((ISSUES * EACH) as usize).await;
    assert_eq!(jobs.len(), (ISSUES * EACH) as usize, "one job per delivery, redeliveries none");
    assert!(jobs.iter().all(|(_, _, status, _)| status == "done"), "{jobs:?}");
    let claimers: std::collections::BTreeSet<_> = jobs.iter().filter_map(|(_, _, _, by)| by.clone()).collect();
    assert!(claimers.len() >= 2, "the work was spread over the replicas: {claimers:?}");
    for issue in 1..=ISSUES {
        let number = 100 + issue;
        let comments = r.t.forge.wait_for_comments("acme/widget", number, EACH as usize).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let answered: Vec<i64> =
            r.t.forge
                .comments("acme/widget", number)
                .iter()
                .filter_map(|c| c.body.split("kugetsu:job:").nth(1)?.split(' ').next()?.parse().ok())
                .collect();
        assert_eq!(answered.len(), EACH as usize, "one answer per trigger on #{number}: {comments:?}");
        let mut sorted = answered.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(answered, sorted, "answered once each, in the order asked, on #{number}");
    }
}

/// A replica that gets an issue back after another ran it meanwhile builds on
/// the other's pushed work and session, not on its own old copy of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_gets_an_issue_back_builds_on_what_the_other_pushed() {
    let mut r = Replicas::start(2, "2s").await;
    let model = r.t.env.model.clone();
    let turn = |file: &str, said: &str| {
        vec![
            Step::Bash(format!("echo {file} > {file}.txt && git add {file}.txt && git commit -q -m {file}")),
            Step::Answer(said.into()),
        ]
    };
    model.on("MARK-ONE", turn("one", "ONE-DONE"));
    model.on("MARK-TWO", turn("two", "TWO-DONE"));
    model.on("MARK-THREE", turn("three", "THREE-DONE"));
    let ask = |n: u64, text: &str| gh(&gh_comment(84, 8400 + n, text, "alice"), &format!("back-{n}"));
    assert_eq!(ask(1, "@kugetsu MARK-ONE").post(&r.t.at(r.serve(0).url("gh"))).await.0, 202);
    r.jobs_settled(1).await;
    let first: Option<String> = sqlx::query_scalar("SELECT claimed_by FROM jobs WHERE id = 1")
        .fetch_one(&mut r.db().await)
        .await
        .expect("a read");
    let a = (0..2).find(|n| Some(r.replica_id(*n)) == first).expect("a replica ran it");
    let b = other_than(a, 2);
    // a stalls past its lease: b takes the next turn.
    r.kill(a, Signal::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ask(2, "@kugetsu MARK-TWO").post(&r.t.at(r.serve(b).url("gh"))).await.0, 202);
    let jobs = r.jobs_settled(2).await;
    assert_eq!(jobs[1].3.as_deref(), Some(r.replica_id(b).as_str()), "b ran the second turn");
    // a wakes, b dies: the issue comes back to a.
    r.kill(a, Signal::SIGCONT);
    r.kill(b, Signal::SIGKILL);
    r.serves[b].take();
    assert_eq!(ask(3, "@kugetsu MARK-THREE").post(&r.t.at(r.serve(a).url("gh"))).await.0, 202);
    let jobs = r.jobs_settled(3).await;
    assert!(jobs.iter().all(|(_, _, status, _)| status == "done"), "{jobs:?}\n{}", r.logs());
    let files = r.t.env.remote_files("kugetsu/84");
    for file in ["one.txt", "two.txt", "three.txt"] {
        assert!(files.contains(&file.to_owned()), "{file} on the remote: {files:?}");
    }
    let last = serde_json::to_string(model.requests_for("MARK-THREE").last().expect("a request")).expect("json");
    assert!(last.contains("TWO-DONE"), "the third turn saw the second, run elsewhere: {last}");
    assert!(r.serve(a).log_text().contains("another replica ran this issue since"), "{}", r.logs());
}
