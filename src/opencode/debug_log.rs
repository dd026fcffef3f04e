//! A run's debug log: opencode's event stream for the session, written as it comes.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use super::api::Api;
use super::append_debug;

/// How long a debug log may take to catch up with a finished turn.
pub const DEBUG_DRAIN: Duration = Duration::from_secs(2);

/// Subscribes to opencode's events before the prompt is sent, so the log misses
/// nothing of the turn, and logs them in the background until the session is idle.
pub async fn subscribe_debug_log(api: &Api, debug_dir: &Path, session: &str) -> Option<tokio::task::JoinHandle<()>> {
    let resp = api.events().await.ok()?;
    let mut stream = Box::pin(resp.bytes_stream());
    // opencode's first event (`server.connected`) says the subscription is live.
    let first = tokio::time::timeout(DEBUG_DRAIN, stream.next()).await.ok().flatten()?.ok()?;
    let (debug_dir, session) = (debug_dir.to_owned(), session.to_owned());
    Some(tokio::spawn(async move {
        let mut pending = String::from_utf8_lossy(&first).into_owned();
        loop {
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                if let Some(data) = line.trim_end().strip_prefix("data: ") {
                    append_debug(Some(&debug_dir), &session, data);
                    if is_idle_event(data, &session) {
                        return;
                    }
                }
            }
            match stream.next().await {
                Some(Ok(chunk)) => pending.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return,
            }
        }
    }))
}

/// Whether an event says `session` has gone idle: its turn's last events are out.
fn is_idle_event(data: &str, session: &str) -> bool {
    let Ok(event) = serde_json::from_str::<Value>(data) else { return false };
    let properties = &event["properties"];
    let idle = match event["type"].as_str() {
        Some("session.idle") => true,
        Some("session.status") => properties["status"]["type"] == "idle",
        _ => false,
    };
    idle && properties["sessionID"] == session
}
