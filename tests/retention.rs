//! What finished work leaves behind goes: a closed issue's working copy after
//! `bot.closed_issue_grace`, while its session and record stay for a reopen.

mod support;

use std::time::Duration;

use support::Step;
use support::bot_env::{BotEnv, TEA_SECRET, tea, tea_comment};
use support::webhook::{self, fixture, retarget};

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_issue_loses_its_working_copy_after_the_grace_and_goes_on_when_reopened() {
    let mut t = BotEnv::new().await;
    t.stop().await;
    t.edit_config(|c| c.replace("requeue_delay = \"200ms\"", "requeue_delay = \"200ms\"\nclosed_issue_grace = \"1s\""));
    t.start().await;
    t.env.model.on("MARK-BEFORE", vec![Step::Answer("the word is HERON".into())]);
    t.env.model.on("MARK-AFTER", vec![Step::Answer("back".into())]);
    let worktree = t.env.state_dir().join("worktrees/tea/acme/widget/61");
    let home = t.env.state_dir().join("opencode/homes/tea/acme/widget/61");
    let other = t.env.state_dir().join("worktrees/tea/acme/widget/62");
    for (number, id) in [(61, 6101), (62, 6201)] {
        let d = tea(&tea_comment(number, id, "@kugetsu MARK-BEFORE", "alice"), &format!("c-{id}"));
        assert_eq!(d.post(&t.url("tea")).await.0, 202);
        t.forge.wait_for_comments("acme/widget", number, 1).await;
    }
    assert!(worktree.join(".git").is_dir() && other.join(".git").is_dir(), "control: both have working copies");

    let closed = retarget(fixture("gitea/issues.closed.json"), "acme", "widget", 61, "alice");
    let (status, text) = webhook::gitea("issues", "issues", "close-61", &closed, TEA_SECRET).post(&t.url("tea")).await;
    assert_eq!(status, 200, "{text}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Housekeeping runs at start-up (and hourly).
    t.stop().await;
    t.start().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while worktree.exists() {
        assert!(tokio::time::Instant::now() < deadline, "the closed issue's working copy is still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(other.join(".git").is_dir(), "an open issue keeps its working copy");
    assert!(home.is_dir(), "the closed issue's opencode files (its session) stay");
    let listed = t.env.kugetsu().args(["list", "--json"]).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("tea/acme/widget#61"), "its record stays");

    // Reopened and mentioned: a working copy again, the same session.
    let d = tea(&tea_comment(61, 6102, "@kugetsu MARK-AFTER", "alice"), "c-6102");
    assert_eq!(d.post(&t.url("tea")).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 61, 2).await;
    assert!(comments[1].body.contains("back"), "{}", comments[1].body);
    let seen = support::transcript(&t.env.model.requests_for("MARK-AFTER")[0]);
    assert!(seen.contains("HERON"), "the same session went on: {seen}");
    assert!(worktree.join(".git").is_dir());
    t.stop().await;
}
