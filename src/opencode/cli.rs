//! The fallback driver: one `opencode run --format json` process per prompt.

use std::path::Path;
use std::process::Stdio;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::jail::Jails;
use super::process::{ProcessGroup, die_with_parent};
use super::{
    AgentReply, Driver, FailureKind, OpencodeEnv, Prompt, RunError, SessionInfo, SessionTarget, append_debug,
    spawn_error,
};
use crate::config::OpencodeSettings;
use crate::result::Tokens;

pub struct CliDriver {
    settings: OpencodeSettings,
    env: OpencodeEnv,
    jails: Jails,
}

/// What one run's JSON event stream told us.
#[derive(Default)]
struct RunLog {
    session_id: Option<String>,
    last_message: Option<String>,
    texts: Vec<(String, String)>,
    tokens: Tokens,
    cost: f64,
    error: Option<String>,
}

impl RunLog {
    fn absorb(&mut self, event: &Value) {
        if let Some(id) = event["sessionID"].as_str() {
            self.session_id.get_or_insert_with(|| id.to_owned());
        }
        let part = &event["part"];
        match event["type"].as_str() {
            Some("text") => {
                let message = part["messageID"].as_str().unwrap_or_default().to_owned();
                self.last_message = Some(message.clone());
                self.texts.push((message, part["text"].as_str().unwrap_or_default().to_owned()));
            }
            Some("step_finish") => {
                let t = &part["tokens"];
                let n = |v: &Value| v.as_u64().unwrap_or(0);
                self.tokens.input += n(&t["input"]);
                self.tokens.output += n(&t["output"]);
                self.tokens.reasoning += n(&t["reasoning"]);
                self.tokens.cache_read += n(&t["cache"]["read"]);
                self.tokens.cache_write += n(&t["cache"]["write"]);
                self.cost += part["cost"].as_f64().unwrap_or(0.0);
            }
            Some("error") => {
                let e = &event["error"];
                let msg = e["data"]["message"].as_str().or_else(|| e["name"].as_str()).unwrap_or("unknown error");
                self.error = Some(msg.to_owned());
            }
            _ => {}
        }
    }

    /// opencode's log names the session even when the run fails before any event.
    fn note_log_line(&mut self, line: &str) {
        if self.session_id.is_some() {
            return;
        }
        let id = line.split_whitespace().find_map(|field| field.strip_prefix("session.id="));
        if let Some(id) = id.filter(|id| id.starts_with("ses_")) {
            self.session_id = Some(id.trim_matches('"').to_owned());
        }
    }

    /// The text of the agent's last message: its final answer.
    fn answer(&self) -> String {
        let last = self.last_message.as_deref().unwrap_or_default();
        let texts: Vec<&str> = self.texts.iter().filter(|(m, _)| m == last).map(|(_, t)| t.as_str()).collect();
        texts.join("\n").trim().to_owned()
    }
}

/// A model failure in opencode's log (not the side call that titles a session).
fn model_failure(log_line: &str) -> Option<String> {
    if !log_line.contains("level=ERROR") || !log_line.contains("stream error") || log_line.contains("agent=title") {
        return None;
    }
    let at = log_line.find("error.error=")?;
    Some(log_line[at + "error.error=".len()..].trim_matches('"').to_owned())
}

impl CliDriver {
    pub fn new(settings: OpencodeSettings, env: OpencodeEnv, jails: Jails) -> Self {
        Self { settings, env, jails }
    }

    /// The newest session with this title: a run stopped before printing any event
    /// has still created its session, and the next run should continue it.
    async fn find_session_by_title(&self, dir: &Path, title: &str) -> Option<String> {
        let sessions = self.list_sessions(dir).await.ok()?;
        sessions.into_iter().filter(|s| s.title == title).max_by_key(|s| s.created).map(|s| s.id)
    }

    async fn command(&self, dir: &Path) -> Result<Command, RunError> {
        self.jails.ensure_ready(&self.settings.binary, &self.env, self.settings.startup_timeout).await;
        let mut cmd = self.jails.opencode(&self.settings.binary, &self.env, dir)?;
        cmd.stdin(Stdio::null()).process_group(0).kill_on_drop(true);
        die_with_parent(&mut cmd);
        Ok(cmd)
    }

