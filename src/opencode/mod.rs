//! The opencode driver: runs a message in an issue's session, headlessly.
//!
//! Two implementations share one trait: [`ServerDriver`] supervises one
//! `opencode serve` and speaks its HTTP API (the default), and [`CliDriver`] runs one
//! `opencode run` process per prompt for hosts that cannot keep a server running.

mod api;
mod cli;
mod env;
mod events;
mod jail;
mod launch;
mod process;
mod server;
mod setup;
mod warmup;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::config::{Config, DriverKind};
use crate::result::Tokens;

/// The opencode release kugetsu is built and tested against.
pub const PINNED_VERSION: &str = "1.18.33";

pub use cli::CliDriver;
pub use env::{HEADLESS_CONFIG, OpencodeEnv, config_dir};
pub use events::{AgentEvent, Todo, ToolStatus};
pub use jail::Jails;
pub use server::ServerDriver;

/// Waits until `stop` holds a reason; never, without one.
pub async fn stop_asked(stop: Option<tokio::sync::watch::Receiver<Option<String>>>) -> String {
    let Some(mut stop) = stop else { return std::future::pending().await };
    let reason = stop.wait_for(Option::is_some).await.ok().map(|r| r.clone().unwrap_or_default());
    match reason {
        Some(reason) => reason,
        // Nobody can ask any more: the run goes on.
        None => std::future::pending().await,
    }
}

/// Which session a prompt runs in.
#[derive(Debug, Clone, Copy)]
pub enum SessionTarget<'a> {
    New {
        title: &'a str,
    },
    Existing(&'a str),
    /// A copy of a repository's base session, re-rooted in the prompt's directory.
    ForkOf {
        base: &'a str,
        title: &'a str,
    },
}

#[derive(Debug, Clone)]
pub struct Prompt<'a> {
    /// The worktree the agent works in.
    pub dir: &'a Path,
    pub target: SessionTarget<'a>,
    /// `None` only creates (or forks) the session.
    pub text: Option<&'a str>,
    pub timeout: Duration,
    /// When set, the run's full event stream is written to `<debug_dir>/<session>/debug.log`.
    pub debug_dir: Option<&'a Path>,
    /// Told the session's id as soon as it exists, before the agent starts, so
    /// a `stop` can abort even an issue's first run.
    pub started: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Told what the agent is doing, as it does it.
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<AgentEvent>>,
    /// Once this holds a reason, the turn is aborted and fails with it.
    pub stop: Option<tokio::sync::watch::Receiver<Option<String>>>,
    /// Files given with the text (opencode's file parts).
    pub files: &'a [FilePart],
    /// Through which follow-ups join the turn while it runs; closed once its reply is in.
    pub door: Option<Arc<Door>>,
    /// Told what the agent asks a person; without it, questions and permission
    /// prompts are refused so the run can finish.
    pub asks: Option<tokio::sync::mpsc::UnboundedSender<Ask>>,
}

/// Something the agent waits on a person for. The turn waits, without counting
/// against its timeout, until `reply` is answered; dropping it refuses.
#[derive(Debug)]
pub struct Ask {
    pub asked: crate::question::Asked,
    pub reply: tokio::sync::oneshot::Sender<crate::question::Reply>,
}

/// Whether messages may still join a running turn ([`Driver::inject`]). The turn
/// closes it once its reply is in, under the lock a joiner holds while it adds its
/// message: so every message added before is in the session when the turn looks,
/// and is answered by the reply, or by the turn it started, which the run waits for.
#[derive(Debug)]
pub struct Door {
    open: std::sync::atomic::AtomicBool,
    /// Whether any message came through: only then is the session looked at again.
    used: std::sync::atomic::AtomicBool,
    lock: tokio::sync::Mutex<()>,
}

impl Default for Door {
    fn default() -> Self {
        Self {
            open: std::sync::atomic::AtomicBool::new(true),
            used: std::sync::atomic::AtomicBool::new(false),
            lock: tokio::sync::Mutex::new(()),
        }
    }
}

