//! Questions go through the thread (issue 11, "Questions"): when the agent calls
//! opencode's question tool, kugetsu posts it with numbered options and the run
//! waits, holding no agent slot, for the next comment by a writer; a reader's
//! reply is ignored; nobody's answer within `bot.question_timeout` becomes "no
//! answer; use your judgement"; `stop` ends the wait; a restart keeps it. Real
//! opencode, the fake model and forge.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::bot_env::{BotEnv, bot_that_reconciles_every_second, made_now, tea, tea_comment};
use support::{Step, transcript};

fn colour_question() -> Step {
    Step::Tool(
        "question",
        json!({ "questions": [{
            "question": "Which colour should the button be?",
            "header": "Colour",
            "options": [
                { "label": "Red", "description": "warm" },
                { "label": "Blue", "description": "calm" }
            ]
        }]}),
    )
}

/// The tool results the model was sent in `request`, as text.
fn tool_results(request: &Value) -> Vec<String> {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    messages
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// A bot whose opencode permission rules leave one command, `echo ask-me…`, to a person.
async fn bot_whose_rules_ask_before_echo_ask_me() -> BotEnv {
    let mut t = BotEnv::new().await;
    let opencode_json = t.env.config_path.with_file_name("opencode.json");
    let mut rules: Value = serde_json::from_str(&std::fs::read_to_string(&opencode_json).unwrap()).unwrap();
    rules["permission"]["bash"] = json!({ "*": "allow", "echo ask-me*": "ask" });
    std::fs::write(&opencode_json, rules.to_string()).unwrap();
    t.stop().await;
    t.start().await;
    t
}

/// Posts a comment's webhook; the status kugetsu answered.
/// Comment ids are the forge's, in the order comments are made: a person's
/// comment after the bot's has a higher id (the fake forge numbers the bot's
/// from 100000), and only such a comment answers a question.
async fn post(t: &BotEnv, issue: u64, comment: u64, body: &str, author: &str, delivery: &str) -> u16 {
    tea(&tea_comment(issue, comment, body, author), delivery).post(&t.url("tea")).await.0
}

/// Posts a comment kugetsu takes up.
async fn say(t: &BotEnv, issue: u64, comment: u64, body: &str, author: &str, delivery: &str) {
    assert_eq!(post(t, issue, comment, body, author, delivery).await, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_reply_answers_the_question_while_the_waiting_run_holds_no_slot() {
    let mut t = BotEnv::new().await;
    // One agent slot: the other issue's run below can only go while this one waits.
    t.stop().await;
    t.edit_config(|c| c.replace("concurrency = 2", "concurrency = 1"));
    t.start().await;
    t.env.model.on("MARK-ASK", vec![colour_question(), Step::Answer("painted it, ASK-DONE".into())]);
    t.env.model.on("MARK-OTHER", vec![Step::Answer("other issue, OTHER-DONE".into())]);
    say(&t, 91, 7101, "@kugetsu MARK-ASK", "alice", "q-1").await;

    let asked = t.forge.wait_for_comments("acme/widget", 91, 1).await;
    let question = &asked[0];
    assert!(question.body.contains("Which colour should the button be?"), "{}", question.body);
    assert!(question.body.contains("1. **Red** — warm") && question.body.contains("2. **Blue** — calm"));

    // Waiting, it holds no slot: another issue's run takes the only one and ends.
    say(&t, 92, 900201, "@kugetsu MARK-OTHER", "alice", "q-2").await;
    let other = t.forge.wait_for_comments("acme/widget", 92, 1).await;
    assert!(other[0].body.contains("OTHER-DONE"), "{}", other[0].body);

    // `status` says what the run waits for.
    say(&t, 91, 900102, "@kugetsu status", "alice", "q-3").await;
    let status = t.forge.wait_for_comments("acme/widget", 91, 2).await;
    assert!(
        status[1].body.contains("**Waiting for an answer to:** Which colour should the button be?"),
        "{}",
        status[1].body
    );

    // So does the run's progress comment.
    t.forge
        .wait_until("the progress comment says the run waits", |f| {
            f.progress_comments("acme/widget", 91).iter().any(|c| {
                f.edits_of(c.id).iter().any(|e| e.contains("waiting for an answer in this thread: Which colour"))
            })
        })
        .await;

    // A reader's reply is no answer: nothing reaches the model, no reaction, no word.
    say(&t, 91, 900103, "2", "mallory", "q-4").await;
    t.wait_for_jobs_until(|jobs| jobs.iter().filter(|j| j.2 == "done").count() >= 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(t.env.model.requests_for("MARK-ASK").len(), 1, "still waiting after the reader's reply");
    assert!(t.forge.reactions_on("acme/widget", "comment 900103").is_empty());

    // A writer's "2", without a mention, is the answer.
    say(&t, 91, 900104, "2", "alice", "q-5").await;
    let answers = t.forge.wait_for_comments("acme/widget", 91, 3).await;
    assert!(answers[2].body.contains("ASK-DONE"), "the run completed: {}", answers[2].body);
    let requests = t.env.model.requests_for("MARK-ASK");
    assert_eq!(requests.len(), 2, "one more request, after the answer");
    let results = tool_results(&requests[1]);
    assert!(
        results.iter().any(|r| r.contains("\"Which colour should the button be?\"=\"Blue\"")),
        "the answer reached the model as the question tool's result: {results:?}"
    );
    assert!(!transcript(&requests[1]).contains("Red\"="), "{results:?}");
    assert_eq!(t.forge.reactions_on("acme/widget", "comment 900104").first().map(String::as_str), Some("+eyes"));
    let edits = t.forge.edits_of(question.id);
    assert!(edits.last().is_some_and(|e| e.contains("**Answered** by @alice: Blue")), "{edits:?}");
    let jobs = t.wait_for_jobs_done(5).await;
    assert!(jobs.iter().all(|j| j.2 == "done"), "{jobs:?}");
    assert_eq!(t.forge.comments("acme/widget", 91).len(), 3, "the question, the status, the answer");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_answers_in_time_so_the_run_goes_on_and_stop_ends_a_wait() {
    let mut t = BotEnv::with_bot_settings(r#"question_timeout = "2s""#, "", Vec::new()).await;
    t.env.model.on("MARK-LATE", vec![colour_question(), Step::Answer("chose myself, LATE-DONE".into())]);
    say(&t, 93, 7301, "@kugetsu MARK-LATE", "alice", "l-1").await;
    let comments = t.forge.wait_for_comments("acme/widget", 93, 2).await;
    assert!(comments[0].body.contains("Which colour"), "{}", comments[0].body);
    assert!(comments[1].body.contains("LATE-DONE"), "{}", comments[1].body);
    let requests = t.env.model.requests_for("MARK-LATE");
    assert_eq!(requests.len(), 2);
    let results = tool_results(&requests[1]);
    assert!(results.iter().any(|r| r.contains("=\"no answer; use your judgement\"")), "{results:?}");
    let edits = t.forge.edits_of(comments[0].id);
    assert!(edits.last().is_some_and(|e| e.contains("No answer in time")), "{edits:?}");

    // A run that waits is stopped by `stop`; a reply after it answers nothing.
    t.stop().await;
    t.edit_config(|c| c.replace(r#"question_timeout = "2s""#, r#"question_timeout = "10m""#));
    t.start().await;
    t.env.model.on("MARK-HALT", vec![colour_question(), Step::Answer("never, HALT-DONE".into())]);
    say(&t, 93, 7302, "@kugetsu MARK-HALT", "alice", "l-2").await;
    t.forge.wait_for_comments("acme/widget", 93, 3).await;
    say(&t, 93, 900303, "@kugetsu stop", "alice", "l-3").await;
    let comments = t.forge.wait_for_comments("acme/widget", 93, 4).await;
    assert!(comments[3].body.contains("Stopped"), "{}", comments[3].body);
    let edits = t.forge.edits_of(comments[2].id);
    assert!(edits.last().is_some_and(|e| e.contains("the run was stopped by @alice")), "{edits:?}");
    assert_eq!(post(&t, 93, 900304, "1", "alice", "l-4").await, 200, "a plain comment, ignored at intake");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(t.env.model.requests_for("MARK-HALT").len(), 1, "the stopped run asked nothing more");
    assert!(t.forge.reactions_on("acme/widget", "comment 900304").is_empty(), "a plain comment once the wait ended");
    assert_eq!(t.forge.comments("acme/widget", 93).len(), 4);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_when_kugetsu_restarts_still_waits_and_takes_the_answer() {
    let mut t = bot_that_reconciles_every_second().await;
    t.env.model.on("MARK-RESTART", vec![colour_question(), Step::Answer("not reached".into())]);
    t.env.model.on("kugetsu restarted while you waited", vec![Step::Answer("went on, RESTART-DONE".into())]);
    say(&t, 94, 7401, "@kugetsu MARK-RESTART", "alice", "r-1").await;
    t.forge.wait_for_comments("acme/widget", 94, 1).await;

    // Answered while kugetsu is down, in the person's own words, without a
    // mention: no delivery ever brings it; the forge has it.
    t.stop().await;
    t.forge.seed(&tea(&made_now(tea_comment(94, 900402, "teal, like the logo", "alice")), "r-2"));
    t.start().await;
    let comments = t.forge.wait_for_comments("acme/widget", 94, 2).await;
    assert!(comments[1].body.contains("RESTART-DONE"), "{}", comments[1].body);
    assert!(comments[0].body.contains("Which colour"), "the question was not posted again: {comments:?}");
    let resumed = t.env.model.requests_for("kugetsu restarted while you waited");
    assert_eq!(resumed.len(), 1);
    let seen = transcript(&resumed[0]);
    assert!(seen.contains("Which colour should the button be?") && seen.contains("teal, like the logo"), "{seen}");
    assert!(seen.contains("MARK-RESTART"), "the same session: {seen}");
    assert_eq!(t.env.model.requests_for("MARK-RESTART").len(), 1, "not asked again");
    let jobs = t.wait_for_jobs_done(2).await;
    assert!(jobs.iter().all(|j| j.2 == "done"), "{jobs:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_left_to_ask_is_asked_in_the_thread_and_runs_only_when_allowed() {
    let mut t = bot_whose_rules_ask_before_echo_ask_me().await;
    let ask = || Step::Bash("echo ask-me RAN-OK".into());
    t.env.model.on("MARK-ALLOW", vec![ask(), Step::Answer("allowed, ALLOW-DONE".into())]);
    t.env.model.on("MARK-DENY", vec![ask(), Step::Answer("denied, DENY-DONE".into())]);

    say(&t, 95, 7501, "@kugetsu MARK-ALLOW", "alice", "p-1").await;
    let asked = t.forge.wait_for_comments("acme/widget", 95, 1).await;
    assert!(
        asked[0].body.contains("**The agent asks for permission:** `bash` `echo ask-me RAN-OK`"),
        "{}",
        asked[0].body
    );
    say(&t, 95, 900502, "1", "alice", "p-2").await;
    let done = t.forge.wait_for_comments("acme/widget", 95, 2).await;
    assert!(done[1].body.contains("ALLOW-DONE"), "{}", done[1].body);
    let results = tool_results(&t.env.model.requests_for("MARK-ALLOW")[1]);
    assert!(results.iter().any(|r| r.contains("ask-me RAN-OK")), "the command ran: {results:?}");

    // Control: the same request denied, with a reason the agent is told.
    say(&t, 96, 900601, "@kugetsu MARK-DENY", "alice", "p-3").await;
    t.forge.wait_for_comments("acme/widget", 96, 1).await;
    say(&t, 96, 900602, "no, use printf instead", "alice", "p-4").await;
    let done = t.forge.wait_for_comments("acme/widget", 96, 2).await;
    assert!(done[1].body.contains("DENY-DONE"), "{}", done[1].body);
    let results = tool_results(&t.env.model.requests_for("MARK-DENY")[1]);
    assert!(!results.iter().any(|r| r.contains("ask-me RAN-OK")), "the command never ran: {results:?}");
    assert!(results.iter().any(|r| r.contains("use printf instead")), "the reason reached the agent: {results:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subagents_permission_request_is_asked_in_the_thread_too() {
    let mut t = bot_whose_rules_ask_before_echo_ask_me().await;
    // The agent hands the work to a subagent (opencode's `task` tool), whose
    // session is a child of the run's: its request is the run's question.
    let task =
        json!({ "description": "run the check", "prompt": "SUBTASK-ASK run the check", "subagent_type": "general" });
    t.env.model.on("MARK-SUB", vec![Step::Tool("task", task), Step::Answer("parent done, SUB-DONE".into())]);
    t.env.model.on("SUBTASK-ASK", vec![Step::Bash("echo ask-me SUBRAN".into()), Step::Answer("sub finished".into())]);
    say(&t, 97, 7701, "@kugetsu MARK-SUB", "alice", "s-1").await;
    let asked = t.forge.wait_for_comments("acme/widget", 97, 1).await;
    assert!(asked[0].body.contains("`echo ask-me SUBRAN`"), "{}", asked[0].body);
    say(&t, 97, 900702, "yes", "alice", "s-2").await;
    let done = t.forge.wait_for_comments("acme/widget", 97, 2).await;
    assert!(done[1].body.contains("SUB-DONE"), "{}", done[1].body);
    let sub = t.env.model.requests_for("SUBTASK-ASK");
    let results = sub.iter().flat_map(tool_results).collect::<Vec<_>>();
    assert!(results.iter().any(|r| r.contains("ask-me SUBRAN")), "the subagent's command ran: {results:?}");
    t.stop().await;
}
