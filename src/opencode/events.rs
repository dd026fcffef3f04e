//! A run's view of opencode's event stream: the session's debug log, written as
//! it comes, and what the agent is doing, told to whoever shows its progress.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::api::Api;
use super::append_debug;
use crate::result::Tokens;

/// How long a debug log may take to catch up with a finished turn.
pub const DEBUG_DRAIN: Duration = Duration::from_secs(2);
/// The longest tool title or todo kept; the rest is the agent's to say in its answer.
const MAX_TEXT: usize = 120;

/// What the agent is doing, as opencode tells it.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The prompt is in: the agent is at work.
    Started,
    /// A tool call, each time its state changes.
    Tool { call: String, tool: String, title: String, status: ToolStatus },
    /// The agent's todo list, whole, each time it changes.
    Todos(Vec<Todo>),
    /// One step (a model call) is over, and this is what it cost.
    Spent { tokens: Tokens, cost: f64 },
    /// The run waits for a person's answer to this (in one line), or, `None`, no longer.
    Waiting(Option<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Todo {
    pub content: String,
    /// opencode's: `pending`, `in_progress`, `completed` or `cancelled`.
    pub status: String,
}

/// Where a run's events go.
pub struct Watchers<'a> {
    pub debug_dir: Option<&'a Path>,
    pub progress: Option<UnboundedSender<AgentEvent>>,
}