    async fn run_prompt(&self, prompt: &Prompt<'_>, text: &str) -> Result<AgentReply, RunError> {
        let mut cmd = self.command(prompt.dir).await?;
        cmd.args(["run", "--format", "json", "--print-logs", "--log-level", "WARN"]);
        match prompt.target {
            SessionTarget::New { title } => cmd.args(["--title", title]),
            SessionTarget::Existing(id) => cmd.args(["--session", id]),
            SessionTarget::ForkOf { .. } => {
                return Err(RunError::new(
                    FailureKind::Unsupported,
                    "the CLI driver cannot fork a base session: `opencode run --fork` from a worktree works in the \
                     base checkout and never exits. Use the server driver, or remove the base session with \
                     `kugetsu destroy --base`",
                ));
            }
        };
        if let Some(model) = &self.settings.model {
            cmd.args(["--model", model]);
        }
        if let Some(agent) = &self.settings.agent {
            cmd.args(["--agent", agent]);
        }
        // The message goes in on stdin: opencode re-quotes arguments, and a message
        // starting with `-` would be taken for an option.
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error(&self.settings.binary, &e))?;
        let mut group = ProcessGroup::of(&child);
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(text.as_bytes()).await;
        }
        let stdout = child.stdout.take().ok_or_else(|| RunError::infra("opencode run has no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| RunError::infra("opencode run has no stderr"))?;
        let mut events = BufReader::new(stdout).lines();
        let mut logs = BufReader::new(stderr).lines();
        let mut log = RunLog::default();
        let mut failures = 0u32;
        let deadline = tokio::time::sleep(prompt.timeout);
        tokio::pin!(deadline);
        let mut logs_open = true;
        let mut announced = false;
        let outcome: Result<(), RunError> = loop {
            if !announced && let (Some(id), Some(started)) = (&log.session_id, &prompt.started) {
                let _ = started.send(id.clone());
                announced = true;
            }
            tokio::select! {
                line = events.next_line() => match line {
                    Ok(Some(line)) => {
                        if let Ok(event) = serde_json::from_str::<Value>(&line) {
                            log.absorb(&event);
                        }
                        if let Some(id) = &log.session_id {
                            append_debug(prompt.debug_dir, id, &line);
                        }
                    }
                    _ => break Ok(()),
                },
                line = logs.next_line(), if logs_open => match line {
                    Ok(Some(line)) => if let Some(error) = {
                        log.note_log_line(&line);
                        model_failure(&line)
                    } {
                        failures += 1;
                        if failures > self.settings.max_model_retries {
                            break Err(RunError::agent(format!("the model keeps failing ({failures} attempts): {error}")));
                        }
                    },
                    _ => logs_open = false,
                },
                _ = &mut deadline => break Err(RunError::agent(format!(
                    "the run took longer than {} and was stopped",
                    humantime::format_duration(prompt.timeout)
                ))),
            }
        };
        let outcome = match outcome {
            Ok(()) => match child.wait().await {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => Err(RunError::infra(format!("opencode run exited with {status}"))),
                Err(e) => Err(RunError::infra(format!("opencode run: {e}"))),
            },
            Err(e) => Err(e),
        };
        group.kill();
        if let (Err(_), None, SessionTarget::New { title }) = (&outcome, &log.session_id, prompt.target) {
            log.session_id = self.find_session_by_title(prompt.dir, title).await;
        }
        let with_session = |e: RunError| match &log.session_id {
            Some(id) => e.in_session(id),
            None => e,
        };
        outcome.map_err(with_session)?;
        if let Some(error) = &log.error {
            return Err(with_session(RunError::agent(format!("the agent's turn failed: {error}"))));
        }
        let session_id = log.session_id.clone().ok_or_else(|| RunError::infra("opencode run reported no session"))?;
        Ok(AgentReply { session_id, answer: log.answer(), tokens: log.tokens, cost: log.cost, denied: Vec::new() })
    }
}

#[async_trait]
impl Driver for CliDriver {
    async fn run(&self, prompt: Prompt<'_>) -> Result<AgentReply, RunError> {
        match prompt.text {
            Some(text) => self.run_prompt(&prompt, text).await,
            None => Err(RunError::new(
                FailureKind::Unsupported,
                "the CLI driver creates a session only by running a message; give one",
            )),
        }
    }

    async fn session_exists(&self, id: &str, dir: &Path) -> Result<bool, RunError> {
        Ok(self.list_sessions(dir).await?.iter().any(|s| s.id == id))
    }

    async fn delete_session(&self, id: &str, dir: &Path) -> Result<(), RunError> {
        if !self.session_exists(id, dir).await? {
            return Ok(());
        }
        let out = self
            .command(dir)
            .await?
            .args(["session", "delete", id])
            .output()
            .await
            .map_err(|e| spawn_error(&self.settings.binary, &e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(RunError::infra(format!(
                "opencode session delete failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    async fn list_sessions(&self, dir: &Path) -> Result<Vec<SessionInfo>, RunError> {
        let out = self
            .command(dir)
            .await?
            .args(["session", "list", "--format", "json"])
            .output()
            .await
            .map_err(|e| spawn_error(&self.settings.binary, &e))?;
        if !out.status.success() {
            return Err(RunError::infra(format!(
                "opencode session list failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        if stdout.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&stdout)
            .map_err(|e| RunError::infra(format!("unexpected `opencode session list` output: {e}")))
    }

    async fn abort(&self, _id: &str, _dir: &Path) {
        // A cancelled run drops its process group, which kills opencode.
    }

    async fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_model_failures_but_not_title_calls() {
        let run = r#"timestamp=x level=ERROR run=1 message="stream error" small=false agent=build error.error="AI_APICallError: model exploded""#;
        assert_eq!(model_failure(run).as_deref(), Some("AI_APICallError: model exploded"));
        assert_eq!(model_failure(&run.replace("agent=build", "agent=title")), None);
        assert_eq!(model_failure("level=WARN something"), None);
    }

    #[test]
    fn answer_is_the_last_messages_text() {
        let mut log = RunLog::default();
        for e in [
            r#"{"type":"text","sessionID":"s","part":{"messageID":"m1","text":"thinking aloud"}}"#,
            r#"{"type":"step_finish","sessionID":"s","part":{"tokens":{"input":3,"output":2,"cache":{"read":1}},"cost":0.5}}"#,
            r#"{"type":"text","sessionID":"s","part":{"messageID":"m2","text":"final"}}"#,
        ] {
            log.absorb(&serde_json::from_str(e).unwrap());
        }
        assert_eq!(log.answer(), "final");
        assert_eq!(log.session_id.as_deref(), Some("s"));
        assert_eq!(log.tokens.total(), 6);
    }
}
