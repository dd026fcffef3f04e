//! What people see while a run goes on (issue 11, "Progress"): the reaction
//! lifecycle on the trigger, one progress comment edited as the agent works and
//! folded when the run ends, and exactly one answer. Real opencode, the fake
//! model and forge.

mod support;

use std::time::Duration;

use serde_json::json;
use support::Step;
use support::bot_env::{BotEnv, tea, tea_comment};

const LIFECYCLE: [&str; 5] = ["+eyes", "+rocket", "-eyes", "++1", "-rocket"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_comment_shows_the_todo_list_and_tools_as_the_agent_works_then_folds() {
    let mut t = BotEnv::new().await;
    let todos = json!({ "todos": [
        { "content": "Read the parser PLAN-ONE", "status": "completed", "priority": "high" },
        { "content": "Fix the flaky test PLAN-TWO", "status": "in_progress", "priority": "high" }
    ] });
    t.env.model.on(
        "MARK-PROGRESS",
        vec![
            Step::Tool("todowrite", todos),
            // A slow model call: the progress comment (every 1s in the tests) is edited meanwhile.
            Step::After(Duration::from_secs(4), Box::new(Step::Bash("echo done > progress.txt".into()))),
            Step::Answer("All done, PROGRESS-ANSWER".into()),
        ],
    );
    let d = tea(&tea_comment(61, 3101, "@kugetsu MARK-PROGRESS", "alice"), "p-1");
    assert_eq!(d.post(&t.url("tea")).await.0, 202);
    let answers = t.forge.wait_for_comments("acme/widget", 61, 1).await;
    assert!(answers[0].body.contains("PROGRESS-ANSWER"), "{}", answers[0].body);

    t.forge
        .wait_until("the progress comment folded", |f| {
            f.progress_comments("acme/widget", 61).iter().any(|c| c.body.starts_with("✅ Done in"))
        })
        .await;
    let progress = t.forge.progress_comments("acme/widget", 61);
    assert_eq!(progress.len(), 1, "one progress comment per run: {progress:?}");
    let folded = &progress[0].body;
    assert!(folded.contains("2 tool calls") && folded.contains("todo 1/2 done"), "{folded}");
    assert!(!folded.contains('\n') || folded.lines().count() == 2, "a line and the marker: {folded}");
    // While the model was slow, an edit showed the plan and the tool used so far.
    let edits = t.forge.edits_of(progress[0].id);
    let during = edits.iter().find(|e| e.contains("Working on it") && e.contains("PLAN-TWO"));
    let during = during.unwrap_or_else(|| panic!("no edit showed the todo list during the run: {edits:#?}"));
    assert!(during.contains("- [x] Read the parser PLAN-ONE"), "{during}");
    assert!(during.contains("_(in progress)_") && during.contains("`todowrite` ×1"), "{during}");
    assert!(during.contains("src/branch/kugetsu/61"), "the branch is linked: {during}");
    assert_eq!(edits.last(), Some(folded), "the fold is the last edit");

    t.forge.wait_until("👍 on the trigger", |f| f.reactions() == ["acme/widget comment 3101 +1"]).await;
    assert_eq!(t.forge.reactions_on("acme/widget", "comment 3101"), LIFECYCLE);
    assert_eq!(t.forge.comments("acme/widget", 61).len(), 1, "exactly one answer");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_progress_reaction_only_the_reactions_show_and_a_failed_run_gets_confused() {
    let mut t = BotEnv::with_bot_settings("progress = \"reaction\"", "", Vec::new()).await;
    t.env.model.on("MARK-QUIET", vec![Step::Answer("quiet answer".into())]);
    // The model keeps failing: the run fails, and says so.
    t.env.model.on("MARK-BROKEN", vec![Step::Error(400)]);
    let d = tea(&tea_comment(62, 3201, "@kugetsu MARK-QUIET", "alice"), "p-2");
    assert_eq!(d.post(&t.url("tea")).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 62, 1).await;
    t.forge.wait_until("👍", |f| f.reactions() == ["acme/widget comment 3201 +1"]).await;
    assert_eq!(t.forge.reactions_on("acme/widget", "comment 3201"), LIFECYCLE);
    assert!(t.forge.progress_comments("acme/widget", 62).is_empty(), "no progress comment");

    let d = tea(&tea_comment(63, 3301, "@kugetsu MARK-BROKEN", "alice"), "p-3");
    assert_eq!(d.post(&t.url("tea")).await.0, 202);
    let answers = t.forge.wait_for_comments("acme/widget", 63, 1).await;
    assert!(answers[0].body.contains("failed"), "{}", answers[0].body);
    t.forge.wait_until("😕", |f| f.reactions().contains(&"acme/widget comment 3301 confused".to_owned())).await;
    let seen = t.forge.reactions_on("acme/widget", "comment 3301");
    assert_eq!(seen.last().map(String::as_str), Some("-rocket"), "😕 replaced 🚀: {seen:?}");
    assert!(!seen.contains(&"++1".to_owned()), "{seen:?}");
    t.stop().await;
}
