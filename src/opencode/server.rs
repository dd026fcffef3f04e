//! The default driver: a supervised `opencode serve` per checkout, each in its jail.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::process::Child;
use tokio::sync::Mutex;

use super::api::{Api, Message};
use super::events::{AgentEvent, DEBUG_DRAIN, Feed, Watchers, subscribe};
use super::jail::Jails;
use super::launch::{Listening, launch};
use super::process::ProcessGroup;
use super::warmup::{WarmupModel, warm_up};
use super::{AgentReply, Driver, FailureKind, OpencodeEnv, Prompt, RunError, SessionInfo, SessionTarget, split_model};
use crate::config::OpencodeSettings;
use crate::question::{Asked, Reply};
use crate::result::Tokens;

/// When a running prompt is first checked for permission prompts, questions,
/// model retries and the deadline; the wait then doubles up to `WATCH_MAX`.
/// Each check is three requests that opencode answers on its one JS thread: at
/// a steady 250 ms, four runs waiting on their model kept a core a quarter busy.
const WATCH_FIRST: Duration = Duration::from_millis(250);
const WATCH_MAX: Duration = Duration::from_secs(2);
/// How far up a pending request's session its parents are followed to the turn's.
const MAX_SUBAGENT_DEPTH: usize = 4;
/// How long an aborted prompt may take to return before we stop waiting for it.
const ABORT_GRACE: Duration = Duration::from_secs(10);

struct Server {
    child: Child,
    group: ProcessGroup,
    api: Api,
    /// Read from the start, so a run joins it without a connection of its own.
    feed: Option<Arc<Feed>>,
}

/// One checkout's server and what is known of its use.
#[derive(Default)]
struct Slot {
    server: Mutex<Option<Server>>,
    /// Runs using the server; it is never stopped while one is.
    active: AtomicUsize,
    /// A ready checkout's server: kept until an issue takes it, outside
    /// `max_servers` and `idle_timeout` (the pool has its own bounds).
    pooled: std::sync::atomic::AtomicBool,
    last_used: std::sync::Mutex<Option<Instant>>,
}

/// One `opencode serve` per checkout, each in that checkout's sandbox: opencode's
/// file tools run in the server process, so a server shared by all issues could
/// read every issue. Servers start on first use, stay warm for follow-ups, and
/// are stopped when idle too long or when room is needed for another.
pub struct ServerDriver {
    settings: OpencodeSettings,
    env: OpencodeEnv,
    jails: Jails,
    http: reqwest::Client,
    slots: std::sync::Mutex<HashMap<PathBuf, Arc<Slot>>>,
    /// Started with the first warm-up; from then on every server may use it.
    warmup: tokio::sync::OnceCell<WarmupModel>,
    restarts: std::sync::atomic::AtomicU64,
}

const EXITED_EARLY: &str = "opencode serve exited before it was ready";

