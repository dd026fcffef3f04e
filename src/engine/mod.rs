//! The engine: one issue, one worktree, one opencode session, one branch.
//!
//! The CLI and the webhook bot both drive it. Operations on one repository's
//! mirror are serialised with a file lock; different repositories run in parallel.

mod error;
mod maintenance;
mod pool;
mod takeover;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, Instance};
use crate::git::{Committed, Credentials, Git, GitError, Mirror, WorkingCopy, with_retries};
use crate::issue_ref::{IssueRef, RepoRef};
use crate::lock::{FileLock, lock_exclusive, try_lock_exclusive_within};
use crate::opencode::{Driver, Prompt, SESSION_TITLE_PREFIX, SessionTarget, driver_for};
use crate::result::RunResult;
use crate::sandbox::{Jail, Sandbox};
use crate::stage::{self, Stage};
use crate::store::{BaseSession, IssueSession, SessionStatus, Store, now_millis};

pub use crate::layout::Layout;
pub use error::EngineError;
pub use maintenance::{Finding, PruneReport, free_disk_mib};

/// How long a run waits for an issue another run holds before calling it busy:
/// long enough to outlast a lock that only looks held (see `try_lock_exclusive_within`).
const ISSUE_LOCK_WAIT: Duration = Duration::from_millis(500);

/// Whether a run may create the issue's session, continue it, or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Start,
    Continue,
    /// Start if the issue has no session yet, continue otherwise (the bot's mode).
    Auto,
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Write the run's full opencode event stream to the session's debug log.
    pub debug: bool,
    /// Told what the agent is doing, as it does it.
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<crate::opencode::AgentEvent>>,
    /// Once this holds a reason, the agent is stopped at its next step.
    pub stop: Option<tokio::sync::watch::Receiver<Option<String>>>,
    /// Files given to the agent with the message.
    pub files: Vec<crate::opencode::FilePart>,
    /// Through which follow-ups join the run while it goes on ([`Engine::join`]).
    pub door: Option<Arc<crate::opencode::Door>>,
    /// Told what the agent asks a person; the run waits for each answer.
    pub asks: Option<tokio::sync::mpsc::UnboundedSender<crate::opencode::Ask>>,
    /// The issue's lease, checked before the push: a replica that lost it pushes nothing.
    pub fence: Option<crate::store::Fence>,
}

/// Where push and fetch tokens come from, when not straight from the config
/// (a GitHub App's installation tokens expire hourly).
#[async_trait::async_trait]
pub trait GitTokens: Send + Sync {
    async fn git_token(&self, instance: &Instance) -> Result<Option<secrecy::SecretString>, String>;
}

pub struct Engine {
    tokens: Option<Arc<dyn GitTokens>>,
    config: Arc<Config>,
    store: Arc<dyn Store>,
    driver: Arc<dyn Driver>,
    git: Git,
    sandbox: Sandbox,
    layout: Layout,
    pool: pool::Pool,
}

impl Engine {
    /// Opens the state directory's database and sets up the configured driver.
    pub async fn open(config: Config) -> Result<Self, EngineError> {
        crate::sandbox::check(&Sandbox::for_config(&config)).await.map_err(EngineError::Infra)?;
        let store = crate::store::open(&config, false).await?;
        let driver = driver_for(&config);
        Ok(Self::new(Arc::new(config), store, driver))
    }

    pub fn new(config: Arc<Config>, store: Arc<dyn Store>, driver: Arc<dyn Driver>) -> Self {
        Self {
            git: Git::new(&config.git),
            sandbox: Sandbox::for_config(&config),
            layout: Layout::new(&config.state_dir),
            config,
            store,
            driver,
            tokens: None,
            pool: pool::Pool::default(),
        }
    }

