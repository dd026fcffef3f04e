//! A typed client for the parts of `opencode serve`'s HTTP API that kugetsu uses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{RunError, SessionInfo};
use crate::result::Tokens;

/// How long opencode may take to take an answer to a question or permission
/// request: the turn's clock stands still until it does.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One server's API, for the one checkout that server serves.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    password: SecretString,
    /// The checkout as opencode sees it, sent with every call as `directory`.
    directory: PathBuf,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).field("directory", &self.directory).finish_non_exhaustive()
    }
}

/// What kugetsu reads of a session: its counters, and who started it.
#[derive(Debug, Deserialize, Default)]
pub struct SessionCounters {
    #[serde(default)]
    pub cost: f64,
    #[serde(default)]
    pub tokens: WireTokens,
    /// The session whose `task` tool started this one (a subagent's).
    #[serde(default, rename = "parentID")]
    pub parent_id: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct WireTokens {
    #[serde(default)]
    input: u64,
    #[serde(default)]
    output: u64,
    #[serde(default)]
    reasoning: u64,
    #[serde(default)]
    cache: WireCache,
}

#[derive(Debug, Deserialize, Default)]
struct WireCache {
    #[serde(default)]
    read: u64,
    #[serde(default)]
    write: u64,
}

impl From<&WireTokens> for Tokens {
    fn from(t: &WireTokens) -> Self {
        Tokens {
            input: t.input,
            output: t.output,
            reasoning: t.reasoning,
            cache_read: t.cache.read,
            cache_write: t.cache.write,
        }
    }
}

/// A session's state in `GET /session/status`: `busy`, `retry` (with the model's
/// error) or absent when idle.
#[derive(Debug, Deserialize)]
pub struct SessionStatus {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Deserialize)]
pub struct PendingRequest {
    pub id: String,
    #[serde(rename = "sessionID")]
    pub session_id: String,
    #[serde(flatten)]
    pub rest: HashMap<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub info: Value,
    #[serde(default)]
    pub parts: Vec<Value>,
}

impl Message {
    /// The assistant's text, with its reasoning and tool output left out.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter(|p| p["type"] == "text" && p["synthetic"] != true)
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_owned()
    }

    pub fn id(&self) -> &str {
        self.info["id"].as_str().unwrap_or_default()
    }

    pub fn role(&self) -> &str {
        self.info["role"].as_str().unwrap_or_default()
    }

    /// The user message an assistant message answers.
    pub fn parent_id(&self) -> &str {
        self.info["parentID"].as_str().unwrap_or_default()
    }

    /// The error opencode attached to the message, if the turn failed.
    pub fn error(&self) -> Option<String> {
        let err = self.info.get("error")?;
        let message = err["data"]["message"].as_str().or_else(|| err["name"].as_str());
        Some(message.unwrap_or("unknown error").to_owned())
    }
}

impl Api {
    pub fn new(http: reqwest::Client, base: String, password: SecretString, directory: PathBuf) -> Self {
        Self { http, base, password, directory }
    }

    /// Whether the server's port takes a connection (loopback: microseconds).
    pub async fn accepts_connections(&self) -> bool {
        let Ok(url) = reqwest::Url::parse(&self.base) else { return false };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else { return false };
        let connect = tokio::net::TcpStream::connect((host, port));
        matches!(tokio::time::timeout(std::time::Duration::from_secs(2), connect).await, Ok(Ok(_)))
    }

