//! The forge clients against the strict fake forge, and the fake's own rules,
//! each checked the way the real forge answers (see tests/support/fake_forge.rs
//! for the source of every rule). No opencode, no git: these run in seconds.

mod support;

use std::path::Path;
use std::time::Duration;

use axum::http::Method;
use kugetsu::config::Config;
use kugetsu::forge::{Forge, ForgeError, Permission, Reaction, ReactionTarget, forge_for};
use kugetsu::issue_ref::IssueRef;
use serde_json::json;
use support::FakeForge;
use support::fake_forge::{BOT_LOGIN, Fault};

const TOKEN: &str = "forge-test-token";

async fn forge_with_issue() -> FakeForge {
    let forge = FakeForge::start().await;
    forge.accept_token(TOKEN, BOT_LOGIN);
    forge.add_issue("acme/widget", 5);
    forge.set_permission("alice", "write");
    forge
}

fn client(forge: &FakeForge, kind: &str, timeout: Duration) -> std::sync::Arc<dyn Forge> {
    let api = if kind == "github" { forge.github_api() } else { forge.gitea_api() };
    let text = format!(
        "state_dir = \"/nonexistent\"\n[instances.f]\nkind = \"{kind}\"\napi_url = \"{api}\"\n\
         git_url = \"http://127.0.0.1:1\"\ntoken_env = \"T\"\n"
    );
    let config = Config::parse(&text, Path::new("/"), |_| Some(TOKEN.to_owned())).expect("config");
    let instance = config.instance(&"f".parse().unwrap()).unwrap();
    forge_for(instance, timeout).expect("client")
}

fn issue() -> IssueRef {
    "f/acme/widget#5".parse().unwrap()
}