impl Door {
    /// Entry for one message, held while it is added; `None` once closed.
    pub async fn enter(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        let guard = self.lock.lock().await;
        self.open.load(std::sync::atomic::Ordering::SeqCst).then_some(guard)
    }

    /// Whether it is still open (without waiting for the lock).
    pub fn is_open(&self) -> bool {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Says a message came through (under [`Door::enter`]'s guard).
    pub fn used(&self) {
        self.used.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes it: once this returns, no message is being added, nor will be.
    /// Whether any came through.
    pub async fn close(&self) -> bool {
        let _guard = self.lock.lock().await;
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.used.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A file given to the agent with a prompt, inline.
#[derive(Clone, PartialEq, Eq)]
pub struct FilePart {
    pub filename: String,
    pub mime: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for FilePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FilePart({}, {}, {} bytes)", self.filename, self.mime, self.bytes.len())
    }
}

impl FilePart {
    /// opencode's `FilePartInput`: a `data:` URL, which it reads as it is (an
    /// image goes to the model as one; `text/plain` becomes text).
    pub fn to_json(&self) -> serde_json::Value {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(&self.bytes);
        serde_json::json!({
            "type": "file",
            "mime": self.mime,
            "filename": self.filename,
            "url": format!("data:{};base64,{data}", self.mime),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct AgentReply {
    pub session_id: String,
    pub answer: String,
    pub tokens: Tokens,
    pub cost: f64,
    /// Permission requests and questions that were refused so the run could finish.
    pub denied: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The driver cannot do what was asked (a configuration or usage problem).
    Unsupported,
    /// The agent or its model failed: errors, a timeout.
    Agent,
    /// opencode itself could not be started or reached, or it died.
    Infra,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RunError {
    pub kind: FailureKind,
    pub message: String,
    /// The session, when it was created before the failure.
    pub session_id: Option<String>,
}

impl RunError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), session_id: None }
    }

    pub fn infra(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Infra, message)
    }

    pub fn agent(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Agent, message)
    }

    pub fn in_session(mut self, id: &str) -> Self {
        self.session_id.get_or_insert_with(|| id.to_owned());
        self
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub directory: PathBuf,
    /// Creation time in ms; the CLI lists it as `created`, the API as `time.created`.
    #[serde(default)]
    pub created: i64,
}

#[async_trait]
pub trait Driver: Send + Sync {
    /// Runs the prompt to completion, within its timeout.
    async fn run(&self, prompt: Prompt<'_>) -> Result<AgentReply, RunError>;
    /// Whether opencode still has the session; `dir` is any checkout of its repository.
    async fn session_exists(&self, id: &str, dir: &Path) -> Result<bool, RunError>;
    /// Deletes the session; a session that is already gone is not an error.
    async fn delete_session(&self, id: &str, dir: &Path) -> Result<(), RunError>;
    /// Stops a run in progress in the session, if any.
    async fn abort(&self, id: &str, dir: &Path);
    /// Hands `text` to the session's running turn, which takes it in at its next step.
    async fn inject(&self, _id: &str, _dir: &Path, _text: &str) -> Result<(), RunError> {
        Err(RunError::infra("this driver cannot add to a running turn"))
    }
    /// The session as `opencode export` writes it, for a checkpoint another
    /// replica can take the issue over from.
    async fn export_session(&self, _id: &str, _dir: &Path) -> Result<String, RunError> {
        Err(RunError::infra("this driver cannot export sessions"))
    }
    /// Brings an exported session into the opencode of the checkout at `dir`.
    async fn import_session(&self, _dir: &Path, _export: &str) -> Result<(), RunError> {
        Err(RunError::infra("this driver cannot import sessions"))
    }
    /// Sessions of the repository checked out at `dir`.
    async fn list_sessions(&self, dir: &Path) -> Result<Vec<SessionInfo>, RunError>;
    /// Stops what runs for the checkout at `dir`, before its files are removed.
    async fn release(&self, _dir: &Path) {}
    /// Whether checkouts can be readied ahead ([`Driver::warm`]) and then renamed
    /// for an issue ([`Driver::moved`]) with what runs for them.
    fn can_pool(&self) -> bool {
        false
    }
    /// Starts opencode for the checkout at `dir` and pays for its first prompt,
    /// so the checkout's first real prompt starts like a follow-up.
    async fn warm(&self, _dir: &Path) -> Result<(), RunError> {
        Ok(())
    }
    /// The checkout at `from` was renamed `to`: its opencode files and server follow.
    async fn moved(&self, _from: &Path, _to: &Path) -> Result<(), RunError> {
        Ok(())
    }
    /// Resident memory of what runs for the checkout at `dir`, if anything does.
    async fn resident_mib(&self, _dir: &Path) -> Option<u64> {
        None
    }
    /// The opencode servers running now, for `/metrics`.
    fn servers(&self) -> ServerStats {
        ServerStats::default()
    }
    /// Stops anything the driver started.
    async fn shutdown(&self);
}

/// What [`Driver::servers`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub running: usize,
    /// Resident memory of the running servers and everything they started.
    pub resident_mib: u64,
    /// Servers replaced since start-up: died, killed, or past `opencode.memory_limit_mib`.
    pub restarts: u64,
}

/// Title prefix of every session kugetsu creates, so `prune` never touches others.
pub const SESSION_TITLE_PREFIX: &str = "kugetsu ";

pub fn driver_for(config: &Config) -> Arc<dyn Driver> {
    let sandbox = crate::sandbox::Sandbox::for_config(config);
    let env = OpencodeEnv::new(config);
    let config_dir = config_dir(config);
    // opencode expects its config directory; made here, it is shown read-only.
    let _ = std::fs::create_dir_all(&config_dir);
    let mut config_files = vec![config_dir];
    config_files.extend(config.opencode.config.clone());
    let layout = crate::layout::Layout::new(&config.state_dir);
    let jails = Jails::new(sandbox, layout, &config.opencode.binary, &config_files);
    match config.opencode.driver {
        DriverKind::Server => Arc::new(ServerDriver::new(config.opencode.clone(), env, jails)),
        DriverKind::Cli => Arc::new(CliDriver::new(config.opencode.clone(), env, jails)),
    }
}

/// Splits `provider/model` as opencode expects it in API calls.
fn split_model(model: &str) -> Option<(&str, &str)> {
    model.split_once('/').filter(|(p, m)| !p.is_empty() && !m.is_empty())
}

/// Appends one line to a run's debug log; failures to log never fail the run.
fn append_debug(debug_dir: Option<&Path>, session: &str, line: &str) {
    use std::io::Write;
    let Some(dir) = debug_dir else { return };
    // The id comes from opencode's answers; only a plain name may become a path.
    let plain = !session.is_empty() && session.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !plain {
        return;
    }
    let dir = dir.join(session);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("debug.log")) {
        let _ = writeln!(f, "{line}");
    }
}

fn spawn_error(binary: &Path, e: &std::io::Error) -> RunError {
    let hint = if e.kind() == std::io::ErrorKind::NotFound {
        &format!(" (not found: install it with `npm install -g opencode-ai@{PINNED_VERSION}`, or set opencode.binary)")
    } else {
        ""
    };
    RunError::infra(format!("cannot start opencode `{}`: {e}{hint}", binary.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_logs_go_only_under_a_plain_session_name() {
        let root = tempfile::tempdir().unwrap();
        let debug = root.path().join("debug");
        append_debug(Some(&debug), "ses_0a1B-2", "kept");
        let kept = std::fs::read_to_string(debug.join("ses_0a1B-2/debug.log")).unwrap();
        assert_eq!(kept, "kept\n", "control: a real session id is logged");
        for hostile in ["../escaped", "/tmp/abs", "a/b", "", ".."] {
            append_debug(Some(&debug), hostile, "dropped");
        }
        assert!(!root.path().join("escaped").exists());
        let entries: Vec<_> = std::fs::read_dir(&debug).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("ses_0a1B-2")], "nothing else was written");
    }
}
