//! A scripted OpenAI-compatible model server for opencode to talk to.
//!
//! A test registers rules: "when the latest user message contains MARKER, play
//! these steps". Step N answers the request that follows N tool results, so
//! `[Bash(cmd), Answer(text)]` makes the agent run `cmd` and then answer `text`.
//! Every request is recorded so tests can assert what the model saw.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub enum Step {
    /// Call the `bash` tool with this command.
    Bash(String),
    /// Call any tool by name with these arguments.
    Tool(&'static str, Value),
    /// Answer with this text and end the turn.
    Answer(String),
    /// Fail the request with this HTTP status.
    Error(u16),
    /// Never answer.
    Hang,
    /// Answer with the inner step, but only after this long (a slow model call).
    After(Duration, Box<Step>),
}

#[derive(Default)]
struct Script {
    rules: Vec<(String, Vec<Step>)>,
    requests: Vec<Value>,
    /// When each of `requests` arrived.
    arrivals: Vec<Instant>,
}

#[derive(Clone)]
pub struct FakeModel {
    port: u16,
    script: Arc<Mutex<Script>>,
}

impl FakeModel {
    pub async fn start() -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/v1/models", get(|| async { axum::Json(json!({ "object": "list", "data": [] })) }))
            .with_state(script.clone());
        let port = super::serve_on_loopback(app, "fake model").await;
        Self { port, script }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Plays `steps` for prompts whose latest user message contains `marker`.
    /// Later rules for the same marker replace earlier ones.
    pub fn on(&self, marker: &str, steps: Vec<Step>) {
        let mut script = self.script.lock().unwrap();
        script.rules.retain(|(m, _)| m != marker);
        script.rules.push((marker.to_owned(), steps));
    }

    pub fn requests(&self) -> Vec<Value> {
        self.script.lock().unwrap().requests.clone()
    }

    /// Requests whose latest user message contains `marker`.
    pub fn requests_for(&self, marker: &str) -> Vec<Value> {
        self.requests().into_iter().filter(|r| latest_user_text(r).contains(marker)).collect()
    }

    /// When each request for `marker` arrived, in order.
    pub fn arrivals_for(&self, marker: &str) -> Vec<Instant> {
        let script = self.script.lock().unwrap();
        script
            .requests
            .iter()
            .zip(&script.arrivals)
            .filter(|(r, _)| latest_user_text(r).contains(marker))
            .map(|(_, at)| *at)
            .collect()
    }

    /// Waits until a request for `marker` has arrived.
    pub async fn wait_for_request(&self, marker: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.requests_for(marker).is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the model never saw a request for {marker}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every message's text in one string, for "did the model see X" assertions.
pub fn transcript(request: &Value) -> String {
    request["messages"]
        .as_array()
        .map(|msgs| msgs.iter().map(message_text).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn message_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

fn latest_user_text(request: &Value) -> String {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    messages.iter().rev().find(|m| m["role"] == "user").map(message_text).unwrap_or_default()
}

fn tool_results_since_user(request: &Value) -> usize {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    messages.iter().rev().take_while(|m| m["role"] != "user").filter(|m| m["role"] == "tool").count()
}

async fn complete(State(script): State<Arc<Mutex<Script>>>, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let step = {
        let mut script = script.lock().unwrap();
        script.requests.push(request.clone());
        script.arrivals.push(Instant::now());
        let text = latest_user_text(&request);
        let steps =
            script.rules.iter().rev().find(|(marker, _)| text.contains(marker.as_str())).map(|(_, s)| s.clone());
        match steps {
            Some(steps) if !steps.is_empty() => {
                let i = tool_results_since_user(&request).min(steps.len() - 1);
                steps[i].clone()
            }
            _ => Step::Answer("ok".into()),
        }
    };
    play(step).await
}

async fn play(step: Step) -> Response {
    match step {
        Step::After(wait, step) => {
            tokio::time::sleep(wait).await;
            Box::pin(play(*step)).await
        }
        Step::Bash(command) => {
            Box::pin(play(Step::Tool("bash", json!({ "command": command, "description": "scripted command" })))).await
        }
        Step::Tool(name, args) => {
            let call = json!({ "role": "assistant", "tool_calls": [{ "index": 0, "id": format!("call_{}", rand_id()), "type": "function", "function": { "name": name, "arguments": args.to_string() } }] });
            sse(vec![chunk(call, None), chunk(json!({}), Some("tool_calls"))])
        }
        Step::Answer(text) => {
            sse(vec![chunk(json!({ "role": "assistant", "content": text }), None), chunk(json!({}), Some("stop"))])
        }
        Step::Error(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, axum::Json(json!({ "error": { "message": "scripted model failure", "type": "server_error" } })))
                .into_response()
        }
        Step::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    let mut c = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "mock-model",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
    });
    if finish.is_some() {
        c["usage"] = json!({ "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18 });
    }
    c
}

fn sse(chunks: Vec<Value>) -> Response {
    let mut body = String::new();
    for c in chunks {
        body.push_str(&format!("data: {c}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
