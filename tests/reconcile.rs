//! No lost mentions: a mention whose delivery never came (kugetsu was down, or
//! the delivery was lost) is found by reading the repository's recent comments,
//! and runs exactly once.

mod support;

use std::time::Duration;

use support::Step;
use support::bot_env::{
    GH_SECRET, TEA_SECRET, bot_that_reconciles_every_second, gh, gh_comment, made_now, tea, tea_comment,
};
use support::webhook::{self, fixture, retarget};

#[tokio::test(flavor = "multi_thread")]
async fn mentions_no_delivery_brought_run_exactly_once() {
    let mut t = bot_that_reconciles_every_second().await;
    t.env.model.on("MARK-SERVED", vec![Step::Answer("served".into())]);
    t.env.model.on("MARK-WHILE-DOWN", vec![Step::Answer("DOWNANSWER".into())]);
    t.env.model.on("MARK-LOST", vec![Step::Answer("LOSTANSWER".into())]);
    // A delivered mention makes the repository one kugetsu serves.
    let served = tea(&made_now(tea_comment(41, 4101, "@kugetsu MARK-SERVED", "alice")), "r-41");
    assert_eq!(served.post(&t.url("tea")).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 41, 1).await;

    // Made while kugetsu is down: the forge has it, no delivery ever comes.
    t.stop().await;
    let while_down = tea(&made_now(tea_comment(42, 4201, "@kugetsu MARK-WHILE-DOWN", "alice")), "r-42");
    t.forge.seed(&while_down);
    t.start().await;
    let comments = t.forge.wait_for_comments("acme/widget", 42, 1).await;
    assert!(comments[0].body.contains("DOWNANSWER"), "{}", comments[0].body);

    // Made while kugetsu runs, its delivery lost on the way.
    let lost = tea(&made_now(tea_comment(43, 4301, "@kugetsu MARK-LOST", "alice")), "r-43");
    t.forge.seed(&lost);
    let comments = t.forge.wait_for_comments("acme/widget", 43, 1).await;
    assert!(comments[0].body.contains("LOSTANSWER"), "{}", comments[0].body);

    // The late delivery of one, more looks, and a restart: nothing runs again.
    assert_eq!(while_down.post(&t.url("tea")).await.0, 200, "stored once, whichever way it came");
    tokio::time::sleep(Duration::from_secs(3)).await;
    t.stop().await;
    t.start().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (issue, marker) in [(41, "MARK-SERVED"), (42, "MARK-WHILE-DOWN"), (43, "MARK-LOST")] {
        assert_eq!(t.forge.comments("acme/widget", issue).len(), 1, "#{issue} was answered once");
        assert_eq!(t.env.model.requests_for(marker).len(), 1, "{marker} ran once");
    }
    let calls = t.forge.calls();
    assert!(calls.iter().any(|c| c.starts_with("GET /api/v1/repos/acme/widget/issues/comments")), "{calls:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn old_mentions_and_strangers_are_not_run_by_reconciliation() {
    let mut t = bot_that_reconciles_every_second().await;
    t.env.model.on("MARK-SERVED", vec![Step::Answer("served".into())]);
    let served = tea(&made_now(tea_comment(51, 5101, "@kugetsu MARK-SERVED", "alice")), "s-51");
    assert_eq!(served.post(&t.url("tea")).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 51, 1).await;
    // A mention from before kugetsu served the repository, and one by a stranger.
    let mut old = tea_comment(52, 5201, "@kugetsu MARK-OLD", "alice");
    old["comment"]["updated_at"] = "2020-01-01T00:00:00Z".into();
    t.forge.seed(&tea(&old, "s-52"));
    t.forge.seed(&tea(&made_now(tea_comment(53, 5301, "@kugetsu MARK-STRANGER", "mallory")), "s-53"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(t.env.model.requests_for("MARK-OLD").is_empty(), "an old mention is not run");
    assert!(t.env.model.requests_for("MARK-STRANGER").is_empty(), "a stranger's mention is not run");
    let jobs = t.jobs().await;
    assert!(
        jobs.iter().any(|(_, issue, _)| issue.ends_with("#53")),
        "control: the stranger's mention was seen: {jobs:?}"
    );
    t.stop().await;
}

async fn trigger_labels_put_on_while_down_run_exactly_once(instance: &str, number: u64) {
    let mut t = bot_that_reconciles_every_second().await;
    t.env.model.on("MARK-SERVED", vec![Step::Answer("served".into())]);
    let marker = format!("MARK-LABELED-{instance}");
    t.env.model.on(&marker, vec![Step::Answer("LABELANSWER".into())]);
    let served = match instance {
        "gh" => gh(&made_now(gh_comment(number, number * 100, "@kugetsu MARK-SERVED", "alice")), "l-served"),
        _ => tea(&made_now(tea_comment(number, number * 100, "@kugetsu MARK-SERVED", "alice")), "l-served"),
    };
    assert_eq!(served.post(&t.url(instance)).await.0, 202);
    t.forge.wait_for_comments("acme/widget", number, 1).await;

    t.stop().await;
    // The issue says what to do; the trigger label goes on while kugetsu is down.
    let (labeled, old) = (number + 1, number + 2);
    let fixture_name = if instance == "gh" { "github/issues.opened.json" } else { "gitea/issues.opened.json" };
    let mut opened = retarget(fixture(fixture_name), "acme", "widget", labeled, "alice");
    opened["issue"]["body"] = format!("Please look at the parser. {marker}").into();
    opened["issue"]["labels"] = serde_json::json!([]);
    t.forge.seed(&match instance {
        "gh" => webhook::github("issues", "l-opened", &opened, GH_SECRET),
        _ => webhook::gitea("issues", "issues", "l-opened", &opened, TEA_SECRET),
    });
    t.forge.label_event("acme/widget", labeled, "kugetsu", true, "alice");
    // Labelled long ago and changed since: the label is not asked again.
    t.forge.label_event_at("acme/widget", old, "kugetsu", "alice", "2020-01-01T00:00:00Z");
    t.forge.touch_issue("acme/widget", old);
    t.start().await;
    let comments = t.forge.wait_for_comments("acme/widget", labeled, 1).await;
    assert!(comments[0].body.contains("LABELANSWER"), "{}", comments[0].body);

    // More looks and a restart: it does not run again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    t.stop().await;
    t.start().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(t.forge.comments("acme/widget", labeled).len(), 1, "#{labeled} was answered once");
    assert_eq!(t.env.model.requests_for(&marker).len(), 1, "the label ran once");
    assert!(t.forge.comments("acme/widget", old).is_empty(), "an old label is not run");
    let listed =
        if instance == "gh" { "GET /repos/acme/widget/issues " } else { "GET /api/v1/repos/acme/widget/issues " };
    let calls = t.forge.calls();
    assert!(calls.iter().any(|c| c.starts_with(listed)), "{calls:?}");
    if instance == "gh" {
        // Quiet looks ask the same questions, and GitHub answers "not modified"...
        assert!(t.forge.not_modified() > 0, "no conditional request was answered 304");
        // ...until something changes: a mention whose delivery was lost still runs.
        t.env.model.on("MARK-AFTER-QUIET", vec![Step::Answer("AFTERQUIET".into())]);
        let lost = gh(&made_now(gh_comment(old + 1, (old + 1) * 100, "@kugetsu MARK-AFTER-QUIET", "alice")), "l-lost");
        t.forge.seed(&lost);
        let comments = t.forge.wait_for_comments("acme/widget", old + 1, 1).await;
        assert!(comments[0].body.contains("AFTERQUIET"), "{}", comments[0].body);
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gitea_trigger_labels_put_on_while_down_run_exactly_once() {
    trigger_labels_put_on_while_down_run_exactly_once("tea", 61).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn github_trigger_labels_put_on_while_down_run_exactly_once() {
    trigger_labels_put_on_while_down_run_exactly_once("gh", 71).await;
}
