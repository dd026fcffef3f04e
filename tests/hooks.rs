//! `kugetsu hooks install` and `hooks list` against the fake forge, GitHub and
//! Gitea: the webhook points at `bot.public_url`, carries the right secret and
//! exactly kugetsu's events, and installing twice leaves one hook.

mod support;

use std::path::{Path, PathBuf};

use support::FakeForge;
use support::fake_forge::BOT_LOGIN;

const TOKEN: &str = "hooks-test-token";
const INSTANCE_SECRET: &str = "instance-secret-value";
const WIDGET_SECRET: &str = "widget-only-secret-value";

fn write_config(dir: &Path, forge: &FakeForge, public_url: Option<&str>) -> PathBuf {
    let public = public_url.map(|u| format!("public_url = \"{u}\"\n")).unwrap_or_default();
    let text = format!(
        "state_dir = \"state\"\n\n[bot]\n{public}\n\
         [instances.gh]\nkind = \"github\"\napi_url = \"{gh}\"\ngit_url = \"https://github.example.com\"\n\
         token_env = \"HOOKS_TOKEN\"\nwebhook_secret_env = \"HOOKS_SECRET\"\n\
         webhook_secrets_env = {{ \"acme/widget\" = \"HOOKS_WIDGET_SECRET\" }}\n\n\
         [instances.tea]\nkind = \"gitea\"\napi_url = \"{tea}\"\ngit_url = \"https://gitea.example.com\"\n\
         token_env = \"HOOKS_TOKEN\"\nwebhook_secret_env = \"HOOKS_SECRET\"\n\
         webhook_secrets_env = {{ \"acme/widget\" = \"HOOKS_WIDGET_SECRET\" }}\n",
        gh = forge.github_api(),
        tea = forge.gitea_api(),
    );
    let path = dir.join(if public_url.is_some() { "kugetsu.toml" } else { "no-public-url.toml" });
    std::fs::write(&path, text).unwrap();
    path
}

async fn kugetsu(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kugetsu"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_clear()
        .env("HOOKS_TOKEN", TOKEN)
        .env("HOOKS_SECRET", INSTANCE_SECRET)
        .env("HOOKS_WIDGET_SECRET", WIDGET_SECRET)
        .output()
        .await
        .expect("kugetsu runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

async fn installs_once_with_kugetsus_url_secret_and_events(instance: &str, expected_events: &[&str]) {
    let forge = FakeForge::start().await;
    forge.add_repo("acme/widget");
    forge.add_org("acme");
    forge.accept_token(TOKEN, BOT_LOGIN);
    forge.add_hook("repos/acme/widget", "https://ci.example.com/hook");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &forge, Some("https://kugetsu.example.com/"));
    let target = format!("{instance}/acme/widget");
    let url = format!("https://kugetsu.example.com/webhooks/{instance}");

    // Without admin rights on the repository the forge refuses: a clear error, nothing made.
    let (code, _, err) = kugetsu(&config, &["hooks", "install", &target]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("admin rights"), "{err}");
    assert_eq!(forge.hooks("repos/acme/widget").len(), 1);

    forge.set_permission(BOT_LOGIN, "admin");
    let (code, out, err) = kugetsu(&config, &["hooks", "install", &target]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("created webhook"), "{out}");
    let hooks = forge.hooks("repos/acme/widget");
    let ours: Vec<_> = hooks.iter().filter(|h| h.url == url).collect();
    assert_eq!(ours.len(), 1, "{hooks:?}");
    let hook = ours[0];
    assert_eq!((hook.content_type.as_str(), hook.active), ("json", true));
    assert_eq!(hook.secret, WIDGET_SECRET, "the repository's own secret signs for it");
    assert_eq!(hook.events, expected_events);

    // Drift on the forge (someone turned it off, changed the secret) is set right;
    // installing again updates the same hook rather than adding one.
    let id = hook.id;
    forge.tamper_with_hook("repos/acme/widget", id);
    let (code, out, _) = kugetsu(&config, &["hooks", "list", &target]).await;
    assert_eq!(code, 0);
    assert!(out.contains("← kugetsu's (not as kugetsu needs it"), "{out}");
    let (code, out, err) = kugetsu(&config, &["hooks", "install", &target]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("updated webhook {id} ")), "{out}");
    let hooks = forge.hooks("repos/acme/widget");
    assert_eq!(hooks.len(), 2, "one of kugetsu's and the other one: {hooks:?}");
    let ours = hooks.iter().find(|h| h.id == id).expect("kugetsu's hook");
    assert_eq!((ours.active, ours.secret.as_str()), (true, WIDGET_SECRET), "set right again");
    assert_eq!(ours.events, expected_events);
    let theirs = hooks.iter().find(|h| h.url == "https://ci.example.com/hook").expect("the other hook stays");
    assert_eq!((theirs.secret.as_str(), theirs.events.as_slice()), ("theirs", ["push".to_owned()].as_slice()));

    let (code, out, err) = kugetsu(&config, &["hooks", "list", &target]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().any(|l| l.contains(&url) && l.ends_with("← kugetsu's")), "{out}");
    assert!(lines.iter().any(|l| l.contains("ci.example.com") && !l.contains("kugetsu's")), "{out}");
    assert!(!out.contains(WIDGET_SECRET) && !err.contains(WIDGET_SECRET), "a listing never shows a secret");

    // An organisation's hook, signed with the instance's secret (no owner-wide one is set).
    let (code, out, err) = kugetsu(&config, &["hooks", "install", "--org", &format!("{instance}/acme")]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("organisation acme"), "{out}");
    let org = forge.hooks("orgs/acme");
    assert_eq!(org.len(), 1, "{org:?}");
    assert_eq!((org[0].url.as_str(), org[0].secret.as_str()), (url.as_str(), INSTANCE_SECRET));

    // Bad input is refused before any call.
    let calls = forge.calls().len();
    let no_url = write_config(dir.path(), &forge, None);
    let (code, _, err) = kugetsu(&no_url, &["hooks", "install", &target]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bot.public_url"), "{err}");
    let (code, _, err) = kugetsu(&config, &["hooks", "install", "--org", "acme"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("instance/owner"), "{err}");
    let (code, _, err) = kugetsu(&config, &["hooks", "list", "elsewhere/acme/widget"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no instance `elsewhere`"), "{err}");
    assert_eq!(forge.calls().len(), calls, "refused input made no forge call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_hooks_install_once_with_kugetsus_url_secret_and_events() {
    let events =
        ["issues", "issue_comment", "pull_request_review", "pull_request_review_comment", "status", "check_run"];
    installs_once_with_kugetsus_url_secret_and_events("gh", &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_hooks_install_once_with_kugetsus_url_secret_and_events() {
    // What Gitea lists back: `issues` turns on each issue sub-event.
    let events = [
        "issues",
        "issue_assign",
        "issue_label",
        "issue_milestone",
        "issue_comment",
        "pull_request_comment",
        "pull_request_review_approved",
        "pull_request_review_rejected",
        "pull_request_review_comment",
        "status",
    ];
    installs_once_with_kugetsus_url_secret_and_events("tea", &events).await;
}