async fn call(method: Method, url: &str, auth: Option<&str>, body: serde_json::Value) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().request(method, url).json(&body);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let resp = req.send().await.expect("fake forge answers");
    (resp.status().as_u16(), resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn the_fake_forge_refuses_what_the_real_forges_refuse() {
    let forge = forge_with_issue().await;
    let (gh, tea) = (forge.github_api(), forge.gitea_api());
    let auth = Some(format!("token {TOKEN}"));
    let auth = auth.as_deref();
    // A token on every call.
    for base in [&gh, &tea] {
        let url = format!("{base}/repos/acme/widget/issues/5/comments");
        assert_eq!(call(Method::GET, &url, None, json!(null)).await.0, 401, "{url}");
        assert_eq!(call(Method::GET, &url, Some("token wrong"), json!(null)).await.0, 401, "{url}");
        assert_eq!(call(Method::GET, &url, auth, json!(null)).await.0, 200, "{url} (positive control)");
    }
    // Gitea's routes live under /api/v1 only.
    let bare = tea.trim_end_matches("/api/v1");
    let url = format!("{bare}/repos/acme/widget/issues/5/comments");
    assert_eq!(call(Method::GET, &url, auth, json!(null)).await.0, 404);
    // 404 for unknown repositories, issues and comments.
    for base in [&gh, &tea] {
        for path in ["/repos/acme/nope/issues/5/comments", "/repos/acme/widget/issues/6/comments"] {
            assert_eq!(call(Method::GET, &format!("{base}{path}"), auth, json!(null)).await.0, 404, "{path}");
        }
        let url = format!("{base}/repos/acme/widget/issues/comments/999/reactions");
        assert_eq!(call(Method::POST, &url, auth, json!({"content": "eyes"})).await.0, 404);
    }
    // A comment body is required; GitHub caps it at 65536 characters.
    for base in [&gh, &tea] {
        let url = format!("{base}/repos/acme/widget/issues/5/comments");
        assert_eq!(call(Method::POST, &url, auth, json!({"body": ""})).await.0, 422, "{base}");
    }
    let url = format!("{gh}/repos/acme/widget/issues/5/comments");
    assert_eq!(call(Method::POST, &url, auth, json!({"body": "x".repeat(65_537)})).await.0, 422);
    assert_eq!(call(Method::POST, &url, auth, json!({"body": "x".repeat(65_536)})).await.0, 201);
    // Reactions: the allowed list (Gitea 403, GitHub 422); 201 new, 200 again.
    for (base, refused, content) in [(&gh, 422, "eyes"), (&tea, 403, "rocket")] {
        let url = format!("{base}/repos/acme/widget/issues/5/reactions");
        assert_eq!(call(Method::POST, &url, auth, json!({"content": "tada"})).await.0, refused, "{base}");
        assert_eq!(call(Method::POST, &url, auth, json!({"content": content})).await.0, 201, "{base}");
        let (status, body) = call(Method::POST, &url, auth, json!({"content": content})).await;
        assert_eq!(status, 200, "{base}");
        assert_eq!(body.get("id").is_some(), base == &gh, "only GitHub's reaction has an id: {body}");
    }
    // Gitea shows other users' permissions to administrators only.
    let url = |user: &str| format!("{tea}/repos/acme/widget/collaborators/{user}/permission");
    forge.set_permission(BOT_LOGIN, "write");
    let (status, body) = call(Method::GET, &url("alice"), auth, json!(null)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().starts_with("Only admins can query all permissions"));
    assert_eq!(call(Method::GET, &url(BOT_LOGIN), auth, json!(null)).await.0, 200, "a user may ask about itself");
    forge.set_permission(BOT_LOGIN, "admin");
    let (status, body) = call(Method::GET, &url("alice"), auth, json!(null)).await;
    assert_eq!((status, body["permission"].as_str()), (200, Some("write")));
    assert_eq!(call(Method::GET, &url("nobody-at-all"), auth, json!(null)).await.0, 404);
    let gh_url = format!("{gh}/repos/acme/widget/collaborators/alice/permission");
    forge.set_permission(BOT_LOGIN, "write");
    assert_eq!(call(Method::GET, &gh_url, auth, json!(null)).await.0, 200, "GitHub has no such rule");
}

#[tokio::test]
async fn gitea_permission_403_is_forbidden_not_a_transient_fault() {
    let forge = forge_with_issue().await;
    forge.set_permission(BOT_LOGIN, "write");
    let tea = client(&forge, "gitea", Duration::from_secs(5));
    let repo = issue().repo().clone();
    let err = tea.permission(&repo, "alice").await.unwrap_err();
    assert!(matches!(&err, ForgeError::Forbidden(m) if m.contains("Only admins")), "{err:?}");
    forge.set_permission(BOT_LOGIN, "admin");
    assert_eq!(tea.permission(&repo, "alice").await.unwrap(), Permission::Write);
    assert!(matches!(tea.permission(&repo, "nobody-at-all").await, Err(ForgeError::NotFound)));
}

#[tokio::test]
async fn faults_map_to_transient_errors_on_both_clients() {
    let forge = forge_with_issue().await;
    forge.set_permission(BOT_LOGIN, "admin");
    let repo = issue().repo().clone();
    for kind in ["github", "gitea"] {
        let c = client(&forge, kind, Duration::from_millis(800));
        for fault in [Fault::Error, Fault::Dropped { applied: true }, Fault::Slow] {
            forge.fail_next(Method::GET, "/permission", fault);
            let err = c.permission(&repo, "alice").await.unwrap_err();
            assert!(err.is_transient(), "{kind} {fault:?}: {err:?}");
        }
        forge.fail_next(Method::GET, "/permission", Fault::RateLimited { retry_after_secs: 7 });
        match c.permission(&repo, "alice").await {
            Err(ForgeError::Transient { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)), "{kind}: Retry-After is honoured")
            }
            other => panic!("{kind}: a 429 is transient: {other:?}"),
        }
        forge.fail_next(Method::POST, "/reactions", Fault::BadGatewayAfterEffect);
        let err = c.react(&repo, ReactionTarget::Issue(5), Reaction::Eyes).await.unwrap_err();
        assert!(err.is_transient(), "{kind}: {err:?}");
        c.react(&repo, ReactionTarget::Issue(5), Reaction::Eyes).await.expect("the reaction is there: 200");
        assert_eq!(c.permission(&repo, "alice").await.unwrap(), Permission::Write, "{kind}: positive control");
    }
}