    /// A call about the checkout.
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.in_directory(method, path, &self.directory)
    }

    fn in_directory(&self, method: Method, path: &str, dir: &Path) -> RequestBuilder {
        self.global(method, path).query(&[("directory", dir.to_string_lossy())])
    }

    /// A call about the server as a whole.
    fn global(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth("opencode", Some(self.password.expose_secret()))
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder, what: &str) -> Result<T, RunError> {
        let resp = Self::successful(req, what).await?;
        resp.json().await.map_err(|e| RunError::infra(format!("opencode {what} sent an unexpected answer: {e}")))
    }

    /// For calls whose answer body does not matter (and is not always JSON).
    async fn send_expecting_success(&self, req: RequestBuilder, what: &str) -> Result<(), RunError> {
        Self::successful(req, what).await.map(drop)
    }

    /// Sends `req`; a transport error or a non-2xx answer becomes an error
    /// quoting the start of the answer's body.
    async fn successful(req: RequestBuilder, what: &str) -> Result<reqwest::Response, RunError> {
        let resp =
            req.send().await.map_err(|e| RunError::infra(format!("opencode server unreachable during {what}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: String = resp.text().await.unwrap_or_default().chars().take(500).collect();
        Err(RunError::infra(format!("opencode {what} answered {status}: {body}")))
    }

    pub async fn healthy(&self) -> bool {
        let req = self.global(Method::GET, "/global/health");
        matches!(req.send().await, Ok(r) if r.status().is_success())
    }

    pub async fn create_session(&self, title: &str) -> Result<SessionInfo, RunError> {
        let req = self.request(Method::POST, "/session").json(&json!({ "title": title }));
        self.send(req, "session creation").await
    }

    /// Forks `base`, whose directory is `base_dir`, into this checkout: a fork
    /// keeps its parent's directory, and where that is another, the agent would
    /// work there, so the copy is moved.
    pub async fn fork_into(&self, base: &str, base_dir: &Path) -> Result<SessionInfo, RunError> {
        let req = self.in_directory(Method::POST, &format!("/session/{base}/fork"), base_dir).json(&json!({}));
        let fork: SessionInfo = self.send(req, "session fork").await?;
        if base_dir == self.directory {
            return Ok(fork);
        }
        let req = self
            .global(Method::POST, "/experimental/control-plane/move-session")
            .json(&json!({ "sessionID": fork.id, "destination": { "directory": self.directory } }));
        self.send_expecting_success(req, "session move").await.map_err(|e| e.in_session(&fork.id))?;
        Ok(fork)
    }

    pub async fn session(&self, id: &str) -> Result<Option<SessionCounters>, RunError> {
        let resp = self
            .request(Method::GET, &format!("/session/{id}"))
            .send()
            .await
            .map_err(|e| RunError::infra(format!("opencode server unreachable: {e}")))?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                resp.json().await.map(Some).map_err(|e| RunError::infra(format!("unexpected session answer: {e}")))
            }
            s => Err(RunError::infra(format!("opencode session lookup answered {s}"))),
        }
    }

    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, RunError> {
        self.send(self.request(Method::GET, "/session"), "session listing").await
    }

    pub async fn prompt(&self, id: &str, body: &Value) -> Result<Message, RunError> {
        let req = self.request(Method::POST, &format!("/session/{id}/message")).json(body);
        self.send(req, "prompt").await
    }

    /// Adds a message to the session without waiting for its answer. On a busy
    /// session (opencode 1.18.33, measured), the running turn takes it in at its
    /// next step, and the turn's reply answers it; on an idle one, a turn starts.
    pub async fn prompt_async(&self, id: &str, body: &Value) -> Result<(), RunError> {
        let req = self.request(Method::POST, &format!("/session/{id}/prompt_async")).json(body);
        self.send_expecting_success(req, "follow-up").await
    }

    /// The session's messages, oldest first.
    pub async fn messages(&self, id: &str) -> Result<Vec<Message>, RunError> {
        self.send(self.request(Method::GET, &format!("/session/{id}/message")), "message listing").await
    }

    pub async fn abort(&self, id: &str) {
        let req = self.request(Method::POST, &format!("/session/{id}/abort"));
        if let Err(e) = req.send().await {
            tracing::warn!(session = id, error = %e, "could not abort session");
        }
    }

    pub async fn delete(&self, id: &str) -> Result<(), RunError> {
        let resp = self
            .request(Method::DELETE, &format!("/session/{id}"))
            .send()
            .await
            .map_err(|e| RunError::infra(format!("opencode server unreachable: {e}")))?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(RunError::infra(format!("opencode session deletion answered {s}"))),
        }
    }

    pub async fn statuses(&self) -> Result<HashMap<String, SessionStatus>, RunError> {
        self.send(self.request(Method::GET, "/session/status"), "status").await
    }

    pub async fn permissions(&self) -> Result<Vec<PendingRequest>, RunError> {
        self.send(self.request(Method::GET, "/permission"), "permission listing").await
    }

    /// Answers a permission request: `once`, `always` or `reject` (with the
    /// reason the agent is told).
    pub async fn reply_permission(&self, id: &str, reply: &str, message: Option<&str>) -> Result<(), RunError> {
        let mut body = json!({ "reply": reply });
        if let Some(message) = message {
            body["message"] = json!(message);
        }
        let req = self.request(Method::POST, &format!("/permission/{id}/reply")).json(&body).timeout(REPLY_TIMEOUT);
        self.send_expecting_success(req, "permission reply").await
    }

    pub async fn reject_permission(&self, id: &str, why: &str) -> Result<(), RunError> {
        self.reply_permission(id, "reject", Some(why)).await
    }

    pub async fn questions(&self) -> Result<Vec<PendingRequest>, RunError> {
        self.send(self.request(Method::GET, "/question"), "question listing").await
    }

    pub async fn reject_question(&self, id: &str) -> Result<(), RunError> {
        let req = self.request(Method::POST, &format!("/question/{id}/reject")).timeout(REPLY_TIMEOUT);
        self.send_expecting_success(req, "question reply").await
    }

    /// Answers a question: per question asked, the chosen labels or free text.
    pub async fn answer_question(&self, id: &str, answers: &[Vec<String>]) -> Result<(), RunError> {
        let req = self
            .request(Method::POST, &format!("/question/{id}/reply"))
            .json(&json!({ "answers": answers }))
            .timeout(REPLY_TIMEOUT);
        self.send_expecting_success(req, "question reply").await
    }

    /// The session as `opencode export` writes it: `{info, messages: [{info, parts}]}`,
    /// which `opencode import` reads back.
    pub async fn export(&self, id: &str) -> Result<String, RunError> {
        let info: Value =
            self.send(self.request(Method::GET, &format!("/session/{id}")), "reading the session").await?;
        let messages: Vec<Value> = self
            .send(self.request(Method::GET, &format!("/session/{id}/message")), "reading the session's messages")
            .await?;
        let messages: Vec<Value> =
            messages.into_iter().map(|m| serde_json::json!({ "info": m["info"], "parts": m["parts"] })).collect();
        Ok(serde_json::json!({ "info": info, "messages": messages }).to_string())
    }

    /// The server's event stream for the checkout, for debug logs.
    pub async fn events(&self) -> Result<reqwest::Response, RunError> {
        self.request(Method::GET, "/event")
            .send()
            .await
            .map_err(|e| RunError::infra(format!("cannot subscribe to opencode events: {e}")))
    }
}
