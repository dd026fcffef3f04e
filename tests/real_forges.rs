//! What real forges do that a lenient fake hides: Gitea's permission rule, forge
//! faults on the job's path, Gitea's `label_cleared`, and opencode dying mid-run.

mod support;

use std::time::Duration;

use axum::http::Method;
use support::Step;
use support::bot_env::{BotEnv, TEA_SECRET, gh, gh_comment, tea, tea_comment};
use support::fake_forge::{BOT_LOGIN, Fault};
use support::webhook::{self, fixture, retarget};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitea_without_the_admin_role_triggers_wait_say_why_once_and_run_when_granted() {
    let mut t = BotEnv::new().await;
    t.forge.set_permission(BOT_LOGIN, "write");
    t.env.model.on("MARK-ADMIN-1", vec![Step::Answer("first, once allowed".into())]);
    t.env.model.on("MARK-ADMIN-2", vec![Step::Answer("second, once allowed".into())]);
    assert_eq!(
        tea(&tea_comment(120, 3001, "@kugetsu MARK-ADMIN-1", "alice"), "adm-1").post(&t.url("tea")).await.0,
        202
    );
    assert_eq!(
        tea(&tea_comment(120, 3002, "@kugetsu MARK-ADMIN-2", "alice"), "adm-2").post(&t.url("tea")).await.0,
        202
    );
    let waiting = t.wait_for_job_attempts(1, 3).await;
    assert_eq!(waiting.1, "pending", "never dropped: {waiting:?}");
    assert!(waiting.3.as_deref().is_some_and(|e| e.contains("Administrator")), "{waiting:?}");

    assert_eq!(tea(&tea_comment(120, 3003, "@kugetsu status", "alice"), "adm-3").post(&t.url("tea")).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 120, 2).await;
    let notices: Vec<_> = comments.iter().filter(|c| c.body.contains("needs the **Administrator** role")).collect();
    assert_eq!(notices.len(), 1, "said once, however often the jobs retry: {comments:?}");
    let status = comments.iter().find(|c| c.body.contains("**Queued:**")).expect("status answered");
    assert!(status.body.contains("**Waiting:**") && status.body.contains("Administrator role"), "{}", status.body);
    assert!(t.env.model.requests().is_empty(), "nothing ran without a decision");

    t.forge.set_permission(BOT_LOGIN, "admin");
    let jobs = t.wait_for_jobs_done(3).await;
    assert!(jobs.iter().all(|j| j.2 == "done"), "{jobs:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let comments = t.forge.comments("acme/widget", 120);
    let bodies: Vec<&str> = comments.iter().map(|c| c.body.as_str()).collect();
    // The second request waited behind the first: it ran after it, or joined its
    // turn once the first ran (tests/follow_ups.rs), and was answered either way.
    match bodies.iter().any(|b| b.contains("**Took in:** comment 3002")) {
        true => assert!(bodies.len() == 3 && bodies[2].contains("second, once allowed"), "{bodies:?}"),
        false => assert!(
            bodies.len() == 4
                && bodies[2].contains("first, once allowed")
                && bodies[3].contains("second, once allowed"),
            "{bodies:?}"
        ),
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forge_faults_on_the_job_path_are_retried_and_the_answer_is_posted_once() {
    // The faults aim at the answer's calls; a progress comment's would take some.
    let mut t = BotEnv::with_bot_settings("progress = \"reaction\"", "", Vec::new()).await;
    t.env.model.on("MARK-FAULTS", vec![Step::Answer("answer despite faults".into())]);
    // One fault on every call of the job's path, the comment POST stored before its 502.
    t.forge.fail_next(Method::GET, "/collaborators/alice/permission", Fault::Error);
    t.forge.fail_next(Method::POST, "/issues/comments/3101/reactions", Fault::Slow);
    t.forge.fail_next(Method::GET, "/issues/121/comments", Fault::Dropped { applied: true });
    t.forge.fail_next(Method::POST, "/issues/121/comments", Fault::BadGatewayAfterEffect);
    t.forge.fail_next(Method::GET, "/issues/121/comments", Fault::Error);
    assert_eq!(gh(&gh_comment(121, 3101, "@kugetsu MARK-FAULTS", "alice"), "f-1").post(&t.url("gh")).await.0, 202);
    let jobs = t.wait_for_jobs_done(1).await;
    assert_eq!(jobs[0].2, "done", "{jobs:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let comments = t.forge.comments("acme/widget", 121);
    assert_eq!(comments.len(), 1, "stored once despite the 502: {comments:?}");
    assert!(comments[0].body.contains("answer despite faults"));
    assert_eq!(t.env.model.requests_for("MARK-FAULTS").len(), 1, "the answer was not computed twice");
    let posts = t.forge.calls().iter().filter(|c| c.starts_with("POST /repos/acme/widget/issues/121/comments")).count();
    assert_eq!(posts, 1, "the marker check before the retry found the stored comment");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_answer_survives_a_forge_outage_and_is_posted_when_it_returns() {
    // The faults aim at the answer's calls; a progress comment's would take some.
    let mut t = BotEnv::with_bot_settings("progress = \"reaction\"", "", Vec::new()).await;
    t.env.model.on("MARK-OUTAGE", vec![Step::Answer("kept through the outage".into())]);
    // More failures in a row than one attempt budget: the job goes back in the queue.
    for _ in 0..6 {
        t.forge.fail_next(Method::POST, "/issues/122/comments", Fault::Error);
    }
    assert_eq!(gh(&gh_comment(122, 3201, "@kugetsu MARK-OUTAGE", "alice"), "o-1").post(&t.url("gh")).await.0, 202);
    let waiting = t.wait_for_job_attempts(1, 1).await;
    assert!(waiting.3.as_deref().is_some_and(|e| e.contains("posting the comment")), "{waiting:?}");
    let comments = t.forge.wait_for_comments("acme/widget", 122, 1).await;
    assert!(comments[0].body.contains("kept through the outage"));
    assert_eq!(t.env.model.requests_for("MARK-OUTAGE").len(), 1, "posted from the saved outcome, not re-run");
    assert_eq!(t.wait_for_jobs_done(1).await[0].2, "done");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_label_cleared_resets_the_labels_so_adding_the_trigger_again_runs() {
    let mut t = BotEnv::new().await;
    let labels = |names: &[&str], action: &str, updated: &str| {
        let mut p = retarget(fixture("gitea/issues.label_updated.json"), "acme", "widget", 123, "alice");
        let template = p["issue"]["labels"][0].clone();
        p["action"] = action.into();
        p["issue"]["updated_at"] = updated.into();
        p["issue"]["labels"] = names
            .iter()
            .map(|n| {
                let mut l = template.clone();
                l["name"] = (*n).into();
                l
            })
            .collect();
        p
    };
    let send = |p: serde_json::Value, id: &str| webhook::gitea("issues", "issue_label", id, &p, TEA_SECRET);
    let d = send(labels(&["kugetsu"], "label_updated", "2026-11-30T10:00:00Z"), "lc-1");
    assert_eq!(d.post(&t.url("tea")).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 123, 1).await;

    let mut cleared = fixture("gitea/issues.label_cleared.json");
    cleared = retarget(cleared, "acme", "widget", 123, "alice");
    cleared["issue"]["updated_at"] = "2026-11-30T10:01:00Z".into();
    let (status, text) = send(cleared, "lc-2").post(&t.url("tea")).await;
    assert_eq!(status, 200, "clearing labels starts nothing: {text}");

    let d = send(labels(&["kugetsu"], "label_updated", "2026-11-30T10:02:00Z"), "lc-3");
    let (status, text) = d.post(&t.url("tea")).await;
    assert_eq!(status, 202, "the trigger label put back after a clear is new: {text}");
    t.forge.wait_for_comments("acme/widget", 123, 2).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_opencode_dies_is_retried_once_in_the_same_session() {
    let mut t = BotEnv::new().await;
    t.env.model.on("MARK-DIE", vec![Step::Hang]);
    // Registered later, so it wins for the retry's prompt, which names the marker too.
    t.env.model.on("previous turn on this request was interrupted", vec![Step::Answer("recovered".into())]);
    assert_eq!(gh(&gh_comment(124, 3401, "@kugetsu MARK-DIE", "alice"), "die-1").post(&t.url("gh")).await.0, 202);
    t.env.model.wait_for_request("MARK-DIE", Duration::from_secs(120)).await;
    assert!(t.env.kill_opencode() > 0, "found opencode to kill");

    let comments = t.forge.wait_for_comments("acme/widget", 124, 1).await;
    assert!(comments[0].body.contains("recovered"), "{}", comments[0].body);
    let retry = &t.env.model.requests_for("was interrupted")[0];
    let users = retry["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "user").count();
    assert!(users >= 2, "the retry continues the session that holds the first prompt: {users} user messages");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_death_fails_the_run_with_one_comment() {
    let mut t = BotEnv::new().await;
    t.env.model.on("MARK-DIE-TWICE", vec![Step::Hang]);
    assert_eq!(gh(&gh_comment(125, 3501, "@kugetsu MARK-DIE-TWICE", "alice"), "dt-1").post(&t.url("gh")).await.0, 202);
    for deaths in 1..=2 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while t.env.model.requests_for("MARK-DIE-TWICE").len() < deaths {
            assert!(tokio::time::Instant::now() < deadline, "request {deaths} never came");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(t.env.kill_opencode() > 0, "found opencode to kill ({deaths})");
    }
    let comments = t.forge.wait_for_comments("acme/widget", 125, 1).await;
    assert!(comments[0].body.contains("died twice"), "{}", comments[0].body);
    // Answered, and recorded as failed, with why (the status page lists it).
    assert_eq!(t.wait_for_jobs_done(1).await[0].2, "failed");
    let (_, _, error) = t.job_details().await.remove(0);
    let error = error.unwrap_or_default();
    assert!(error.starts_with("the run failed:") && error.len() > "the run failed: ".len(), "{error}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.env.model.requests_for("MARK-DIE-TWICE").len(), 2, "no third try");
    assert_eq!(t.forge.comments("acme/widget", 125).len(), 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_gives_up_at_its_deadline_with_one_comment() {
    let mut t = BotEnv::new().await;
    t.stop().await;
    t.edit_config(|c| c.replace("requeue_delay = \"200ms\"", "requeue_delay = \"200ms\"\nretry_deadline = \"2s\""));
    t.start().await;
    t.forge.fail_permissions(Some(502));
    assert_eq!(gh(&gh_comment(126, 3601, "@kugetsu MARK-NEVER", "alice"), "gu-1").post(&t.url("gh")).await.0, 202);
    let jobs = t.wait_for_jobs_done(1).await;
    assert_eq!(jobs[0].2, "failed", "{jobs:?}");
    let comments = t.forge.wait_for_comments("acme/widget", 126, 1).await;
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].body.starts_with("I gave up on this request"), "{}", comments[0].body);
    assert!(t.env.model.requests().is_empty(), "nothing ran without a permission answer");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(t.forge.comments("acme/widget", 126).len(), 1, "said once");
    t.stop().await;
}
