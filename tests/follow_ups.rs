//! Follow-ups join the running session (issue 11, "Follow-ups"): a trusted
//! mention that comes during a run is taken in at the turn's next step instead of
//! waiting for the run to end, and the answer names it; one that comes after the
//! run starts the next run. Real opencode (which queues a message sent to a busy
//! session), the fake model and forge.

mod support;

use std::time::Duration;

use support::bot_env::{BotEnv, tea, tea_comment};
use support::{Step, transcript};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_during_a_slow_step_joins_the_turn_and_one_after_it_starts_a_new_run() {
    let mut t = BotEnv::new().await;
    t.env.model.on(
        "MARK-JOIN-FIRST",
        vec![
            Step::After(Duration::from_secs(4), Box::new(Step::Bash("echo first > first.txt".into()))),
            Step::Answer("first answer".into()),
        ],
    );
    t.env.model.on("MARK-JOIN-SECOND", vec![Step::Answer("both answered, JOINED-ANSWER".into())]);
    t.env.model.on("MARK-JOIN-AFTER", vec![Step::Answer("a new run, AFTER-ANSWER".into())]);
    let first = tea(&tea_comment(91, 6101, "@kugetsu MARK-JOIN-FIRST", "alice"), "j-1");
    assert_eq!(first.post(&t.url("tea")).await.0, 202);
    t.env.model.wait_for_request("MARK-JOIN-FIRST", Duration::from_secs(90)).await;
    // The model is slow on the first step: the follow-up comes meanwhile.
    let second = tea(&tea_comment(91, 6102, "@kugetsu also MARK-JOIN-SECOND", "alice"), "j-2");
    assert_eq!(second.post(&t.url("tea")).await.0, 202);
    t.forge
        .wait_until("👀 on the follow-up at once", |f| {
            f.reactions_on("acme/widget", "comment 6102").first().is_some_and(|r| r == "+eyes")
        })
        .await;

    let answers = t.forge.wait_for_comments("acme/widget", 91, 1).await;
    let answer = &answers[0].body;
    assert!(answer.contains("JOINED-ANSWER"), "the turn's reply answers the follow-up: {answer}");
    assert!(answer.contains("**Took in:** comment 6102 by alice, while the run went on"), "{answer}");
    // The model's next request carried the follow-up, in the same turn and session.
    let joined = t.env.model.requests_for("MARK-JOIN-SECOND");
    assert_eq!(joined.len(), 1, "one request for the follow-up, no second run");
    let seen = transcript(&joined[0]);
    assert!(seen.contains("MARK-JOIN-FIRST"), "the same session: {seen}");
    let messages = joined[0]["messages"].as_array().cloned().unwrap_or_default();
    assert!(messages.iter().any(|m| m["role"] == "tool"), "taken in after the first step's tool ran: {messages:?}");
    assert_eq!(t.env.model.requests_for("MARK-JOIN-FIRST").len(), 1, "the first step's request, and no other");
    let jobs = t.wait_for_jobs_done(2).await;
    assert!(jobs.iter().all(|j| j.2 == "done"), "{jobs:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.forge.comments("acme/widget", 91).len(), 1, "one answer for both comments");

    // After the run, a mention starts the next run, as before.
    let after = tea(&tea_comment(91, 6103, "@kugetsu MARK-JOIN-AFTER", "alice"), "j-3");
    assert_eq!(after.post(&t.url("tea")).await.0, 202);
    let answers = t.forge.wait_for_comments("acme/widget", 91, 2).await;
    assert!(answers[1].body.contains("AFTER-ANSWER") && !answers[1].body.contains("Took in"), "{}", answers[1].body);
    t.stop().await;
}