#[tokio::test]
async fn no_client_repeats_a_comment_post_behind_kugetsus_back() {
    let forge = forge_with_issue().await;
    for kind in ["github", "gitea"] {
        let c = client(&forge, kind, Duration::from_secs(5));
        let before = forge.comments("acme/widget", 5).len();
        forge.fail_next(Method::POST, "/issues/5/comments", Fault::BadGatewayAfterEffect);
        let err = c.post_comment(&issue(), &format!("stored, then 502 ({kind})")).await.unwrap_err();
        assert!(err.is_transient(), "{kind}: {err:?}");
        assert_eq!(forge.comments("acme/widget", 5).len(), before + 1, "{kind}: posted exactly once");
    }
}

#[tokio::test]
async fn github_comments_are_read_across_pages_with_their_authors() {
    let forge = forge_with_issue().await;
    let gh = client(&forge, "github", Duration::from_secs(5));
    for i in 0..135 {
        gh.post_comment(&issue(), &format!("comment {i}")).await.unwrap_or_else(|e| panic!("post {i}: {e:?}"));
    }
    let all = gh.comments(&issue()).await.unwrap();
    assert_eq!(all.len(), 135, "three pages of 100 at most, followed by `Link`");
    assert!(all.iter().all(|c| c.author == BOT_LOGIN));
    assert_eq!(all.last().map(|c| c.body.as_str()), Some("comment 134"));
    let tea = client(&forge, "gitea", Duration::from_secs(5));
    assert_eq!(tea.comments(&issue()).await.unwrap().len(), 135, "Gitea answers with all of them at once");
}

#[tokio::test]
async fn both_clients_replace_reactions_and_edit_their_comments() {
    for kind in ["github", "gitea"] {
        let forge = forge_with_issue().await;
        let c = client(&forge, kind, Duration::from_secs(5));
        let repo = issue().repo().clone();
        let id = c.post_comment(&issue(), "first").await.expect("posted");
        let target = ReactionTarget::Comment(id);
        let eyes = c.react(&repo, target, Reaction::Eyes).await.expect("eyes");
        // GitHub deletes by the reaction's id, Gitea by its content.
        assert_eq!(eyes.id.is_some(), kind == "github", "{kind}: {eyes:?}");
        let rocket = c.react(&repo, target, Reaction::Rocket).await.expect("rocket");
        c.unreact(&repo, target, eyes).await.expect("eyes taken back");
        assert_eq!(forge.reactions(), vec![format!("acme/widget comment {id} rocket")], "{kind}");
        c.unreact(&repo, target, eyes).await.expect("{kind}: taking back one already gone is no error");
        c.unreact(&repo, ReactionTarget::Issue(5), Reaction::ThumbsUp.into_reacted()).await.expect("none there");
        c.unreact(&repo, target, rocket).await.expect("rocket taken back");
        assert!(forge.reactions().is_empty(), "{kind}: {:?}", forge.reactions());

        c.edit_comment(&repo, id, "second").await.expect("edited");
        assert_eq!(forge.edits_of(id), vec!["second".to_owned()], "{kind}");
        let err = c.edit_comment(&repo, id, "").await.expect_err("an empty body is refused");
        assert!(!err.is_transient(), "{kind}: {err:?}");
        let err = c.edit_comment(&repo, 999_999, "x").await.expect_err("no such comment");
        assert!(matches!(err, ForgeError::NotFound), "{kind}: {err:?}");
        // Positive control: the comment reads as edited through the API too.
        let read = c.comment(&repo, id).await.expect("read back");
        assert_eq!(read.body, "second", "{kind}");
    }
}
