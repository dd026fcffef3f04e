//! The webhook bot end to end: real payloads in, real opencode and git runs, a
//! fake forge recording what the bot does.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::bot_env::{BotEnv, GH_SECRET, TEA_SECRET, gh, gh_comment, tea, tea_comment};
use support::webhook::{self, Delivery, fixture, retarget, with_comment};
use support::{Step, transcript};

async fn mention_runs_pushes_and_comments_then_continues(instance: &str, number: u64) {
    let mut t = BotEnv::new().await;
    t.env.model.on(
        "MARK-FIRST",
        vec![
            Step::Bash("echo fixed > fix.txt && git add fix.txt && git commit -q -m 'agent: fix'".into()),
            Step::Answer("Fixed it, FIRSTANSWER".into()),
        ],
    );
    t.env.model.on("MARK-SECOND", vec![Step::Answer("still here".into())]);
    let first = "@kugetsu please fix the flaky test MARK-FIRST";
    let (delivery, repo_path) = match instance {
        "gh" => (gh(&gh_comment(number, 501, first, "alice"), "d-1"), format!("gh/acme/widget#{number}")),
        _ => (tea(&tea_comment(number, 501, first, "alice"), "d-1"), format!("tea/acme/widget#{number}")),
    };
    let (status, text) = delivery.post(&t.url(instance)).await;
    assert_eq!(status, 202, "{text}");

    let comments = t.forge.wait_for_comments("acme/widget", number, 1).await;
    let body = &comments[0].body;
    let branch = format!("kugetsu/{number}");
    assert!(body.contains("FIRSTANSWER") && body.contains(&branch) && body.contains("agent: fix"), "{body}");
    assert!(body.contains("**Pull request:** [#") && body.contains("(opened now)"), "a draft is opened: {body}");
    assert_eq!(t.forge.pulls("acme/widget").len(), 1);
    assert!(body.contains("<!-- kugetsu:job:"), "{body}");
    // 👀 taken, 🚀 working, 👍 done: each replaces the one before.
    t.forge.wait_until("👍 on the trigger", |f| f.reactions() == ["acme/widget comment 501 +1"]).await;
    let lifecycle = ["+eyes", "+rocket", "-eyes", "++1", "-rocket"];
    assert_eq!(t.forge.reactions_on("acme/widget", "comment 501"), lifecycle);
    // One progress comment, folded to a line once the answer is out; one answer.
    t.forge
        .wait_until("the progress comment folded", |f| {
            f.progress_comments("acme/widget", number).iter().any(|c| c.body.starts_with("✅ Done in"))
        })
        .await;
    assert_eq!(t.forge.progress_comments("acme/widget", number).len(), 1);
    assert_eq!(t.forge.comments("acme/widget", number).len(), 1, "exactly one answer");
    assert!(t.env.remote_files(&branch).contains(&"fix.txt".to_owned()));
    for secret in [GH_SECRET, TEA_SECRET, "gh-token-canary", "tea-token-canary"] {
        assert!(!body.contains(secret));
    }
    let seen = transcript(&t.env.model.requests_for("MARK-FIRST")[0]);
    assert!(seen.contains(&repo_path) && seen.contains(&branch) && seen.contains("USER-CONTENT"), "{seen}");

    let second = "@kugetsu what did you change? MARK-SECOND";
    let delivery = match instance {
        "gh" => gh(&gh_comment(number, 502, second, "alice"), "d-2"),
        _ => tea(&tea_comment(number, 502, second, "alice"), "d-2"),
    };
    assert_eq!(delivery.post(&t.url(instance)).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", number, 2).await;
    assert!(comments[1].body.contains("still here") && comments[1].body.contains(&branch));
    let seen = transcript(&t.env.model.requests_for("MARK-SECOND")[0]);
    assert!(seen.contains("FIRSTANSWER"), "the second run continues the first session: {seen}");

    let out = t.env.kugetsu().args(["list", "--json"]).output().unwrap();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["issue"], repo_path.as_str(), "kugetsu list shows the bot's session");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_mention_runs_pushes_and_comments_then_continues() {
    mention_runs_pushes_and_comments_then_continues("gh", 31).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_mention_runs_pushes_and_comments_then_continues() {
    mention_runs_pushes_and_comments_then_continues("tea", 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_labels_start_runs_on_both_forges() {
    let mut t = BotEnv::new().await;
    let mut labeled = retarget(fixture("github/issues.labeled.json"), "acme", "widget", 33, "alice");
    labeled["label"]["name"] = "kugetsu".into();
    let d = webhook::github("issues", "l-1", &labeled, GH_SECRET);
    assert_eq!(d.post(&t.url("gh")).await.0, 202);

    let mut updated = retarget(fixture("gitea/issues.label_updated.json"), "acme", "widget", 34, "alice");
    updated["issue"]["labels"][0]["name"] = "kugetsu".into();
    let d = webhook::gitea("issues", "issue_label", "l-2", &updated, TEA_SECRET);
    assert_eq!(d.post(&t.url("tea")).await.0, 202);
    // The same label set again adds nothing: no second run.
    let d = webhook::gitea("issues", "issue_label", "l-3", &updated, TEA_SECRET);
    let (status, text) = d.post(&t.url("tea")).await;
    assert_eq!(status, 200, "{text}");

    t.forge.wait_for_comments("acme/widget", 33, 1).await;
    t.forge.wait_for_comments("acme/widget", 34, 1).await;
    t.forge.wait_until("👍 on both issues", |f| f.reactions().len() == 2).await;
    assert_eq!(t.forge.reactions_on("acme/widget", "issue 33"), ["+eyes", "+rocket", "-eyes", "++1", "-rocket"]);
    assert_eq!(t.forge.reactions_on("acme/widget", "issue 34"), ["+eyes", "+rocket", "-eyes", "++1", "-rocket"]);
    assert_eq!(t.wait_for_jobs_done(2).await.len(), 2);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_missing_and_empty_signatures_get_401_and_store_nothing() {
    let mut t = BotEnv::new().await;
    let payload = gh_comment(35, 1, "@kugetsu hi", "alice");
    let cases = [
        gh(&payload, "s-1").with("x-hub-signature-256", &format!("sha256={}", "0".repeat(64))),
        gh(&payload, "s-2").without("x-hub-signature-256"),
        gh(&payload, "s-3").with("x-hub-signature-256", "sha256="),
        gh(&payload, "s-4")
            .with("x-hub-signature-256", &format!("sha256={}", kugetsu::webhook::signature::sign("wrong", b"x"))),
    ];
    for d in cases {
        let (status, _) = d.post(&t.url("gh")).await;
        assert_eq!(status, 401);
    }
    let tea_payload = tea_comment(35, 1, "@kugetsu hi", "alice");
    for d in
        [tea(&tea_payload, "s-5").with("x-gitea-signature", ""), tea(&tea_payload, "s-6").without("x-gitea-signature")]
    {
        assert_eq!(d.post(&t.url("tea")).await.0, 401);
    }
    // A Gitea delivery signed with GitHub's instance secret is still wrong.
    let d = webhook::gitea("issue_comment", "issue_comment", "s-7", &tea_payload, GH_SECRET);
    assert_eq!(d.post(&t.url("tea")).await.0, 401);
    assert!(t.jobs().await.is_empty());
    assert!(t.forge.calls().is_empty(), "{:?}", t.forge.calls());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_runs_once_and_comments_once() {
    let mut t = BotEnv::new().await;
    let d = gh(&gh_comment(36, 601, "@kugetsu once please", "alice"), "same-id");
    assert_eq!(d.post(&t.url("gh")).await.0, 202);
    let (status, text) = d.post(&t.url("gh")).await;
    assert_eq!((status, text.as_str()), (200, "duplicate delivery"));
    t.wait_for_jobs_done(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.forge.comments("acme/widget", 36).len(), 1);
    assert_eq!(t.jobs().await.len(), 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_and_people_without_write_access_trigger_nothing() {
    let mut t = BotEnv::new().await;
    let own = gh_comment(37, 701, "@kugetsu done\n<!-- kugetsu:job:1 -->", "alice");
    assert_eq!(gh(&own, "b-1").post(&t.url("gh")).await.0, 200);
    let from_app = gh_comment(37, 702, "@kugetsu do it", "some-app[bot]");
    assert_eq!(gh(&from_app, "b-2").post(&t.url("gh")).await.0, 200);
    let from_self = tea_comment(37, 703, "@kugetsu do it", "kugetsu");
    assert_eq!(tea(&from_self, "b-3").post(&t.url("tea")).await.0, 200);
    assert!(t.jobs().await.is_empty(), "bot comments store no job");

    let reader = gh_comment(38, 704, "@kugetsu do it", "mallory");
    assert_eq!(gh(&reader, "b-4").post(&t.url("gh")).await.0, 202);
    t.wait_for_jobs_done(1).await;
    t.forge.fail_permissions(Some(500));
    t.env.model.on("MARK-LATER", vec![Step::Answer("ran once the API was back".into())]);
    let writer_but_api_down = gh_comment(39, 705, "@kugetsu do it MARK-LATER", "alice");
    assert_eq!(gh(&writer_but_api_down, "b-5").post(&t.url("gh")).await.0, 202);
    // Fail closed, but do not drop: the job waits for an answer it can trust.
    let waiting = t.wait_for_job_attempts(2, 2).await;
    assert_eq!(waiting.1, "pending", "{waiting:?}");
    assert!(waiting.3.as_deref().is_some_and(|e| e.contains("permission")), "{waiting:?}");
    assert!(t.forge.comments("acme/widget", 38).is_empty() && t.forge.comments("acme/widget", 39).is_empty());
    assert!(t.forge.reactions().is_empty(), "no run started: {:?}", t.forge.reactions());
    assert!(t.env.model.requests().is_empty(), "the agent never ran");
    t.forge.fail_permissions(None);
    let comments = t.forge.wait_for_comments("acme/widget", 39, 1).await;
    assert!(comments[0].body.contains("ran once the API was back"), "{comments:?}");
    assert!(t.forge.comments("acme/widget", 38).is_empty(), "the reader still got nothing");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_issue_runs_in_order_and_two_issues_run_in_parallel() {
    let mut t = BotEnv::new().await;
    let slow = Step::After(Duration::from_secs(2), Box::new(Step::Answer("p1 done".into())));
    t.env.model.on("MARK-P1", vec![slow]);
    let d1 = gh(&gh_comment(40, 801, "@kugetsu MARK-P1", "alice"), "o-1");
    // A label while the mention's run goes on: work that does not join a turn
    // (follow-up mentions do, see tests/follow_ups.rs) waits for the run, in order.
    let mut labeled = retarget(fixture("github/issues.labeled.json"), "acme", "widget", 40, "alice");
    labeled["label"]["name"] = "kugetsu".into();
    let d2 = webhook::github("issues", "o-2", &labeled, GH_SECRET);
    assert_eq!(d1.post(&t.url("gh")).await.0, 202);
    t.env.model.wait_for_request("MARK-P1", Duration::from_secs(90)).await;
    assert_eq!(d2.post(&t.url("gh")).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 40, 2).await;
    assert!(comments[0].body.contains("p1 done") && !comments[0].body.contains("Took in"));
    let last = t.env.model.requests().last().cloned().expect("the label's run asked the model");
    assert!(transcript(&last).contains("p1 done"), "the label's run came after the mention's, in its session");

    t.env.model.on("MARK-SLOW", vec![Step::Hang]);
    let a = gh(&gh_comment(41, 803, "@kugetsu MARK-SLOW a", "alice"), "o-3");
    let b = tea(&tea_comment(42, 804, "@kugetsu MARK-SLOW b", "alice"), "o-4");
    assert_eq!(a.post(&t.url("gh")).await.0, 202);
    assert_eq!(b.post(&t.url("tea")).await.0, 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while t.env.model.requests_for("MARK-SLOW").len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the two issues did not run at the same time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both slots (`limits.concurrency = 2`) are taken: a third issue waits its turn.
    let c = gh(&gh_comment(50, 805, "@kugetsu MARK-SLOW c", "alice"), "o-5");
    assert_eq!(c.post(&t.url("gh")).await.0, 202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(t.env.model.requests_for("MARK-SLOW").len(), 2, "the cap held");
    let jobs = t.jobs().await;
    assert_eq!(jobs.last().map(|j| (j.1.as_str(), j.2.as_str())), Some(("gh/acme/widget#50", "pending")), "{jobs:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_push_and_unknown_events_are_acknowledged_and_ignored() {
    let mut t = BotEnv::new().await;
    let ping = webhook::github("ping", "p-1", &fixture("github/ping.json"), GH_SECRET);
    assert_eq!(ping.post(&t.url("gh")).await.0, 200);
    let push = webhook::gitea_raw("push", "push", "p-2", webhook::fixture_bytes("gitea/push.json"), TEA_SECRET);
    assert_eq!(push.post(&t.url("tea")).await.0, 200);
    let weird = webhook::github("star", "p-3", &serde_json::json!({ "action": "created" }), GH_SECRET);
    assert_eq!(weird.post(&t.url("gh")).await.0, 200);
    let closed = retarget(fixture("github/issues.closed.json"), "acme", "widget", 43, "alice");
    assert_eq!(webhook::github("issues", "p-4", &closed, GH_SECRET).post(&t.url("gh")).await.0, 200);
    let (status, _) =
        webhook::github("ping", "p-5", &fixture("github/ping.json"), GH_SECRET).post(&t.url("nope")).await;
    assert_eq!(status, 404);
    let bad = webhook::github("issue_comment", "p-6", &serde_json::json!({ "issue": "nope" }), GH_SECRET);
    assert_eq!(bad.post(&t.url("gh")).await.0, 400);
    assert!(t.jobs().await.is_empty());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_left_at_shutdown_run_once_after_a_restart() {
    let mut t = BotEnv::new().await;
    t.env.model.on("MARK-R1", vec![Step::Hang]);
    let d1 = gh(&gh_comment(44, 901, "@kugetsu MARK-R1", "alice"), "r-1");
    // A label, which waits for the running job (a mention would join its turn).
    let mut labeled = retarget(fixture("github/issues.labeled.json"), "acme", "widget", 44, "alice");
    labeled["label"]["name"] = "kugetsu".into();
    let d2 = webhook::github("issues", "r-2", &labeled, GH_SECRET);
    assert_eq!(d1.post(&t.url("gh")).await.0, 202);
    assert_eq!(d2.post(&t.url("gh")).await.0, 202);
    t.env.model.wait_for_request("MARK-R1", Duration::from_secs(90)).await;
    t.stop().await;
    let statuses: Vec<String> = t.jobs().await.into_iter().map(|(_, _, s)| s).collect();
    assert_eq!(statuses, vec!["running".to_owned(), "pending".to_owned()]);

    t.env.model.on("MARK-R1", vec![Step::Answer("r1 done".into())]);
    t.start().await;
    let comments = t.forge.wait_for_comments("acme/widget", 44, 2).await;
    t.wait_for_jobs_done(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let comments_now = t.forge.comments("acme/widget", 44);
    assert_eq!(comments_now.len(), 2, "{comments_now:?}");
    assert!(comments[0].body.contains("r1 done") && comments[0].body.contains("<!-- kugetsu:job:1 -->"));
    assert!(comments[1].body.contains("<!-- kugetsu:job:2 -->"));
    // The first job's run took up the progress comment it made before the
    // restart: one per job, each folded once its answer was out.
    t.forge
        .wait_until("both progress comments folded", |f| {
            let all = f.progress_comments("acme/widget", 44);
            all.len() == 2 && all.iter().all(|c| c.body.starts_with("✅ Done in"))
        })
        .await;
    t.stop().await;
}

fn rsa_key_pem() -> String {
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-outform", "PEM"])
        .output()
        .expect("openssl runs (scripts/test installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_installation_token_is_fetched_and_used() {
    let app = r#"
[instances.app]
kind = "github"
api_url = "{forge}"
git_url = "{remotes}"
webhook_secret_env = "GH_SECRET"
bot_login = "kugetsu[bot]"
app_id = 12345
app_key_env = "APP_KEY"
installation_id = 77
"#;
    let mut t = BotEnv::with(app, vec![("APP_KEY", rsa_key_pem())]).await;
    let d = gh(&gh_comment(45, 1101, "@kugetsu hello from an app", "alice"), "a-1");
    assert_eq!(d.post(&t.url("app")).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 45, 1).await;
    let calls = t.forge.calls();
    assert!(calls.iter().any(|c| c.starts_with("POST /app/installations/77/access_tokens [Bearer ey")), "{calls:?}");
    let bearer = format!("[Bearer {}]", support::fake_forge::INSTALLATION_TOKEN);
    assert!(
        calls.iter().any(|c| c.starts_with("POST /repos/acme/widget/issues/45/comments") && c.ends_with(&bearer)),
        "{calls:?}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgejo_headers_form_deliveries_and_pull_request_comments_work() {
    let forgejo = r#"
[instances.fj]
kind = "forgejo"
api_url = "{gitea_api}"
git_url = "{remotes}"
token_env = "FJ_TOKEN"
webhook_secret_env = "FJ_SECRET"
"#;
    let vars = vec![("FJ_SECRET", "fj-secret".into()), ("FJ_TOKEN", "fj-token-canary".into())];
    let mut t = BotEnv::with(forgejo, vars).await;
    t.env.model.on("MARK-FJ", vec![Step::Answer("forgejo ok".into())]);
    let payload = tea_comment(46, 1201, "@kugetsu MARK-FJ", "alice");
    let body = serde_json::to_vec_pretty(&payload).unwrap();
    let sig = kugetsu::webhook::signature::sign("fj-secret", &body);
    let d = webhook::gitea_raw("issue_comment", "issue_comment", "f-1", body, "not-the-secret")
        .with("x-forgejo-event", "issue_comment")
        .with("x-forgejo-delivery", "f-1")
        .with("x-forgejo-signature", &sig);
    let (status, text) = d.post(&t.url("fj")).await;
    assert_eq!(status, 202, "Forgejo's own signature header is the one checked: {text}");
    t.forge.wait_for_comments("acme/widget", 46, 1).await;

    // GitHub's form encoding signs the form body as sent.
    let json = serde_json::to_string(&gh_comment(47, 1202, "@kugetsu from a form", "alice")).unwrap();
    let form: String = form_urlencoded::Serializer::new(String::new()).append_pair("payload", &json).finish();
    let d = Delivery {
        headers: vec![
            ("x-github-event", "issue_comment".into()),
            ("x-github-delivery", "f-2".into()),
            (
                "x-hub-signature-256",
                format!("sha256={}", kugetsu::webhook::signature::sign(GH_SECRET, form.as_bytes())),
            ),
            ("content-type", "application/x-www-form-urlencoded".into()),
        ],
        body: form.into_bytes(),
    };
    assert_eq!(d.post(&t.url("gh")).await.0, 202);

    t.env.model.on("MARK-PR", vec![Step::Answer("pr ok".into())]);
    let pr = retarget(fixture("gitea/issue_comment.created.pull_request.json"), "acme", "widget", 48, "alice");
    let pr = with_comment(pr, 1203, "@kugetsu MARK-PR review this");
    let d = webhook::gitea("issue_comment", "pull_request_comment", "f-3", &pr, TEA_SECRET);
    assert_eq!(d.post(&t.url("tea")).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 48, 1).await;
    assert!(comments[0].body.contains("pr ok") && comments[0].body.contains("kugetsu/48"));
    let seen = transcript(&t.env.model.requests_for("MARK-PR")[0]);
    assert!(seen.contains("pull request tea/acme/widget#48"), "{seen}");
    t.forge.wait_for_comments("acme/widget", 47, 1).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_without_write_access_get_the_polite_reply_once() {
    let mut t = BotEnv::with("", Vec::new()).await;
    let config = std::fs::read_to_string(&t.env.config_path).unwrap().replace(
        "trigger_labels = [\"kugetsu\"]",
        "trigger_labels = [\"kugetsu\"]\ndeny_reply = \"Sorry, only people with write access can ask me to work.\"",
    );
    std::fs::write(&t.env.config_path, config).unwrap();
    t.stop().await;
    t.start().await;
    let d = gh(&gh_comment(49, 1301, "@kugetsu let me in", "mallory"), "n-1");
    assert_eq!(d.post(&t.url("gh")).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 49, 1).await;
    assert!(comments[0].body.starts_with("Sorry, only people with write access"), "{comments:?}");
    assert!(t.env.model.requests().is_empty());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_with_413() {
    let mut t = BotEnv::new().await;
    let body = vec![b' '; kugetsu::webhook::BODY_LIMIT + 1];
    let d = webhook::gitea_raw("issue_comment", "issue_comment", "big", body, TEA_SECRET);
    assert_eq!(d.post(&t.url("tea")).await.0, 413);
    assert!(t.jobs().await.is_empty());
    // A large body within the limit is verified (off the runtime's threads) like any other.
    let mut large = serde_json::to_vec(&tea_comment(50, 1350, "@kugetsu status", "alice")).unwrap();
    large.resize(1024 * 1024, b' ');
    let forged = webhook::gitea_raw("issue_comment", "issue_comment", "large-1", large.clone(), "not-the-secret");
    assert_eq!(forged.post(&t.url("tea")).await.0, 401, "a large body signed with another secret");
    let d = webhook::gitea_raw("issue_comment", "issue_comment", "large-2", large, TEA_SECRET);
    assert_eq!(d.post(&t.url("tea")).await.0, 202, "control: the same body, signed");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_waits_for_a_cli_run_that_holds_the_issue() {
    let mut t = BotEnv::new().await;
    t.env.model.on("MARK-WAIT", vec![Step::Answer("after the cli run".into())]);
    let issue: kugetsu::issue_ref::IssueRef = "gh/acme/widget#95".parse().unwrap();
    let lock_path = kugetsu::engine::Layout::new(&t.env.state_dir()).issue_lock(&issue);
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let cli_run = kugetsu::lock::try_lock_exclusive(&lock_path).unwrap().expect("the issue is free");
    assert_eq!(gh(&gh_comment(95, 2801, "@kugetsu MARK-WAIT", "alice"), "w-1").post(&t.url("gh")).await.0, 202);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while t.deferred_jobs().await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the job was never deferred: {:?}", t.jobs().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(t.forge.comments("acme/widget", 95).is_empty(), "a busy issue is no failure to report");

    drop(cli_run);
    let comments = t.forge.wait_for_comments("acme/widget", 95, 1).await;
    assert!(comments[0].body.contains("after the cli run"), "{}", comments[0].body);
    let jobs = t.wait_for_jobs_done(1).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(t.forge.comments("acme/widget", 95).len(), 1);
    t.stop().await;
}

/// `--log-format json` (here through its variable): every line is a JSON
/// object, and a job's lines name the job, its issue and its delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_job_issue_and_delivery_of_each_line() {
    let mut t = BotEnv::new().await;
    t.stop().await;
    let mut vars = t.secret_vars();
    vars.push(("KUGETSU_LOG_FORMAT".into(), "json".into()));
    let log = t.env.dir.path().join("serve-json.log");
    let serve = support::serve::ServeProcess::spawn(&t.env.config_path, &vars, None, log);
    // The forge has no such comment, so the job is refused, with a warning, in its span.
    let unconfirmed = tea(&tea_comment(71, 7101, "@kugetsu MARK-UNCONFIRMED", "alice"), "json-71");
    assert_eq!(unconfirmed.post(&serve.url("tea")).await.0, 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let lines: Vec<Value> = loop {
        let text = serve.log_text();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect();
        if lines.iter().any(|l| l["span"]["delivery"] == "json-71") {
            break lines;
        }
        assert!(tokio::time::Instant::now() < deadline, "no line of the job: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let job = lines.iter().find(|l| l["span"]["delivery"] == "json-71").unwrap();
    assert_eq!(job["span"]["issue"], "tea/acme/widget#71", "{job}");
    assert!(job["span"]["job"].is_number(), "{job}");
    assert!(lines.iter().any(|l| l["fields"]["message"] == "kugetsu is listening"), "control: the start is logged");
    assert!(t.env.model.requests_for("MARK-UNCONFIRMED").is_empty(), "an unconfirmed trigger runs nothing");
}