/// A server's event stream, read from the moment the server is up: a run
/// listens before its prompt is sent, so it misses nothing of its turn, and
/// pays nothing for connecting (opencode takes ~15 ms to open a stream).
pub struct Feed {
    /// `None` once the stream has ended.
    listeners: Arc<Mutex<Option<Vec<Listener>>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Feed {
    /// The server's stream, once opencode's first event (`server.connected`) says it is live.
    pub async fn open(api: &Api) -> Option<Feed> {
        // Opened under the server's lock: a server that does not answer must not hold its runs.
        let resp = tokio::time::timeout(DEBUG_DRAIN, api.events()).await.ok()?.ok()?;
        let mut stream: EventStream = Box::pin(resp.bytes_stream().map(|chunk| chunk.map(|b| b.to_vec())));
        let first = tokio::time::timeout(DEBUG_DRAIN, stream.next()).await.ok().flatten()?.ok()?;
        let listeners = Arc::new(Mutex::new(Some(Vec::new())));
        let reader = tokio::spawn(read_feed(first, stream, listeners.clone()));
        Some(Feed { listeners, reader })
    }

    /// Every event's data from now on, or `None` if the stream has ended.
    pub fn listen(&self) -> Option<UnboundedReceiver<Arc<str>>> {
        let mut listeners = self.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        listeners.as_mut()?.push(tx);
        Some(rx)
    }

    pub fn ended(&self) -> bool {
        self.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_none()
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The stream's chunks (SSE is UTF-8, but a chunk may end inside a character).
type EventStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

async fn read_feed(mut pending: Vec<u8>, mut stream: EventStream, listeners: Arc<Mutex<Option<Vec<Listener>>>>) {
    loop {
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data: ") else { continue };
            let data: Arc<str> = data.into();
            let mut guard = listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(all) = guard.as_mut() {
                all.retain(|listener| listener.send(data.clone()).is_ok());
            }
        }
        match stream.next().await {
            Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
            _ => break,
        }
    }
    // Listeners then see their stream end.
    listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
}

type Listener = UnboundedSender<Arc<str>>;

/// Follows `session`'s turn on the server's `feed`, in the background until the
/// session is idle. Called before the prompt is sent, so nothing of the turn is missed.
pub fn subscribe(feed: Option<&Feed>, session: &str, watchers: Watchers<'_>) -> Option<tokio::task::JoinHandle<()>> {
    if watchers.debug_dir.is_none() && watchers.progress.is_none() {
        return None;
    }
    let Some(mut events) = feed.and_then(Feed::listen) else {
        // Nothing then shows the run's progress, and budgets see only its end.
        tracing::warn!(session, "no event stream for this run: its progress and spending are not followed");
        return None;
    };
    let debug_dir: Option<PathBuf> = watchers.debug_dir.map(Path::to_owned);
    let (progress, session) = (watchers.progress, session.to_owned());
    Some(tokio::spawn(async move {
        // The run's session, and the subagent sessions it starts (the `task`
        // tool): what they spend is the run's too.
        let mut family: HashSet<String> = HashSet::from([session.clone()]);
        while let Some(data) = events.recv().await {
            append_debug(debug_dir.as_deref(), &session, &data);
            let Ok(event) = serde_json::from_str::<Value>(&data) else { continue };
            adopt_child(&event, &mut family);
            if let (Some(progress), Some(told)) = (&progress, agent_event(&event, &session, &family)) {
                // The progress side may be gone (a stopped run); the log goes on.
                let _ = progress.send(told);
            }
            if is_idle(&event, &session) {
                return;
            }
        }
    }))
}

/// A session started by one of `family` (`session.created`, whose `info`
/// names its parent) joins it.
fn adopt_child(event: &Value, family: &mut HashSet<String>) {
    if event["type"] != "session.created" {
        return;
    }
    let info = &event["properties"]["info"];
    if let (Some(id), Some(parent)) = (info["id"].as_str(), info["parentID"].as_str())
        && family.contains(parent)
    {
        family.insert(id.to_owned());
    }
}

/// Whether an event says `session` has gone idle: its turn's last events are out.
fn is_idle(event: &Value, session: &str) -> bool {
    let properties = &event["properties"];
    let idle = match event["type"].as_str() {
        Some("session.idle") => true,
        Some("session.status") => properties["status"]["type"] == "idle",
        _ => false,
    };
    idle && properties["sessionID"] == session
}

/// The progress in one event of `session`: a tool part's new state
/// (`message.part.updated`) or the todo list (`todo.updated`); and what a step
/// of the session or of its subagents (`family`) cost.
fn agent_event(event: &Value, session: &str, family: &HashSet<String>) -> Option<AgentEvent> {
    let properties = &event["properties"];
    match event["type"].as_str()? {
        "message.part.updated" => {
            let part = &properties["part"];
            let of = part["sessionID"].as_str()?;
            if part["type"] == "step-finish" && family.contains(of) {
                return Some(step_spend(part));
            }
            if of != session || part["type"] != "tool" {
                return None;
            }
            let state = &part["state"];
            let status = match state["status"].as_str()? {
                "pending" => ToolStatus::Pending,
                "running" => ToolStatus::Running,
                "completed" => ToolStatus::Completed,
                "error" => ToolStatus::Failed,
                _ => return None,
            };
            let input = &state["input"];
            let title =
                [&state["title"], &input["description"], &input["command"], &input["filePath"], &input["pattern"]]
                    .into_iter()
                    .find_map(|v| v.as_str().filter(|t| !t.trim().is_empty()))
                    .unwrap_or_default();
            Some(AgentEvent::Tool {
                call: part["callID"].as_str().or(part["id"].as_str())?.to_owned(),
                tool: clip(part["tool"].as_str()?),
                title: clip(title),
                status,
            })
        }
        "todo.updated" if properties["sessionID"] == session => {
            let todos = properties["todos"].as_array()?;
            Some(AgentEvent::Todos(
                todos
                    .iter()
                    .filter_map(|t| {
                        Some(Todo { content: clip(t["content"].as_str()?), status: clip(t["status"].as_str()?) })
                    })
                    .collect(),
            ))
        }
        _ => None,
    }
}

/// A `StepFinishPart`'s `cost` (USD) and `tokens` (opencode's OpenAPI schema).
fn step_spend(part: &Value) -> AgentEvent {
    let tokens = &part["tokens"];
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    AgentEvent::Spent {
        tokens: Tokens {
            input: count(&tokens["input"]),
            output: count(&tokens["output"]),
            reasoning: count(&tokens["reasoning"]),
            cache_read: count(&tokens["cache"]["read"]),
            cache_write: count(&tokens["cache"]["write"]),
        },
        cost: part["cost"].as_f64().filter(|c| c.is_finite() && *c >= 0.0).unwrap_or(0.0),
    }
}

/// One line of at most [`MAX_TEXT`] characters.
fn clip(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX_TEXT) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_parts_and_todos_of_the_session_are_told_and_others_not() {
        let tool = json!({ "type": "message.part.updated", "properties": { "part": {
            "id": "prt_1", "sessionID": "ses_a", "type": "tool", "callID": "call_1", "tool": "bash",
            "state": { "status": "running", "input": { "command": "cargo   test\n--all" } } } } });
        assert_eq!(
            agent_event(&tool, "ses_a", &fam("ses_a")),
            Some(AgentEvent::Tool {
                call: "call_1".into(),
                tool: "bash".into(),
                title: "cargo test --all".into(),
                status: ToolStatus::Running
            })
        );
        assert_eq!(agent_event(&tool, "ses_b", &fam("ses_b")), None, "another session's tool");
        let text = json!({ "type": "message.part.updated", "properties": { "part": {
            "sessionID": "ses_a", "type": "text", "text": "hi" } } });
        assert_eq!(agent_event(&text, "ses_a", &fam("ses_a")), None);
        let todos = json!({ "type": "todo.updated", "properties": { "sessionID": "ses_a", "todos": [
            { "content": "read", "status": "completed", "priority": "high" },
            { "content": "x".repeat(500), "status": "pending", "priority": "low" } ] } });
        let Some(AgentEvent::Todos(told)) = agent_event(&todos, "ses_a", &fam("ses_a")) else { panic!("no todos") };
        assert_eq!(told[0], Todo { content: "read".into(), status: "completed".into() });
        assert_eq!(told[1].content.chars().count(), MAX_TEXT + 1, "clipped, with an ellipsis");
        assert_eq!(agent_event(&todos, "ses_b", &fam("ses_b")), None);
        let step = json!({ "type": "message.part.updated", "properties": { "part": {
            "sessionID": "ses_a", "type": "step-finish", "reason": "stop", "cost": 0.25,
            "tokens": { "input": 11, "output": 7, "reasoning": 2, "cache": { "read": 100, "write": 0 } } } } });
        let Some(AgentEvent::Spent { tokens, cost }) = agent_event(&step, "ses_a", &fam("ses_a")) else {
            panic!("no spend")
        };
        assert_eq!((tokens.input, tokens.output, tokens.reasoning, tokens.cache_read, cost), (11, 7, 2, 100, 0.25));
        let hostile = json!({ "type": "message.part.updated", "properties": { "part": {
            "sessionID": "ses_a", "type": "step-finish", "cost": -5.0, "tokens": {} } } });
        assert!(matches!(agent_event(&hostile, "ses_a", &fam("ses_a")), Some(AgentEvent::Spent { cost: 0.0, .. })));
    }

    fn fam(root: &str) -> HashSet<String> {
        HashSet::from([root.to_owned()])
    }

    #[test]
    fn a_subagents_steps_count_once_its_session_is_known_and_its_tools_do_not_show() {
        let mut family = fam("ses_a");
        let child =
            json!({ "type": "session.created", "properties": { "info": { "id": "ses_c", "parentID": "ses_a" } } });
        let stranger =
            json!({ "type": "session.created", "properties": { "info": { "id": "ses_x", "parentID": "ses_z" } } });
        let step = |of: &str| {
            json!({ "type": "message.part.updated", "properties": { "part": {
            "sessionID": of, "type": "step-finish", "cost": 1.0, "tokens": { "input": 1 } } } })
        };
        assert_eq!(agent_event(&step("ses_c"), "ses_a", &family), None, "not yet known");
        adopt_child(&child, &mut family);
        adopt_child(&stranger, &mut family);
        assert!(matches!(agent_event(&step("ses_c"), "ses_a", &family), Some(AgentEvent::Spent { .. })));
        assert_eq!(agent_event(&step("ses_x"), "ses_a", &family), None, "another session's child");
        let tool = json!({ "type": "message.part.updated", "properties": { "part": {
            "sessionID": "ses_c", "type": "tool", "callID": "c", "tool": "bash", "state": { "status": "running" } } } });
        assert_eq!(agent_event(&tool, "ses_a", &family), None, "the progress comment shows the run's own tools");
    }

    #[tokio::test]
    async fn the_feed_hands_each_listener_whole_lines_and_ends_with_its_stream() {
        let line = "data: {\"type\":\"todo.updated\",\"text\":\"café\"}\n\n".as_bytes();
        // Cut inside the two bytes of `é`, as a network chunk may be.
        let cut = line.iter().position(|b| *b == 0xc3).expect("é") + 1;
        let chunks: Vec<reqwest::Result<Vec<u8>>> =
            vec![Ok(line[..cut].to_vec()), Ok(line[cut..].to_vec()), Ok(b": heartbeat\n".to_vec())];
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (gone, gone_rx) = tokio::sync::mpsc::unbounded_channel();
        drop(gone_rx);
        let listeners = Arc::new(Mutex::new(Some(vec![tx, gone])));
        read_feed(
            b"data: {\"type\":\"server.connected\"}\n\n".to_vec(),
            Box::pin(futures_util::stream::iter(chunks)),
            listeners.clone(),
        )
        .await;
        assert_eq!(rx.recv().await.as_deref(), Some("{\"type\":\"server.connected\"}"));
        assert_eq!(rx.recv().await.as_deref(), Some("{\"type\":\"todo.updated\",\"text\":\"café\"}"));
        assert_eq!(rx.recv().await, None, "the stream ended, and so did the listener's");
        assert!(listeners.lock().unwrap().is_none(), "later listeners are told there is no stream");
    }

    #[test]
    fn idle_is_the_sessions_own() {
        let idle =
            json!({ "type": "session.status", "properties": { "sessionID": "ses_a", "status": { "type": "idle" } } });
        assert!(is_idle(&idle, "ses_a"));
        assert!(!is_idle(&idle, "ses_b"));
        let busy =
            json!({ "type": "session.status", "properties": { "sessionID": "ses_a", "status": { "type": "busy" } } });
        assert!(!is_idle(&busy, "ses_a"));
    }
}
