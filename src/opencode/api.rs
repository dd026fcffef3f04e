//! A typed client for the parts of `opencode serve`'s HTTP API that kugetsu uses.

use std::collections::HashMap;
use std::path::Path;

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{RunError, SessionInfo};
use crate::result::Tokens;

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    password: SecretString,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct SessionCounters {
    #[serde(default)]
    pub cost: f64,
    #[serde(default)]
    pub tokens: WireTokens,
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

    /// The error opencode attached to the message, if the turn failed.
    pub fn error(&self) -> Option<String> {
        let err = self.info.get("error")?;
        let message = err["data"]["message"].as_str().or_else(|| err["name"].as_str());
        Some(message.unwrap_or("unknown error").to_owned())
    }
}

impl Api {
    pub fn new(http: reqwest::Client, base: String, password: SecretString) -> Self {
        Self { http, base, password }
    }

    fn request(&self, method: Method, path: &str, dir: Option<&Path>) -> RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth("opencode", Some(self.password.expose_secret()));
        if let Some(dir) = dir {
            req = req.query(&[("directory", dir.to_string_lossy())]);
        }
        req
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
        let req = self.request(Method::GET, "/global/health", None);
        matches!(req.send().await, Ok(r) if r.status().is_success())
    }

    pub async fn create_session(&self, dir: &Path, title: &str) -> Result<SessionInfo, RunError> {
        let req = self.request(Method::POST, "/session", Some(dir)).json(&json!({ "title": title }));
        self.send(req, "session creation").await
    }

    /// Forks `base` and re-roots the copy in `dir`: a fork keeps its parent's
    /// directory, and the agent would otherwise work in the base checkout.
    pub async fn fork_into(&self, base: &str, dir: &Path, base_dir: &Path) -> Result<SessionInfo, RunError> {
        let req = self.request(Method::POST, &format!("/session/{base}/fork"), Some(base_dir)).json(&json!({}));
        let fork: SessionInfo = self.send(req, "session fork").await?;
        let req = self
            .request(Method::POST, "/experimental/control-plane/move-session", None)
            .json(&json!({ "sessionID": fork.id, "destination": { "directory": dir } }));
        self.send_expecting_success(req, "session move").await.map_err(|e| e.in_session(&fork.id))?;
        Ok(fork)
    }

    pub async fn session(&self, id: &str, dir: &Path) -> Result<Option<SessionCounters>, RunError> {
        let resp = self
            .request(Method::GET, &format!("/session/{id}"), Some(dir))
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

    pub async fn sessions(&self, dir: &Path) -> Result<Vec<SessionInfo>, RunError> {
        self.send(self.request(Method::GET, "/session", Some(dir)), "session listing").await
    }

    pub async fn prompt(&self, id: &str, dir: &Path, body: &Value) -> Result<Message, RunError> {
        let req = self.request(Method::POST, &format!("/session/{id}/message"), Some(dir)).json(body);
        self.send(req, "prompt").await
    }

    pub async fn abort(&self, id: &str, dir: &Path) {
        let req = self.request(Method::POST, &format!("/session/{id}/abort"), Some(dir));
        if let Err(e) = req.send().await {
            tracing::warn!(session = id, error = %e, "could not abort session");
        }
    }

    pub async fn delete(&self, id: &str, dir: &Path) -> Result<(), RunError> {
        let resp = self
            .request(Method::DELETE, &format!("/session/{id}"), Some(dir))
            .send()
            .await
            .map_err(|e| RunError::infra(format!("opencode server unreachable: {e}")))?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(RunError::infra(format!("opencode session deletion answered {s}"))),
        }
    }

    pub async fn statuses(&self, dir: &Path) -> Result<HashMap<String, SessionStatus>, RunError> {
        self.send(self.request(Method::GET, "/session/status", Some(dir)), "status").await
    }

    pub async fn permissions(&self, dir: &Path) -> Result<Vec<PendingRequest>, RunError> {
        self.send(self.request(Method::GET, "/permission", Some(dir)), "permission listing").await
    }

    pub async fn reject_permission(&self, id: &str, dir: &Path, why: &str) -> Result<(), RunError> {
        let req = self
            .request(Method::POST, &format!("/permission/{id}/reply"), Some(dir))
            .json(&json!({ "reply": "reject", "message": why }));
        self.send_expecting_success(req, "permission reply").await
    }

    pub async fn questions(&self, dir: &Path) -> Result<Vec<PendingRequest>, RunError> {
        self.send(self.request(Method::GET, "/question", Some(dir)), "question listing").await
    }

    pub async fn reject_question(&self, id: &str, dir: &Path) -> Result<(), RunError> {
        let req = self.request(Method::POST, &format!("/question/{id}/reject"), Some(dir));
        self.send_expecting_success(req, "question reply").await
    }

    /// The server's event stream for `dir`, for debug logs.
    pub async fn events(&self, dir: &Path) -> Result<reqwest::Response, RunError> {
        self.request(Method::GET, "/event", Some(dir))
            .send()
            .await
            .map_err(|e| RunError::infra(format!("cannot subscribe to opencode events: {e}")))
    }
}