    /// Takes git tokens from `tokens` instead of the configuration.
    pub fn with_git_tokens(mut self, tokens: Arc<dyn GitTokens>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub async fn shutdown(&self) {
        self.close_pool();
        self.driver.shutdown().await;
    }

    pub fn branch_for(&self, issue: &IssueRef) -> String {
        format!("{}{}", self.config.git.branch_prefix, issue.number())
    }

    fn instance(&self, repo: &RepoRef) -> Result<&Instance, EngineError> {
        self.config.instance(repo.instance()).ok_or_else(|| {
            let known: Vec<&str> = self.config.instances.keys().map(|k| k.as_str()).collect();
            EngineError::BadInput(format!(
                "unknown instance `{}`; configured instances: {}",
                repo.instance(),
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ))
        })
    }

    fn mirror(&self, repo: &RepoRef, instance: &Instance) -> Mirror {
        Mirror::new(self.layout.mirror(repo), instance.clone_url(repo.owner(), repo.name()))
    }

    /// Push and fetch credentials: the forge token, sent as HTTP basic auth.
    async fn credentials(&self, instance: &Instance) -> Result<Option<Credentials>, EngineError> {
        let token = match &self.tokens {
            Some(tokens) => tokens
                .git_token(instance)
                .await
                .map_err(|e| EngineError::Infra(format!("cannot get a git token for {}: {e}", instance.name)))?,
            None => instance.token.clone(),
        };
        let username = match instance.kind {
            crate::config::ForgeKind::Github => "x-access-token",
            _ => instance.bot_login.as_str(),
        };
        Ok(token.map(|password| Credentials { username: username.to_owned(), password }))
    }

    async fn lock_mirror(&self, repo: &RepoRef) -> Result<FileLock, EngineError> {
        Ok(lock_exclusive(&self.layout.mirror_lock(repo)).await?)
    }

    async fn lock_issue(&self, issue: &IssueRef) -> Result<FileLock, EngineError> {
        try_lock_exclusive_within(&self.layout.issue_lock(issue), ISSUE_LOCK_WAIT)
            .await?
            .ok_or_else(|| EngineError::Busy(format!("another run on {issue} is in progress; try again when it ends")))
    }

    /// Fetches the mirror, creating it on first use.
    async fn sync_mirror(
        &self,
        repo: &RepoRef,
        mirror: &Mirror,
        creds: Option<&Credentials>,
    ) -> Result<(), EngineError> {
        let sync = with_retries("fetching the mirror", GitError::may_pass, || mirror.sync(&self.git, creds)).await;
        sync.map_err(|e| match e {
            e if e.is_missing_repository() => {
                EngineError::BadInput(format!("repository {repo} was not found (at {}): {e}", mirror.url()))
            }
            e if e.is_auth_failure() => {
                EngineError::Infra(format!("the forge refused the bot's token when fetching {repo}: {e}"))
            }
            e => EngineError::Infra(format!("cannot fetch {repo} (from {}): {e}", mirror.url())),
        })
    }

    /// Runs `message` in the issue's session, then commits, pushes and records.
    #[tracing::instrument(skip_all, fields(issue = %issue))]
    pub async fn run(
        &self,
        issue: &IssueRef,
        message: &str,
        mode: Mode,
        opts: RunOptions,
    ) -> Result<RunResult, EngineError> {
        let started = Instant::now();
        let instance = self.instance(issue.repo())?;
        let _issue_lock = self.lock_issue(issue).await?;
        let existing = self.store.issue_session(issue).await?;
        match (mode, &existing) {
            (Mode::Start, Some(_)) => {
                return Err(EngineError::BadInput(format!(
                    "{issue} was already started; use `kugetsu continue`, or `kugetsu destroy` it first"
                )));
            }
            (Mode::Continue, None) => {
                return Err(EngineError::BadInput(format!("{issue} was never started; use `kugetsu start`")));
            }
            _ => {}
        }
        let creds = self.credentials(instance).await?;
        let mirror = self.mirror(issue.repo(), instance);
        let branch = self.branch_for(issue);
        // A follow-up's working copy is there already; the fetch, which only the
        // push's lease needs, then runs beside the agent instead of before it.
        // Another replica may have run the issue since this one did.
        let stale =
            self.keeps_checkpoints() && self.drop_stale_copy(issue, &mirror, &branch, existing.as_ref()).await?;
        let ready = WorkingCopy::at(self.layout.worktree(issue));
        let follow_up = ready.exists() && mirror.exists();
        let Prepared { worktree, mut remote_sha, start } = match follow_up {
            true => Prepared { worktree: ready, remote_sha: None, start: None },
            false => self.prepare_worktree(issue, &mirror, &branch, creds.as_ref()).await?,
        };
        stage::reached(issue, Stage::WorkingCopyReady);

        let now = now_millis();
        let mut record = existing.unwrap_or_else(|| IssueSession {
            issue: issue.clone(),
            session_id: None,
            branch: branch.clone(),
            worktree: worktree.path().to_owned(),
            status: SessionStatus::Running,
            last_pushed_sha: None,
            last_result: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            last_run_at: None,
        });
        record.status = SessionStatus::Running;
        record.updated_at = now;
        record.last_run_at = Some(now);
        self.store.save_issue_session(&record).await?;

        let fence = opts.fence.clone();
        let agent = self.run_agent(issue, &mut record, &worktree, message, opts, stale);
        let outcome = match follow_up {
            true => {
                let fetch = self.fetch_remote_branch(issue, &mirror, &branch, creds.as_ref());
                let (fetched, outcome) = tokio::join!(fetch, agent);
                match (outcome, fetched) {
                    (Ok(reply), Ok(sha)) => {
                        remote_sha = sha;
                        Ok(reply)
                    }
                    // The agent's work is done and paid for: the forge gets one more
                    // chance before the run fails for want of a fetch.
                    (Ok(reply), Err(e)) => {
                        tracing::warn!(error = %e, "the fetch beside the agent failed; fetching again");
                        self.fetch_remote_branch(issue, &mirror, &branch, creds.as_ref()).await.map(|sha| {
                            remote_sha = sha;
                            reply
                        })
                    }
                    (Err(e), _) => Err(e),
                }
            }
            false => agent.await,
        };
        stage::reached(issue, Stage::AgentDone);
        let reply = match outcome {
            Ok(reply) => reply,
            Err(e) => return Err(self.record_failure(&mut record, e).await),
        };
        // A turn that pushes nothing records its result all the same: that is the issue's holder's to do.
        if let Some(fence) = &fence
            && !fence.holds().await
        {
            tracing::warn!(lease = fence.key(), "the issue was taken over by another replica: not recording the run");
            return Err(EngineError::LeaseLost(format!("{issue} was taken over by another replica")));
        }
        let finished = self
            .finish_run(
                issue,
                &mirror,
                &worktree,
                &branch,
                start,
                remote_sha,
                creds.as_ref(),
                fence.as_ref(),
                &mut record,
            )
            .await;
        let (commits, files_changed, pushed_to) = match finished {
            Ok(done) => done,
            Err(e) => return Err(self.record_failure(&mut record, e).await),
        };
        let result = RunResult {
            issue: issue.clone(),
            session_id: reply.session_id,
            answer: reply.answer,
            commits,
            files_changed,
            branch,
            pushed_to,
            tokens: reply.tokens,
            cost: reply.cost,
            duration: started.elapsed(),
            denied: reply.denied,
        };
        record.status = SessionStatus::Idle;
        record.last_error = None;
        record.last_result = Some(result.clone());
        record.updated_at = now_millis();
        self.store.save_issue_session(&record).await?;
        if self.keeps_checkpoints() {
            self.save_checkpoint(issue, &result.session_id, worktree.path()).await;
        }
        Ok(result)
    }

    /// Hands `text` to the issue's running turn (see [`crate::opencode::Door`]).
    pub async fn join(&self, issue: &IssueRef, text: &str) -> Result<(), EngineError> {
        let record = self.store.issue_session(issue).await?;
        let session = record
            .and_then(|r| r.session_id)
            .ok_or_else(|| EngineError::Busy(format!("{issue} has no session yet")))?;
        let worktree = self.layout.worktree(issue);
        self.driver.inject(&session, &worktree, text).await.map_err(EngineError::from)
    }

    /// Fetches the mirror and reads the remote branch: what the push's lease needs.
    async fn fetch_remote_branch(
        &self,
        issue: &IssueRef,
        mirror: &Mirror,
        branch: &str,
        creds: Option<&Credentials>,
    ) -> Result<Option<String>, EngineError> {
        let _lock = self.lock_mirror(issue.repo()).await?;
        self.sync_mirror(issue.repo(), mirror, creds).await?;
        crate::crash::point("after-fetch");
        Ok(mirror.remote_branch_sha(&self.git, branch).await?)
    }

    /// Syncs the mirror and makes sure the issue's worktree exists.
    async fn prepare_worktree(
        &self,
        issue: &IssueRef,
        mirror: &Mirror,
        branch: &str,
        creds: Option<&Credentials>,
    ) -> Result<Prepared, EngineError> {
        let _lock = self.lock_mirror(issue.repo()).await?;
        self.sync_mirror(issue.repo(), mirror, creds).await?;
        crate::crash::point("after-fetch");
        let worktree = WorkingCopy::at(self.layout.worktree(issue));
        let remote_sha = mirror.remote_branch_sha(&self.git, branch).await?;
        if worktree.exists() {
            return Ok(Prepared { worktree, remote_sha, start: None });
        }
        if worktree.is_legacy() {
            // Its commits are on the mirror's local branch, which the new copy starts from.
            worktree.remove(&self.git, mirror).await?;
        }
        // kugetsu's own local branch first (work not pushed yet), then a branch
        // already pushed (before a reset, or by someone else), which is built on and
        // never replaced, then the default branch.
        let default = mirror.default_branch(&self.git).await?;
        let default_ref = format!("refs/remotes/origin/{default}");
        let mut start = None;
        for candidate in [format!("refs/heads/{branch}"), format!("refs/remotes/origin/{branch}"), default_ref.clone()]
        {
            if let Some(sha) = mirror.resolve(&self.git, &candidate).await? {
                start = Some(sha);
                break;
            }
        }
        let start = start.ok_or_else(|| EngineError::Infra(format!("{} has no branch `{default}`", issue.repo())))?;
        let default_sha = mirror.resolve(&self.git, &default_ref).await?;
        let tracking = default_sha.as_deref().map(|sha| (default.as_str(), sha));
        // A server still running for a checkout that is gone would keep working in it.
        self.driver.release(worktree.path()).await;
        let worktree = match self.take_ready(issue, branch, &start, tracking).await {
            Some(ready) => ready,
            None => {
                let path = worktree.path().to_owned();
                let made = WorkingCopy::create(&self.git, mirror, path, Some(branch), &start, tracking).await?;
                self.hide_project_config(issue.repo(), &made, &self.git).await?;
                made
            }
        };
        Ok(Prepared { worktree, remote_sha, start: Some(start) })
    }

    async fn run_agent(
        &self,
        issue: &IssueRef,
        record: &mut IssueSession,
        worktree: &WorkingCopy,
        message: &str,
        opts: RunOptions,
        stale: bool,
    ) -> Result<crate::opencode::AgentReply, EngineError> {
        let title = format!("{SESSION_TITLE_PREFIX}{issue}");
        // Another replica may have run the issue last: its session comes from the checkpoint.
        if self.keeps_checkpoints()
            && let Some(id) = record.session_id.clone()
            && !self.restore_session(issue, &id, worktree.path(), stale).await?
        {
            record.session_id = None;
        }
        let base = match record.session_id {
            Some(_) => None,
            // A base session lives in the home of the replica that made it; the
            // others have nothing to fork.
            None if self.keeps_checkpoints() => None,
            None => self.store.base_session(issue.repo()).await?,
        };
        let existing = record.session_id.clone();
        let target = match (&existing, &base) {
            (Some(id), _) => SessionTarget::Existing(id),
            (None, Some(base)) => SessionTarget::ForkOf { base: &base.session_id, title: &title },
            (None, None) => SessionTarget::New { title: &title },
        };
        let debug_dir = self.layout.sessions_dir();
        let (started, mut session_ids) = tokio::sync::mpsc::unbounded_channel();
        let prompt = Prompt {
            dir: worktree.path(),
            target,
            text: Some(message),
            timeout: self.config.limits.run_timeout,
            debug_dir: opts.debug.then_some(debug_dir.as_path()),
            started: Some(started),
            progress: opts.progress,
            stop: opts.stop,
            files: &opts.files,
            door: opts.door,
            asks: opts.asks,
        };
        let run = self.driver.run(prompt);
        tokio::pin!(run);
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                Some(id) = session_ids.recv() => {
                    stage::reached(issue, Stage::SessionReady);
                    // Recorded before the agent starts, so `stop` finds the session to abort.
                    if record.session_id.as_deref() != Some(id.as_str()) {
                        record.session_id = Some(id);
                        self.store.save_issue_session(record).await?;
                    }
                }
            }
        };
        match outcome {
            Ok(reply) => {
                record.session_id = Some(reply.session_id.clone());
                self.store.save_issue_session(record).await?;
                Ok(reply)
            }
            Err(e) => {
                if let Some(id) = &e.session_id {
                    record.session_id = Some(id.clone());
                }
                Err(e.into())
            }
        }
    }

    /// Commits leftovers and pushes the branch if it moved. `start` is where a
    /// new working copy began; a follow-up's run began where the last one left
    /// the mirror's branch, as nothing runs in its jail between runs.
    #[allow(clippy::too_many_arguments)]
    async fn finish_run(
        &self,
        issue: &IssueRef,
        mirror: &Mirror,
        worktree: &WorkingCopy,
        branch: &str,
        start: Option<String>,
        remote_sha: Option<String>,
        creds: Option<&Credentials>,
        fence: Option<&crate::store::Fence>,
        record: &mut IssueSession,
    ) -> Result<(Vec<crate::git::Commit>, Vec<String>, Option<String>), EngineError> {
        let message = format!("kugetsu: work on {issue}\n\nChanges the agent left uncommitted.");
        worktree.clear_stale_locks()?;
        let scratch = tempfile::Builder::new()
            .prefix(".bundle-")
            .tempdir_in(&self.config.state_dir)
            .map_err(|e| EngineError::Infra(format!("cannot make a scratch directory: {e}")))?;
        let bundle = scratch.path().join("work.bundle");
        let (head, start) = {
            let _lock = self.lock_mirror(issue.repo()).await?;
            // Without a sandbox the agent can reach the mirror; undo what it did there.
            mirror.restore_config()?;
            let tips = mirror.tips(&self.git, branch).await?;
            let start = start.or_else(|| tips.local.clone());
            // Only what the mirror lacks: the working copy may hold commits of an
            // earlier run that never reached the mirror (kugetsu was killed first).
            let confined = self.working_copy_git(worktree, Some(scratch.path()));
            let committed = worktree.commit_and_bundle(&confined, &message, &tips.all, &bundle).await?;
            (self.take_commits(mirror, branch, committed, &bundle).await?, start)
        };
        stage::reached(issue, Stage::Committed);
        // The listing starts at the run's start (a commit the mirror had), or at the
        // default branch where that is unknown (a crash before the mirror had the branch).
        let since = match start {
            Some(start) => start,
            None => mirror.resolve(&self.git, "refs/remotes/origin/HEAD").await?.unwrap_or_else(|| head.clone()),
        };
        let listing = async {
            let commits = mirror.commits_between(&self.git, &since, &head).await?;
            let files = mirror.files_changed_between(&self.git, &since, &head).await?;
            Ok::<_, EngineError>((commits, files))
        };
        if remote_sha.as_deref() == Some(head.as_str()) {
            let (commits, files) = listing.await?;
            record.last_pushed_sha = Some(head);
            return Ok((commits, files, None));
        }
        // The lease is what the remote branch must still be for the push to go on.
        let lease = match (remote_sha, &record.last_pushed_sha) {
            (None, _) => None,
            // Our branch contains it (we pushed it, perhaps just before a crash): a fast-forward.
            (Some(remote), _) if mirror.is_ancestor(&self.git, &remote, &head).await => Some(remote),
            // A branch that appeared after the worktree was cut is someone else's:
            // the first push expects no branch at all, and is refused.
            (Some(_), None) => None,
            // Someone else pushed since our last push: the push is refused, their work kept.
            (Some(_), Some(ours)) => Some(ours.clone()),
        };
        let push = async {
            let _lock = self.lock_mirror(issue.repo()).await?;
            crate::crash::point("before-push");
            // As close to the push as it can be: a replica paused past its lease
            // finds the issue taken over here, and pushes nothing.
            if let Some(fence) = fence
                && !fence.holds().await
            {
                tracing::warn!(lease = fence.key(), "the issue was taken over by another replica: not pushing");
                return Err(EngineError::LeaseLost(format!(
                    "{issue} was taken over by another replica; this one pushes nothing"
                )));
            }
            mirror.restore_config()?;
            // A refused lease is an answer, not an outage: only other failures are retried.
            let retryable = |e: &GitError| e.may_pass() && !is_lease_refusal(&e.to_string());
            with_retries("pushing the branch", retryable, || {
                mirror.push_branch(&self.git, branch, lease.as_deref(), creds)
            })
            .await
            .map_err(|e| push_error(branch, e))?;
            crate::crash::point("after-push");
            stage::reached(issue, Stage::Pushed);
            Ok::<_, EngineError>(())
        };
        // Reads of the mirror, beside the push rather than before it.
        let (listed, pushed) = tokio::join!(listing, push);
        pushed?;
        let (commits, files) = listed?;
        record.last_pushed_sha = Some(head);
        Ok((commits, files, Some(mirror.url().to_owned())))
    }

    /// Brings the working copy's HEAD into the mirror's local `branch` and returns
    /// it. The commits travel as a bundle, so no git that kugetsu runs in its
    /// mirror reads anything from the agent's repository.
    async fn take_commits(
        &self,
        mirror: &Mirror,
        branch: &str,
        committed: Committed,
        path: &std::path::Path,
    ) -> Result<String, EngineError> {
        let Committed { head, bundle } = committed;
        if let Err(why) = bundle {
            // git makes no bundle without new commits: HEAD is one the mirror has.
            if !mirror.has_commit(&self.git, &head).await {
                return Err(GitError::Failed { args: "bundle create".into(), stderr: why }.into());
            }
            mirror.set_branch(&self.git, branch, &head).await?;
            return Ok(head);
        }
        // The jail that wrote it is gone with its last process, so nothing can swap
        // it now; a link in its place would make kugetsu's git read whatever it names.
        if !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
            return Err(EngineError::Infra("the working copy's bundle is not a plain file".into()));
        }
        let bundle = crate::git::Bundle::open(path)?;
        if bundle.head != head {
            return Err(EngineError::Infra("the working copy's bundle is not of its HEAD".into()));
        }
        mirror.import_bundle(&self.git, bundle, branch).await.map_err(|e| match e {
            GitError::Failed { args, stderr } if args.starts_with("index-pack") => {
                tracing::warn!(%stderr, "the working copy's objects failed git's checks");
                EngineError::BadInput(
                    "the agent's commits hold objects that git's checks refuse, so nothing was pushed \
                     and `reset` starts the issue afresh"
                        .into(),
                )
            }
            other => other.into(),
        })?;
        Ok(head)
    }

    /// git for a working copy the agent has had: confined like the agent, so
    /// whatever it planted there (config, hooks, filters) runs in its jail, never
    /// with kugetsu's reach. `scratch` is where it may write a bundle.
    fn working_copy_git(&self, worktree: &WorkingCopy, scratch: Option<&std::path::Path>) -> Git {
        let mut jail = Jail::for_checkout(&self.layout, worktree.path());
        jail.writable.extend(scratch.map(std::path::Path::to_owned));
        self.git.confined(&self.sandbox, jail)
    }

    async fn record_failure(&self, record: &mut IssueSession, error: EngineError) -> EngineError {
        record.status = SessionStatus::Failed;
        record.last_error = Some(error.to_string());
        record.updated_at = now_millis();
        if let Err(e) = self.store.save_issue_session(record).await {
            tracing::error!(error = %e, "could not record a failed run");
        }
        error
    }

    /// Creates (or with `force` replaces) the repository's base session, which new
    /// issue sessions are forked from. `message` primes it.
    pub async fn init(&self, repo: &RepoRef, message: Option<&str>, force: bool) -> Result<BaseSession, EngineError> {
        let instance = self.instance(repo)?;
        let previous = self.store.base_session(repo).await?;
        if let (Some(previous), false) = (&previous, force) {
            return Err(EngineError::BadInput(format!(
                "{repo} already has a base session ({}); pass --force to replace it",
                previous.session_id
            )));
        }
        let mirror = self.mirror(repo, instance);
        let path = self.layout.base_worktree(repo);
        {
            let _lock = self.lock_mirror(repo).await?;
            let creds = self.credentials(instance).await?;
            self.sync_mirror(repo, &mirror, creds.as_ref()).await?;
            let default = mirror.default_branch(&self.git).await?;
            let start = format!("refs/remotes/origin/{default}");
            WorkingCopy::at(path.clone()).remove(&self.git, &mirror).await?;
            let sha = mirror
                .resolve(&self.git, &start)
                .await?
                .ok_or_else(|| EngineError::Infra(format!("{repo} has no branch `{default}`")))?;
            let base =
                WorkingCopy::create(&self.git, &mirror, path.clone(), None, &sha, Some((&default, &sha))).await?;
            self.hide_project_config(repo, &base, &self.git).await?;
        }
        let title = format!("{SESSION_TITLE_PREFIX}base {repo}");
        let prompt = Prompt {
            dir: &path,
            target: SessionTarget::New { title: &title },
            text: message,
            timeout: self.config.limits.run_timeout,
            debug_dir: None,
            started: None,
            progress: None,
            stop: None,
            files: &[],
            door: None,
            asks: None,
        };
        let reply = self.driver.run(prompt).await?;
        if let Some(previous) = previous
            && let Err(e) = self.driver.delete_session(&previous.session_id, &path).await
        {
            tracing::warn!(error = %e, "could not delete the replaced base session");
        }
        let base =
            BaseSession { repo: repo.clone(), session_id: reply.session_id, worktree: path, created_at: now_millis() };
        self.store.save_base_session(&base).await?;
        Ok(base)
    }

    /// Keeps the repository's own opencode config and plugins out of the worktree,
    /// unless the operator trusts the repository. `git` is kugetsu's own for a
    /// working copy it has just made, and a confined one otherwise.
    async fn hide_project_config(&self, repo: &RepoRef, worktree: &WorkingCopy, git: &Git) -> Result<(), EngineError> {
        if self.config.opencode.trusted_repos.contains(repo) {
            return Ok(());
        }
        Ok(worktree.hide_paths(git, &[".opencode", "opencode.json", "opencode.jsonc"]).await?)
    }

    fn worktree_dir_for_lookup(&self, record: &IssueSession) -> Option<PathBuf> {
        let base = self.layout.base_worktree(record.issue.repo());
        [record.worktree.clone(), base].into_iter().find(|p| p.join(".git").exists())
    }
}

/// The issue's working copy, ready for a run.
struct Prepared {
    worktree: WorkingCopy,
    /// The remote branch's commit as last fetched, when it was fetched before the run.
    remote_sha: Option<String>,
    /// The commit a working copy made for this run starts at.
    start: Option<String>,
}

fn is_lease_refusal(git_error: &str) -> bool {
    git_error.contains("stale info") || git_error.contains("rejected")
}

fn push_error(branch: &str, e: GitError) -> EngineError {
    let text = e.to_string();
    if is_lease_refusal(&text) {
        EngineError::Infra(format!(
            "the remote branch `{branch}` changed since kugetsu last pushed it, so kugetsu did not overwrite it; \
             the work is kept in the issue's worktree ({text})"
        ))
    } else if e.is_auth_failure() {
        EngineError::Infra(format!("the forge refused the bot's token when pushing `{branch}`: {text}"))
    } else {
        EngineError::Infra(format!("pushing `{branch}` failed: {text}"))
    }
}
