//! Warming up a checkout's opencode before any issue needs it.
//!
//! opencode pays for the first prompt of a process and of a directory: about
//! 1.3 s of loading before its prompt loop starts, then the directory's file
//! watcher and project copy. Measured with 1.18.33 on a warm server: 2.3 s from
//! the prompt to the model's first request, against 0.1 s for the next prompt.
//! Nothing short of a prompt pays it: creating a session, listing the config,
//! agents, tools or providers, or a `noReply` message still left 1.2–1.4 s.
//!
//! So a ready checkout's opencode gets one prompt, sent to a model kugetsu serves
//! itself on loopback, which refuses it at once: no provider is called and no
//! token is spent.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::api::Api;
use super::{HEADLESS_CONFIG, RunError, SESSION_TITLE_PREFIX};

/// The provider and model of the warm-up prompt, as opencode's config names them.
const PROVIDER: &str = "kugetsu-warmup";
const MODEL: &str = "refuses";

/// What the warm-up model answers every request with. OpenAI's error shape; a
/// 400 is not retried (only 408, 409, 429 and 5xx are), so the turn ends at once.
const REFUSAL: &str =
    r#"{"error":{"message":"kugetsu's warm-up model answers nothing","type":"invalid_request_error"}}"#;

/// Agents share the host's network, so they can reach this endpoint too: it
/// holds few connections, each briefly, and a flood only slows warm-ups down.
const BOUNDS: crate::webhook::Bounds = crate::webhook::Bounds {
    header_timeout: Duration::from_secs(2),
    connection_timeout: Duration::from_secs(10),
    max_connections: 16,
};

/// Tools the warm-up prompt may not use, should anything but the refusal answer it.
const NO_TOOLS: &[&str] = &["bash", "edit", "write", "patch", "read", "grep", "glob", "list", "webfetch", "task"];

/// A loopback endpoint in OpenAI's chat-completions shape that refuses everything.
pub struct WarmupModel {
    config: String,
    /// Held for the endpoint's life: dropped, it stops.
    _running: tokio::sync::watch::Sender<bool>,
}

impl WarmupModel {
    pub async fn start() -> Result<Self, RunError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| RunError::infra(format!("cannot listen for opencode's warm-up model: {e}")))?;
        let addr = listener.local_addr().map_err(|e| RunError::infra(format!("warm-up model address: {e}")))?;
        let app = Router::new().fallback(|| async { (StatusCode::BAD_REQUEST, REFUSAL) });
        let (running, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(crate::webhook::serve(listener, app, BOUNDS, stopped));
        Ok(Self { config: config_with_provider(addr), _running: running })
    }

    /// `OPENCODE_CONFIG_CONTENT` for servers that may be warmed up: kugetsu's
    /// headless config, plus this model.
    pub fn config(&self) -> &str {
        &self.config
    }
}

fn config_with_provider(addr: SocketAddr) -> String {
    let mut config: Value = serde_json::from_str(HEADLESS_CONFIG).unwrap_or_else(|_| json!({}));
    config["provider"] = json!({ PROVIDER: {
        "npm": "@ai-sdk/openai-compatible",
        "name": "kugetsu warm-up",
        "options": { "baseURL": format!("http://{addr}/v1"), "apiKey": "none" },
        "models": { MODEL: { "name": "refuses everything" } }
    }});
    config.to_string()
}

/// Runs one prompt against the warm-up model in a session of its own, then
/// deletes that session.
pub async fn warm_up(api: &Api, agent: Option<&str>) -> Result<(), RunError> {
    let session = api.create_session(&format!("{SESSION_TITLE_PREFIX}warm-up")).await?;
    let mut body = json!({
        "parts": [{ "type": "text", "text": "kugetsu is warming this server up." }],
        "model": { "providerID": PROVIDER, "modelID": MODEL },
        "tools": NO_TOOLS.iter().map(|tool| ((*tool).to_owned(), Value::Bool(false))).collect::<serde_json::Map<_, _>>(),
    });
    if let Some(agent) = agent {
        body["agent"] = json!(agent);
    }
    let answered = api.prompt(&session.id, &body).await;
    let deleted = api.delete(&session.id).await;
    answered?;
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_warm_up_model_refuses_at_once_and_is_in_the_headless_config() {
        let model = WarmupModel::start().await.unwrap();
        let config: Value = serde_json::from_str(model.config()).unwrap();
        let headless: Value = serde_json::from_str(HEADLESS_CONFIG).unwrap();
        assert_eq!(config["snapshot"], headless["snapshot"], "{config}");
        let base = config["provider"][PROVIDER]["options"]["baseURL"].as_str().unwrap().to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        let resp = reqwest::Client::new()
            .post(format!("{base}/chat/completions"))
            .json(&json!({ "model": MODEL, "stream": true, "messages": [] }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(resp.text().await.unwrap().contains("warm-up"));
    }
}