impl ServerDriver {
    pub fn new(settings: OpencodeSettings, env: OpencodeEnv, jails: Jails) -> Self {
        Self {
            settings,
            env,
            jails,
            http: reqwest::Client::new(),
            slots: std::sync::Mutex::new(HashMap::new()),
            warmup: tokio::sync::OnceCell::new(),
            restarts: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn slot(&self, home: &Path) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.entry(home.to_owned()).or_default().clone()
    }

    fn existing_slot(&self, home: &Path) -> Option<Arc<Slot>> {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(home).cloned()
    }

    /// The checkout's server API, starting (or restarting) its server if needed.
    /// The caller counts itself in `slot.active` first.
    async fn api(&self, dir: &Path, slot: &Slot, home: &Path) -> Result<Api, RunError> {
        self.server(dir, slot, home).await.map(|(api, _)| api)
    }

    /// The checkout's server API and its event feed; see [`Self::api`].
    async fn server(&self, dir: &Path, slot: &Slot, home: &Path) -> Result<(Api, Option<Arc<Feed>>), RunError> {
        *slot.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        let mut guard = slot.server.lock().await;
        if let Some(server) = guard.as_mut() {
            // A killed opencode's sandbox outlives it for a moment, so its process
            // is not reaped yet; its port is closed at once.
            let alive = matches!(server.child.try_wait(), Ok(None)) && server.api.accepts_connections().await;
            if alive {
                if server.feed.as_ref().is_none_or(|feed| feed.ended()) {
                    server.feed = open_feed(&server.api).await;
                }
                return Ok((server.api.clone(), server.feed.clone()));
            }
            tracing::warn!(home = %home.display(), "opencode serve exited; restarting it");
            self.restarts.fetch_add(1, Ordering::Relaxed);
            *guard = None;
        }
        self.make_room(home).await;
        // A supervisor restarts a child that died while starting (killed, OOM);
        // a second death in a row is reported.
        let server = match self.start(dir, home).await {
            Err(e) if e.message.starts_with(EXITED_EARLY) => {
                tracing::warn!(error = %e, "opencode serve died while starting; starting it once more");
                self.restarts.fetch_add(1, Ordering::Relaxed);
                self.start(dir, home).await?
            }
            started => started?,
        };
        let running = (server.api.clone(), server.feed.clone());
        *guard = Some(server);
        Ok(running)
    }

    /// Stops servers idle past `idle_timeout`, and the least recently used idle
    /// ones while `max_servers` are running.
    async fn make_room(&self, starting: &Path) {
        let slots: Vec<(PathBuf, Arc<Slot>)> = {
            let slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            slots
                .iter()
                .filter(|(home, slot)| home.as_path() != starting && !slot.pooled.load(Ordering::SeqCst))
                .map(|(h, s)| (h.clone(), s.clone()))
                .collect()
        };
        let mut idle = Vec::new();
        let mut running = 0;
        for (home, slot) in slots {
            let Ok(guard) = slot.server.try_lock() else {
                running += 1;
                continue;
            };
            if guard.is_none() {
                continue;
            }
            running += 1;
            if slot.active.load(Ordering::SeqCst) == 0 {
                let last = *slot.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                drop(guard);
                idle.push((last, home, slot));
            }
        }
        idle.sort_by_key(|(last, _, _)| *last);
        for (last, home, slot) in idle {
            let stale = last.is_none_or(|t| t.elapsed() > self.settings.idle_timeout);
            if !stale && running < self.settings.max_servers {
                continue;
            }
            let mut guard = slot.server.lock().await;
            if slot.active.load(Ordering::SeqCst) == 0 && guard.take().is_some() {
                tracing::info!(home = %home.display(), "stopped an idle opencode serve");
                running -= 1;
            }
        }
    }

    async fn start(&self, dir: &Path, home: &Path) -> Result<Server, RunError> {
        self.jails.ensure_ready(&self.settings.binary, &self.env, self.settings.startup_timeout).await;
        let log_path = home.join("serve.log");
        std::fs::create_dir_all(home).map_err(|e| RunError::infra(format!("cannot create {}: {e}", home.display())))?;
        // The home is the agent's to write: a link planted at the log's place
        // must not make kugetsu append to a file it points at.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&log_path)
            .map_err(|e| RunError::infra(format!("cannot open {}: {e}", log_path.display())))?;
        let mut cmd = self.jails.opencode(&self.settings.binary, &self.env, dir)?;
        if let Some(model) = self.warmup.get() {
            cmd.env("OPENCODE_CONFIG_CONTENT", model.config());
        }
        let directory = self.jails.inside(dir);
        let exited_early = || RunError::infra(format!("{EXITED_EARLY}; see {}", log_path.display()));
        let launched =
            launch(cmd, &self.settings.binary, log.into(), self.settings.startup_timeout, &self.http, directory)
                .await?;
        let Listening { mut child, group, api } = launched.ok_or_else(exited_early)?;
        let deadline = Instant::now() + self.settings.startup_timeout;
        while !api.healthy().await {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(exited_early());
            }
            if Instant::now() > deadline {
                return Err(RunError::infra("opencode serve never became healthy"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(pid = child.id(), home = %home.display(), "opencode serve is up");
        let feed = open_feed(&api).await;
        Ok(Server { child, group, api, feed })
    }

    /// Stops the server of the checkout whose home is `home`, and forgets it.
    async fn stop(&self, home: &Path) {
        let slot = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(home);
        if let Some(slot) = slot {
            slot.server.lock().await.take();
        }
    }

    /// Between runs: ends what the agent left running, so nothing of it acts
    /// while kugetsu commits and pushes, and restarts the server once it holds
    /// more memory than allowed (opencode frees little on its own, and sessions
    /// survive a restart).
    async fn after_run(&self, slot: &Slot) {
        // Under the server lock: a run counts itself active before it asks for
        // the server, so none can be handed a server this call is about to stop.
        let mut guard = slot.server.lock().await;
        if slot.active.load(Ordering::SeqCst) > 0 {
            return;
        }
        if let Some(spawned) = guard.as_ref().and_then(|s| s.child.id())
            && !self.jails.end_leftovers(spawned).await
        {
            // The server's process group dies, and with its PID 1 the jail.
            *guard = None;
            return;
        }
        let resident = guard.as_ref().map_or(0, |s| s.group.resident_mib());
        if resident > self.settings.memory_limit_mib {
            tracing::info!(resident_mib = resident, "recycling opencode serve");
            self.restarts.fetch_add(1, Ordering::Relaxed);
            *guard = None;
        }
    }

    /// A new issue's home starts as a copy of its repository's base home, so the
    /// base session can be forked there.
    async fn seed_from_base(&self, dir: &Path, home: &Path) -> Result<(), RunError> {
        let data = home.join("data");
        let Some(base) = self.jails.base_home(dir).filter(|b| b != home) else { return Ok(()) };
        if data.exists() || !base.join("data").is_dir() {
            return Ok(());
        }
        // The base checkout's agent may have left processes that swap files for
        // links while they are copied; they end with the base server's jail.
        self.stop(&base).await;
        copy_dir(&base.join("data"), &data)
            .map_err(|e| RunError::infra(format!("cannot copy the base session to {}: {e}", data.display())))
    }

    async fn open_session(&self, api: &Api, prompt: &Prompt<'_>) -> Result<String, RunError> {
        let info = match prompt.target {
            SessionTarget::Existing(id) => return Ok(id.to_owned()),
            SessionTarget::New { title } => api.create_session(title).await?,
            SessionTarget::ForkOf { base, .. } => {
                let base_dir = self.jails.base_dir(prompt.dir).unwrap_or_else(|| prompt.dir.to_owned());
                api.fork_into(base, &self.jails.inside(&base_dir)).await?
            }
        };
        Ok(info.id)
    }

    async fn prompt_in(
        &self,
        (api, feed): &(Api, Option<Arc<Feed>>),
        id: &str,
        prompt: &Prompt<'_>,
        text: &str,
    ) -> Result<AgentReply, RunError> {
        let body = self.prompt_body(text, prompt.files);
        let watchers = Watchers { debug_dir: prompt.debug_dir, progress: prompt.progress.clone() };
        let watching = subscribe(feed.as_deref(), id, watchers);
        if let Some(progress) = &prompt.progress {
            let _ = progress.send(AgentEvent::Started);
        }
        let mut asking = Asking::new(id, prompt.asks.clone());
        // The counters before the turn are read beside the prompt, not before it:
        // they change only once the model has answered.
        let before = api.session(id);
        let turn = async {
            let reply = api.prompt(id, &body);
            tokio::pin!(reply);
            let stop = super::stop_asked(prompt.stop.clone());
            tokio::pin!(stop);
            let mut deadline = tokio::time::Instant::now() + prompt.timeout;
            let mut looked = tokio::time::Instant::now();
            // The first look is one interval in: a turn that ends sooner is never
            // slowed by it.
            let mut wait = WATCH_FIRST;
            loop {
                tokio::select! {
                    res = &mut reply => break res,
                    why = &mut stop => {
                        api.abort(id).await;
                        let _ = tokio::time::timeout(ABORT_GRACE, &mut reply).await;
                        break Err(RunError::agent(why));
                    }
                    _ = tokio::time::sleep(wait) => {
                        wait = (wait * 2).min(WATCH_MAX);
                        // Time spent waiting for a person is not the agent's.
                        if asking.waiting() {
                            deadline += looked.elapsed();
                        }
                        looked = tokio::time::Instant::now();
                        if let Some(failure) = self.watch(api, id, prompt, deadline, &mut asking).await {
                            api.abort(id).await;
                            let _ = tokio::time::timeout(ABORT_GRACE, &mut reply).await;
                            break Err(failure);
                        }
                    }
                }
            }
        };
        let (before, outcome) = tokio::join!(before, turn);
        let before = before?.ok_or_else(|| {
            RunError::new(FailureKind::Agent, format!("opencode has no session {id}; it was deleted"))
        })?;
        // The stream trails the reply: a debug log ends at the session's idle
        // event. Progress needs no more than the reply says.
        if let Some(mut task) = watching
            && (prompt.debug_dir.is_none() || tokio::time::timeout(DEBUG_DRAIN, &mut task).await.is_err())
        {
            task.abort();
        }
        let mut message: Message = outcome?;
        // Only a turn that took in follow-ups can have one left unanswered.
        if let Some(door) = &prompt.door
            && door.close().await
        {
            message = self.settled(api, id, message, prompt.timeout).await?;
        }
        if let Some(error) = message.error() {
            return Err(RunError::agent(format!("the agent's turn failed: {error}")));
        }
        let after = api.session(id).await?.unwrap_or_default();
        Ok(AgentReply {
            session_id: id.to_owned(),
            answer: message.text(),
            tokens: Tokens::from(&after.tokens).since(&Tokens::from(&before.tokens)),
            cost: (after.cost - before.cost).max(0.0),
            denied: asking.denied,
        })
    }

    /// A message for opencode: the text, its files, and the configured model and agent.
    fn prompt_body(&self, text: &str, files: &[super::FilePart]) -> Value {
        let mut parts = vec![json!({ "type": "text", "text": text })];
        parts.extend(files.iter().map(super::FilePart::to_json));
        let mut body = json!({ "parts": parts });
        if let Some((provider, model)) = self.settings.model.as_deref().and_then(split_model) {
            body["model"] = json!({ "providerID": provider, "modelID": model });
        }
        if let Some(agent) = &self.settings.agent {
            body["agent"] = json!(agent);
        }
        body
    }

    /// The turn's answer once every message that joined it is answered. A message
    /// added just after the turn ended started a turn of its own (opencode starts
    /// one for a message on an idle session): that one is waited for, and its
    /// answer, which follows the whole history, is the reply.
    async fn settled(&self, api: &Api, id: &str, reply: Message, timeout: Duration) -> Result<Message, RunError> {
        let messages = api.messages(id).await?;
        let newest_user = messages.iter().rev().find(|m| m.role() == "user").map(Message::id).unwrap_or_default();
        // opencode's message ids ascend with time.
        if newest_user <= reply.parent_id() {
            return Ok(reply);
        }
        tracing::info!(session = id, "a follow-up came as the turn ended; waiting for the turn it started");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let statuses = api.statuses().await?;
            let busy = statuses.get(id).is_some_and(|s| s.kind != "idle");
            if !busy {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                api.abort(id).await;
                return Err(RunError::agent("the turn a follow-up started did not end in time"));
            }
            tokio::time::sleep(WATCH_FIRST).await;
        }
        let messages = api.messages(id).await?;
        Ok(messages.into_iter().rev().find(|m| m.role() == "assistant").unwrap_or(reply))
    }

    /// One look at a running prompt: hands what the agent asks a person to
    /// whoever listens ([`Asking`]), refuses it where nobody does, and says why
    /// the run must stop, if it must.
    async fn watch(
        &self,
        api: &Api,
        id: &str,
        prompt: &Prompt<'_>,
        deadline: tokio::time::Instant,
        asking: &mut Asking,
    ) -> Option<RunError> {
        if tokio::time::Instant::now() >= deadline {
            return Some(RunError::agent(format!(
                "the run took longer than {} and was aborted",
                humantime::format_duration(prompt.timeout)
            )));
        }
        for request in api.permissions().await.unwrap_or_default() {
            if asking.handed.contains(&request.id) || !asking.is_ours(api, &request.session_id).await {
                continue;
            }
            let asked = Asked::permission_from(&request.rest);
            if asking.hand_over(api, &request.id, asked.clone()) {
                continue;
            }
            let why = "kugetsu runs unattended and denies permission prompts; configure opencode's permission rules to allow this";
            if api.reject_permission(&request.id, why).await.is_ok() {
                asking.denied.push(asked.summary());
            }
        }
        for question in api.questions().await.unwrap_or_default() {
            if asking.handed.contains(&question.id) || !asking.is_ours(api, &question.session_id).await {
                continue;
            }
            if let Some(asked) = Asked::question_from(&question.rest)
                && asking.hand_over(api, &question.id, asked)
            {
                continue;
            }
            if api.reject_question(&question.id).await.is_ok() {
                asking.denied.push("question: the agent asked a question, which was declined".to_owned());
            }
        }
        let statuses = api.statuses().await.unwrap_or_default();
        match statuses.get(id) {
            Some(s) if s.kind == "retry" && s.attempt > self.settings.max_model_retries => {
                Some(RunError::agent(format!("the model keeps failing ({} attempts): {}", s.attempt, s.message)))
            }
            _ => None,
        }
    }
}

/// What a turn's agent asked a person, and what became of it.
struct Asking {
    to: Option<tokio::sync::mpsc::UnboundedSender<super::Ask>>,
    /// The turn's session and the subagents' sessions it started (their
    /// requests are the run's too), and sessions found to be neither.
    family: std::collections::HashSet<String>,
    strangers: std::collections::HashSet<String>,
    /// Requests handed over, by opencode's id: each is handed over once.
    handed: std::collections::HashSet<String>,
    /// Handed over and not answered yet: while any is, the turn's clock stops.
    open: Arc<AtomicUsize>,
    /// Refused so the run could finish.
    denied: Vec<String>,
}

impl Asking {
    fn new(session: &str, to: Option<tokio::sync::mpsc::UnboundedSender<super::Ask>>) -> Self {
        let family = std::iter::once(session.to_owned()).collect();
        Self {
            to,
            family,
            strangers: Default::default(),
            handed: Default::default(),
            open: Arc::default(),
            denied: Vec::new(),
        }
    }

    /// Whether `session` is the turn's, or a subagent's under it (looked up once).
    async fn is_ours(&mut self, api: &Api, session: &str) -> bool {
        if self.family.contains(session) {
            return true;
        }
        if self.strangers.contains(session) {
            return false;
        }
        // A subagent may start subagents: follow the parents a few levels up.
        let mut chain = vec![session.to_owned()];
        for _ in 0..MAX_SUBAGENT_DEPTH {
            let parent = match api.session(chain.last().map_or("", String::as_str)).await {
                Ok(Some(info)) => info.parent_id,
                Ok(None) => None,
                // Not known yet: asked again at the next look.
                Err(_) => return false,
            };
            let Some(parent) = parent else {
                self.strangers.insert(session.to_owned());
                return false;
            };
            if self.family.contains(&parent) {
                self.family.extend(chain);
                return true;
            }
            chain.push(parent);
        }
        // Deeper than subagents go: still a session of this checkout's server,
        // so the run's; left alone, its request would hang the run.
        self.family.extend(chain);
        true
    }

    fn waiting(&self) -> bool {
        self.open.load(Ordering::SeqCst) > 0
    }

    /// Hands `asked` to the listener, and its answer, when it comes, to opencode.
    /// `false` when nobody listens.
    fn hand_over(&mut self, api: &Api, request: &str, asked: Asked) -> bool {
        let Some(to) = &self.to else { return false };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let permission = matches!(asked, Asked::Permission { .. });
        if to.send(super::Ask { asked, reply }).is_err() {
            return false;
        }
        self.handed.insert(request.to_owned());
        self.open.fetch_add(1, Ordering::SeqCst);
        let (api, request, open) = (api.clone(), request.to_owned(), self.open.clone());
        // Answered after the turn ended (stopped, timed out), opencode says 404: harmless.
        tokio::spawn(async move {
            let sent = match (answer.await, permission) {
                (Ok(Reply::Allow), true) => api.reply_permission(&request, "once", None).await,
                (Ok(Reply::Deny(why)), true) => api.reply_permission(&request, "reject", Some(&why)).await,
                (Ok(Reply::Answers(answers)), false) => api.answer_question(&request, &answers).await,
                (Ok(_) | Err(_), true) => api.reply_permission(&request, "reject", None).await,
                (Ok(_) | Err(_), false) => api.reject_question(&request).await,
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, %request, "could not hand an answer to opencode");
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
        true
    }
}

/// Counts a use of a server as active until dropped, also when cancelled midway.
struct ActiveRun<'a>(&'a AtomicUsize);

impl<'a> ActiveRun<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for ActiveRun<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Driver for ServerDriver {
    async fn run(&self, prompt: Prompt<'_>) -> Result<AgentReply, RunError> {
        let home = self.jails.home(prompt.dir)?;
        let slot = self.slot(&home);
        let active = ActiveRun::new(&slot.active);
        let result = async {
            if matches!(prompt.target, SessionTarget::ForkOf { .. }) {
                self.seed_from_base(prompt.dir, &home).await?;
            }
            let server = self.server(prompt.dir, &slot, &home).await?;
            let id = self.open_session(&server.0, &prompt).await?;
            if let Some(started) = &prompt.started {
                let _ = started.send(id.clone());
            }
            match prompt.text {
                None => Ok(AgentReply { session_id: id, ..AgentReply::default() }),
                Some(text) => self.prompt_in(&server, &id, &prompt, text).await.map_err(|e| e.in_session(&id)),
            }
        }
        .await;
        drop(active);
        self.after_run(&slot).await;
        result
    }

    async fn session_exists(&self, id: &str, dir: &Path) -> Result<bool, RunError> {
        self.with_api(dir, |api| async move { Ok(api.session(id).await?.is_some()) }).await
    }

    async fn delete_session(&self, id: &str, dir: &Path) -> Result<(), RunError> {
        self.with_api(dir, |api| async move { api.delete(id).await }).await
    }

    async fn list_sessions(&self, dir: &Path) -> Result<Vec<SessionInfo>, RunError> {
        self.with_api(dir, |api| async move { api.sessions().await }).await
    }

    async fn inject(&self, id: &str, dir: &Path, text: &str) -> Result<(), RunError> {
        let home = self.jails.home(dir)?;
        let slot = self.existing_slot(&home).ok_or_else(|| RunError::infra("no opencode runs for this checkout"))?;
        let running = slot.server.lock().await.as_ref().map(|s| s.api.clone());
        let api = running.ok_or_else(|| RunError::infra("no opencode runs for this checkout"))?;
        api.prompt_async(id, &self.prompt_body(text, &[])).await
    }

    async fn export_session(&self, id: &str, dir: &Path) -> Result<String, RunError> {
        self.with_api(dir, |api| async move { api.export(id).await }).await
    }

    /// `opencode import`, in the checkout's jail with its home, so the session is
    /// that checkout's (its directory and project), under its own id.
    async fn import_session(&self, dir: &Path, export: &str) -> Result<(), RunError> {
        use std::io::Write;
        let home = self.jails.home(dir)?;
        // The server reads sessions from the database the import writes.
        self.stop(&home).await;
        std::fs::create_dir_all(&home)
            .map_err(|e| RunError::infra(format!("cannot create {}: {e}", home.display())))?;
        let file = home.join("import.json");
        // The home is the agent's to write: whatever it left at that name goes,
        // and a link planted there is not followed.
        if let Err(e) = std::fs::remove_file(&file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(RunError::infra(format!("cannot remove {}: {e}", file.display())));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&file)
            .and_then(|mut f| f.write_all(export.as_bytes()))
            .map_err(|e| RunError::infra(format!("cannot write {}: {e}", file.display())))?;
        self.jails.ensure_ready(&self.settings.binary, &self.env, self.settings.startup_timeout).await;
        let mut cmd = self.jails.opencode(&self.settings.binary, &self.env, dir)?;
        cmd.arg("import").arg(&file).stdin(std::process::Stdio::null()).kill_on_drop(true);
        let ran = tokio::time::timeout(self.settings.startup_timeout, cmd.output()).await;
        let _ = std::fs::remove_file(&file);
        let out = ran
            .map_err(|_| RunError::infra("opencode import did not end in time"))?
            .map_err(|e| super::spawn_error(&self.settings.binary, &e))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            let tail: String = said.chars().rev().take(400).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(RunError::infra(format!("opencode import failed: {}", tail.trim())));
        }
        Ok(())
    }

    async fn abort(&self, id: &str, dir: &Path) {
        let Some(slot) = self.jails.home(dir).ok().and_then(|home| self.existing_slot(&home)) else { return };
        let running = slot.server.lock().await.as_ref().map(|s| s.api.clone());
        if let Some(api) = running {
            api.abort(id).await;
        }
    }

    async fn release(&self, dir: &Path) {
        if let Ok(home) = self.jails.home(dir) {
            self.stop(&home).await;
        }
    }

    fn can_pool(&self) -> bool {
        self.jails.renames_keep_servers()
    }

    async fn warm(&self, dir: &Path) -> Result<(), RunError> {
        let home = self.jails.home(dir)?;
        self.warmup.get_or_try_init(WarmupModel::start).await?;
        // Forks of the base session are made in the issue's own home.
        self.seed_from_base(dir, &home).await?;
        let slot = self.slot(&home);
        slot.pooled.store(true, Ordering::SeqCst);
        let _active = ActiveRun::new(&slot.active);
        let api = self.api(dir, &slot, &home).await?;
        let warmed = tokio::time::timeout(self.settings.startup_timeout, warm_up(&api, self.settings.agent.as_deref()));
        warmed.await.map_err(|_| RunError::infra("opencode's warm-up prompt did not end in time"))?
    }

    async fn moved(&self, from: &Path, to: &Path) -> Result<(), RunError> {
        let (old, new) = (self.jails.home(from)?, self.jails.home(to)?);
        if let Some(parent) = new.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| RunError::infra(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::rename(&old, &new)
            .map_err(|e| RunError::infra(format!("cannot move {} to {}: {e}", old.display(), new.display())))?;
        let displaced = {
            let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let moving = slots.remove(&old);
            moving.and_then(|slot| {
                slot.pooled.store(false, Ordering::SeqCst);
                slots.insert(new, slot)
            })
        };
        // A server left for the checkout that was here would run on, untracked.
        if let Some(slot) = displaced {
            slot.server.lock().await.take();
        }
        Ok(())
    }

    async fn resident_mib(&self, dir: &Path) -> Option<u64> {
        let slot = self.existing_slot(&self.jails.home(dir).ok()?)?;
        let guard = slot.server.lock().await;
        guard.as_ref().map(|server| server.group.resident_mib())
    }

    /// A server being started or stopped right now counts as running, its memory unread.
    fn servers(&self) -> super::ServerStats {
        let slots: Vec<Arc<Slot>> =
            self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect();
        let mut stats = super::ServerStats { restarts: self.restarts.load(Ordering::Relaxed), ..Default::default() };
        for slot in slots {
            match slot.server.try_lock() {
                Ok(guard) => {
                    if let Some(server) = guard.as_ref() {
                        stats.running += 1;
                        stats.resident_mib += server.group.resident_mib();
                    }
                }
                Err(_) => stats.running += 1,
            }
        }
        stats
    }

    async fn shutdown(&self) {
        let slots: Vec<Arc<Slot>> =
            self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect();
        for slot in slots {
            slot.server.lock().await.take();
        }
    }
}

impl ServerDriver {
    /// Runs `f` against the checkout's server, counted as a use so it is not stopped midway.
    async fn with_api<'a, T, F, Fut>(&'a self, dir: &'a Path, f: F) -> Result<T, RunError>
    where
        F: FnOnce(Api) -> Fut,
        Fut: std::future::Future<Output = Result<T, RunError>> + 'a,
    {
        let home = self.jails.home(dir)?;
        let slot = self.slot(&home);
        let _active = ActiveRun::new(&slot.active);
        let api = self.api(dir, &slot, &home).await?;
        f(api).await
    }
}

/// The server's event feed; without one, runs go on unfollowed (see [`subscribe`]).
async fn open_feed(api: &Api) -> Option<Arc<Feed>> {
    let feed = Feed::open(api).await.map(Arc::new);
    if feed.is_none() {
        tracing::warn!("opencode serve gave no event stream; runs' progress and spending are not followed");
    }
    feed
}

/// Copies a directory tree of plain files and directories; links are skipped, so
/// nothing outside `from` is ever copied.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
