//! A fake forge API speaking GitHub's and Gitea's (`/api/v1`) paths and JSON
//! shapes for the calls kugetsu makes. It keeps state and records every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct PostedComment {
    pub repo: String,
    pub issue: u64,
    pub id: u64,
    pub body: String,
}

#[derive(Default)]
struct State {
    calls: Vec<String>,
    comments: Vec<PostedComment>,
    reactions: Vec<String>,
    permissions: HashMap<String, String>,
    permission_failure: Option<u16>,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeForge {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeForge {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State { next_id: 1000, ..State::default() }));
        let shared = state.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = shared.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                handle(&state, &method, &uri, &auth, &body)
            }
        });
        let port = super::serve_on_loopback(app, "fake forge").await;
        Self { port, state }
    }

    pub fn github_api(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn gitea_api(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1", self.port)
    }

    pub fn set_permission(&self, user: &str, permission: &str) {
        self.state.lock().unwrap().permissions.insert(user.to_owned(), permission.to_owned());
    }

    /// Makes the permission API answer this status from now on.
    pub fn fail_permissions(&self, status: u16) {
        self.state.lock().unwrap().permission_failure = Some(status);
    }

    pub fn comments(&self, repo: &str, issue: u64) -> Vec<PostedComment> {
        let state = self.state.lock().unwrap();
        state.comments.iter().filter(|c| c.repo == repo && c.issue == issue).cloned().collect()
    }

    pub fn reactions(&self) -> Vec<String> {
        self.state.lock().unwrap().reactions.clone()
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    pub async fn wait_for_comments(&self, repo: &str, issue: u64, count: usize) -> Vec<PostedComment> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let comments = self.comments(repo, issue);
            if comments.len() >= count {
                return comments;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{repo}#{issue} never got {count} comment(s): {comments:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

fn user(login: &str, base: &str) -> Value {
    let url = |p: &str| format!("{base}/users/{login}{p}");
    json!({
        "login": login, "id": 1, "node_id": "U_1", "type": "User", "site_admin": false, "gravatar_id": "",
        "avatar_url": "https://avatars.example.com/u/1", "url": url(""), "html_url": format!("{base}/{login}"),
        "followers_url": url("/followers"), "following_url": url("/following"), "gists_url": url("/gists"),
        "starred_url": url("/starred"), "subscriptions_url": url("/subscriptions"),
        "organizations_url": url("/orgs"), "repos_url": url("/repos"), "events_url": url("/events"),
        "received_events_url": url("/received_events")
    })
}

/// The token a GitHub App installation gets from this fake.
pub const INSTALLATION_TOKEN: &str = "ghs_fake-installation-token";

fn handle(state: &Mutex<State>, method: &Method, uri: &Uri, auth: &str, body: &[u8]) -> Response {
    let mut state = state.lock().unwrap();
    let path = uri.path().strip_prefix("/api/v1").unwrap_or(uri.path()).to_owned();
    state.calls.push(format!("{method} {} [{auth}]", uri.path()));
    let base = "https://forge.example.com";
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["app", "installations", _, "access_tokens"]) => {
            if !auth.starts_with("Bearer ey") {
                return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "message": "A JSON web token is required" })))
                    .into_response();
            }
            (
                StatusCode::CREATED,
                axum::Json(json!({
                    "token": INSTALLATION_TOKEN, "expires_at": "2099-01-01T00:00:00Z",
                    "permissions": { "issues": "write", "contents": "write" }, "repository_selection": "all"
                })),
            )
                .into_response()
        }
        ("GET", ["repos", _, _, "collaborators", user_login, "permission"]) => {
            if let Some(status) = state.permission_failure {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return (status, axum::Json(json!({ "message": "" }))).into_response();
            }
            let permission = state.permissions.get(*user_login).cloned().unwrap_or_else(|| "read".into());
            axum::Json(json!({ "permission": permission, "role_name": permission, "user": user(user_login, base) }))
                .into_response()
        }
        ("POST", ["repos", o, r, "issues", "comments", id, "reactions"])
        | ("POST", ["repos", o, r, "issues", id, "reactions"]) => {
            let kind = if segments.contains(&"comments") { "comment" } else { "issue" };
            let entry = format!("{o}/{r} {kind} {id} {}", request["content"].as_str().unwrap_or("?"));
            state.reactions.push(entry);
            (StatusCode::CREATED, axum::Json(json!({
                "id": 1, "node_id": "R_1", "user": user("kugetsu", base), "content": request["content"], "created_at": "2026-11-27T00:00:00Z"
            }))).into_response()
        }
        ("POST", ["repos", o, r, "issues", n, "comments"]) => {
            let Ok(number) = n.parse::<u64>() else {
                return StatusCode::NOT_FOUND.into_response();
            };
            state.next_id += 1;
            let id = state.next_id;
            let body = request["body"].as_str().unwrap_or_default().to_owned();
            state.comments.push(PostedComment { repo: format!("{o}/{r}"), issue: number, id, body: body.clone() });
            (StatusCode::CREATED, axum::Json(comment_json(id, &body, o, r, number, base))).into_response()
        }
        ("GET", ["repos", o, r, "issues", n, "comments"]) => {
            let Ok(number) = n.parse::<u64>() else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let repo = format!("{o}/{r}");
            let list: Vec<Value> = state
                .comments
                .iter()
                .filter(|c| c.repo == repo && c.issue == number)
                .map(|c| comment_json(c.id, &c.body, o, r, number, base))
                .collect();
            axum::Json(list).into_response()
        }
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({ "message": "Not Found", "documentation_url": "" })))
            .into_response(),
    }
}

fn comment_json(id: u64, body: &str, o: &str, r: &str, n: u64, base: &str) -> Value {
    json!({
        "id": id, "node_id": format!("IC_{id}"), "body": body,
        "url": format!("{base}/repos/{o}/{r}/issues/comments/{id}"),
        "html_url": format!("{base}/{o}/{r}/issues/{n}#issuecomment-{id}"),
        "issue_url": format!("{base}/repos/{o}/{r}/issues/{n}"),
        "user": user("kugetsu", base), "created_at": "2026-11-27T00:00:00Z", "updated_at": "2026-11-27T00:00:00Z"
    })
}
