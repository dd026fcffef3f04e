//! Budgets and the loop breaker (issue 11, "Budgets and loop breakers"): a run
//! that reaches a budget is stopped at its next step and says which budget
//! stopped it; later triggers are refused until a writer says `resume`. Real
//! opencode; the fake model reports 11 input and 7 output tokens per call.

mod support;

use support::Step;
use support::bot_env::{BotEnv, tea, tea_comment};

async fn mention(t: &BotEnv, number: u64, comment_id: u64, text: &str, delivery: &str) {
    let d = tea(&tea_comment(number, comment_id, text, "alice"), delivery);
    assert_eq!(d.post(&t.url("tea")).await.0, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_reaches_the_issue_budget_stops_at_its_next_step_until_resume() {
    let mut t = BotEnv::with("\n[budgets]\nper_issue = { tokens = 30 }\n", Vec::new()).await;
    t.env.model.on(
        "MARK-SPENDY",
        vec![
            Step::Bash("echo one >> spent.txt".into()),
            // The second call brings the issue to 36 tokens. opencode tells a
            // step's cost when the step ends, so the stop lands during the next
            // step at the latest: its slow tool never gets to write.
            Step::Bash("echo two >> spent.txt".into()),
            Step::Bash("sleep 4; echo three >> spent.txt".into()),
            Step::Answer("never reached".into()),
        ],
    );
    t.env.model.on("MARK-AFTER", vec![Step::Answer("went on, AFTER-ANSWER".into())]);
    mention(&t, 71, 4101, "@kugetsu MARK-SPENDY", "b-1").await;
    let comments = t.forge.wait_for_comments("acme/widget", 71, 1).await;
    let stopped_at = std::time::Instant::now();
    let stopped = &comments[0].body;
    assert!(stopped.contains("I stopped this run at its next step"), "{stopped}");
    assert!(stopped.contains("this issue's budget of 30 tokens is spent (36 so far)"), "{stopped}");
    assert!(stopped.contains("`@kugetsu resume`"), "{stopped}");
    // Without the stop, four calls; with it, the third at most, and its tool cut short.
    let calls = t.env.model.requests_for("MARK-SPENDY").len();
    assert!((2..=3).contains(&calls), "stopped at its next step: {calls} calls");
    let spent_file = t.env.state_dir().join("worktrees/tea/acme/widget/71/spent.txt");
    assert_eq!(std::fs::read_to_string(&spent_file).unwrap(), "one\ntwo\n", "the work before the stop is kept");
    t.forge.wait_until("😕 on the stopped trigger", |f| f.reactions() == ["acme/widget comment 4101 confused"]).await;

    // Reached, the budget refuses the next trigger politely, and nothing runs.
    mention(&t, 71, 4102, "@kugetsu MARK-AFTER", "b-2").await;
    let comments = t.forge.wait_for_comments("acme/widget", 71, 2).await;
    assert!(comments[1].body.starts_with("I did not start this: this issue's budget"), "{}", comments[1].body);
    assert!(t.env.model.requests_for("MARK-AFTER").is_empty(), "nothing ran");

    // A writer's `resume` lifts it; the same request then runs.
    mention(&t, 71, 4103, "@kugetsu resume", "b-3").await;
    let comments = t.forge.wait_for_comments("acme/widget", 71, 3).await;
    assert!(comments[2].body.starts_with("Resumed"), "{}", comments[2].body);
    mention(&t, 71, 4104, "@kugetsu MARK-AFTER", "b-4").await;
    let comments = t.forge.wait_for_comments("acme/widget", 71, 4).await;
    let answer = &comments[3].body;
    assert!(answer.contains("AFTER-ANSWER"), "{answer}");
    assert!(answer.contains("**This issue so far:** 2 runs · 54 tokens"), "the running total: {answer}");
    // Past the cut-short tool's sleep: it never wrote.
    tokio::time::sleep(std::time::Duration::from_secs(5).saturating_sub(stopped_at.elapsed())).await;
    let spent = std::fs::read_to_string(&spent_file).unwrap();
    assert!(!spent.contains("three"), "nothing ran after the stop: {spent}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_breaker_pauses_an_issue_after_too_many_runs_in_an_hour() {
    let mut t = BotEnv::with("\n[budgets]\nmax_runs_per_issue_per_hour = 1\n", Vec::new()).await;
    t.env.model.on("MARK-LOOP", vec![Step::Answer("looped".into())]);
    mention(&t, 72, 4201, "@kugetsu MARK-LOOP once", "l-1").await;
    let comments = t.forge.wait_for_comments("acme/widget", 72, 1).await;
    assert!(comments[0].body.contains("looped"), "{}", comments[0].body);
    mention(&t, 72, 4202, "@kugetsu MARK-LOOP twice", "l-2").await;
    let comments = t.forge.wait_for_comments("acme/widget", 72, 2).await;
    assert!(comments[1].body.contains("the loop breaker"), "{}", comments[1].body);
    assert_eq!(t.env.model.requests_for("MARK-LOOP").len(), 1, "the second trigger ran nothing");
    // Another issue is not paused (positive control: the breaker is per issue).
    mention(&t, 73, 4301, "@kugetsu MARK-LOOP elsewhere", "l-3").await;
    let comments = t.forge.wait_for_comments("acme/widget", 73, 1).await;
    assert!(comments[0].body.contains("looped"), "{}", comments[0].body);
    t.stop().await;
}
