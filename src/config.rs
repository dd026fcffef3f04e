//! The one TOML configuration file, loaded once at start-up.
//!
//! Secrets never live in the file: an instance names the environment variables that
//! hold its token and webhook secret, and those are read here, once, into
//! [`SecretString`]s whose `Debug` output is redacted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::Deserialize;

use crate::issue_ref::InstanceName;
use crate::sandbox::SandboxKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    Github,
    Gitea,
    Forgejo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// One supervised `opencode serve`, spoken to over HTTP.
    #[default]
    Server,
    /// One `opencode run` process per prompt.
    Cli,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: PathBuf,
    /// `postgres://…`: several replicas share this database. Without it, SQLite in `state_dir`.
    #[serde(default)]
    database_url: Option<SecretString>,
    /// The environment variable that holds `database_url`, to keep its password out of the file.
    #[serde(default)]
    database_url_env: Option<String>,
    #[serde(default)]
    sandbox: SandboxKind,
    #[serde(default)]
    opencode: OpencodeSettings,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    git: GitSettings,
    #[serde(default)]
    bot: BotSettings,
    #[serde(default)]
    pool: PoolSettings,
    #[serde(default)]
    budgets: crate::budget::Budgets,
    #[serde(default)]
    instances: BTreeMap<InstanceName, RawInstance>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    kind: ForgeKind,
    api_url: String,
    git_url: String,
    web_url: Option<String>,
    token_env: Option<String>,
    webhook_secret_env: Option<String>,
    /// `owner` or `owner/repo` → the variable holding that scope's own secret.
    #[serde(default)]
    webhook_secrets_env: BTreeMap<String, String>,
    bot_login: Option<String>,
    /// GitHub App authentication instead of a token: all three, or none.
    app_id: Option<u64>,
    app_key_env: Option<String>,
    installation_id: Option<u64>,
    #[serde(default)]
    pull_requests: PullRequestMode,
    #[serde(default)]
    review_comments: ReviewComments,
    /// `owner/repo` → what differs there from the instance's settings.
    #[serde(default)]
    repos: BTreeMap<String, RepoOverrides>,
}

/// Whether kugetsu opens a pull request for an issue's branch once it has
/// commits, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PullRequestMode {
    /// A draft; on Gitea and Forgejo, which have no drafts, a `WIP:` title.
    #[default]
    Draft,
    Ready,
    /// None: the answer links the branch's compare page instead.
    Off,
}

/// Which review comments on kugetsu's own pull requests start a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReviewComments {
    /// A review whose text or line comments mention the bot.
    #[default]
    Mention,
    /// Every review a person allowed to ask submits there.
    All,
}

/// One repository's own settings, over its instance's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoOverrides {
    pub pull_requests: Option<PullRequestMode>,
    pub review_comments: Option<ReviewComments>,
    /// Repairs of failing CI on kugetsu's branches; off unless set.
    pub ci_fix: Option<CiFix>,
}

/// How far kugetsu goes repairing its own branch's failing CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiFix {
    /// Repairs per issue until a person asks again.
    pub max_attempts: u32,
}

/// A GitHub App installation the bot acts as.
#[derive(Debug, Clone)]
pub struct GithubApp {
    pub app_id: u64,
    pub installation_id: u64,
    /// The app's RSA private key (PEM).
    pub private_key: SecretString,
}

/// A configured forge instance with its secrets resolved.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: InstanceName,
    pub kind: ForgeKind,
    /// Base of the forge's REST API, e.g. `https://api.github.com` or `http://gitea:3000/api/v1`.
    pub api_url: String,
    /// Base that clone URLs are built from: `{git_url}/{owner}/{repo}.git`.
    pub git_url: String,
    /// The forge's web pages as people open them, for the status page's links;
    /// by default taken from `api_url` ([`crate::forge::web_url`]).
    pub web_url: String,
    pub token_env: Option<String>,
    pub token: Option<SecretString>,
    pub webhook_secret_env: Option<String>,
    pub webhook_secret: Option<SecretString>,
    /// Secrets of single owners or repositories, so that admins of different
    /// organisations need not share the instance's secret.
    pub scoped_webhook_secrets: Vec<(SecretScope, SecretString)>,
    /// The bot account's login on this forge; its own comments are ignored.
    /// Defaults to `bot.handle`.
    pub bot_login: String,
    pub github_app: Option<GithubApp>,
    pub pull_requests: PullRequestMode,
    pub review_comments: ReviewComments,
    /// By `owner/repo`, lower-cased: logins and names are case-insensitive on both forges.
    pub repos: BTreeMap<String, RepoOverrides>,
}

/// Which repositories a webhook secret may sign deliveries for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretScope {
    Instance,
    Owner(String),
    Repo { owner: String, name: String },
}

impl SecretScope {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let valid = |s: &str| {
            !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match text.split_once('/') {
            None if valid(text) => Ok(Self::Owner(text.to_owned())),
            Some((owner, name)) if valid(owner) && valid(name) => {
                Ok(Self::Repo { owner: owner.to_owned(), name: name.to_owned() })
            }
            _ => bail!("webhook_secrets_env keys are `owner` or `owner/repo`, not `{text}`"),
        }
    }

    /// Whether a delivery signed with this scope's secret may speak for `owner/name`.
    pub fn covers(&self, owner: &str, name: &str) -> bool {
        match self {
            Self::Instance => true,
            Self::Owner(o) => o.eq_ignore_ascii_case(owner),
            Self::Repo { owner: o, name: n } => o.eq_ignore_ascii_case(owner) && n.eq_ignore_ascii_case(name),
        }
    }
}

impl Instance {
    /// Every webhook secret of the instance, each with what it may sign for.
    pub fn webhook_secrets(&self) -> Vec<(SecretScope, SecretString)> {
        let mut all: Vec<_> = self.webhook_secret.iter().map(|s| (SecretScope::Instance, s.clone())).collect();
        all.extend(self.scoped_webhook_secrets.iter().cloned());
        all
    }

    /// The secret that should sign deliveries for `owner` (and `repo`, if
    /// given): the narrowest scope's, else the instance's.
    pub fn webhook_secret_for(&self, owner: &str, repo: Option<&str>) -> Option<SecretString> {
        let scoped = |wanted: &dyn Fn(&SecretScope) -> bool| {
            self.scoped_webhook_secrets.iter().find(|(scope, _)| wanted(scope)).map(|(_, s)| s.clone())
        };
        let for_repo = repo
            .and_then(|name| scoped(&|scope| matches!(scope, SecretScope::Repo { .. }) && scope.covers(owner, name)));
        for_repo
            .or_else(|| scoped(&|scope| matches!(scope, SecretScope::Owner(o) if o.eq_ignore_ascii_case(owner))))
            .or_else(|| self.webhook_secret.clone())
    }

    /// `owner/repo`'s own settings, if it has any.
    fn overrides(&self, owner: &str, repo: &str) -> Option<&RepoOverrides> {
        self.repos.get(&format!("{owner}/{repo}").to_ascii_lowercase())
    }

    /// Whether and how pull requests are opened in `owner/repo`.
    pub fn pull_requests_in(&self, owner: &str, repo: &str) -> PullRequestMode {
        self.overrides(owner, repo).and_then(|o| o.pull_requests).unwrap_or(self.pull_requests)
    }

    /// CI repair in `owner/repo`, where it is turned on.
    pub fn ci_fix_in(&self, owner: &str, repo: &str) -> Option<CiFix> {
        self.overrides(owner, repo).and_then(|o| o.ci_fix)
    }

    /// Which reviews on kugetsu's pull requests in `owner/repo` start a run.
    pub fn review_comments_in(&self, owner: &str, repo: &str) -> ReviewComments {
        self.overrides(owner, repo).and_then(|o| o.review_comments).unwrap_or(self.review_comments)
    }

    pub fn clone_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}.git", self.git_url.trim_end_matches('/'))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpencodeSettings {
    /// The opencode executable; a bare name is looked up on `PATH`.
    pub binary: PathBuf,
    pub driver: DriverKind,
    /// `provider/model`; when unset, the opencode config file's `model` applies.
    pub model: Option<String>,
    pub agent: Option<String>,
    /// Passed to opencode as `OPENCODE_CONFIG`: providers, model, permission rules.
    pub config: Option<PathBuf>,
    /// Names of environment variables that opencode may see, such as the provider's API key.
    /// Everything else is scrubbed from its environment.
    pub env: Vec<String>,
    /// Where opencode installs provider packages (its `XDG_CONFIG_HOME`).
    /// Defaults to `<state_dir>/opencode/config`.
    pub package_dir: Option<PathBuf>,
    /// The server driver restarts `opencode serve` between runs once it uses more than this.
    pub memory_limit_mib: u64,
    /// A run is aborted once opencode has retried a failing model call this many times.
    pub max_model_retries: u32,
    /// `opencode serve` processes kept at once, one per recently active issue; the
    /// least recently used idle one is stopped to make room.
    pub max_servers: usize,
    /// An issue's `opencode serve` is stopped after this long without a run.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// Repositories whose own opencode config and plugins (`opencode.json`,
    /// `.opencode/`) opencode may load. For all others they are kept out of the worktree.
    pub trusted_repos: Vec<crate::issue_ref::RepoRef>,
}

impl Default for OpencodeSettings {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("opencode"),
            driver: DriverKind::Server,
            model: None,
            agent: None,
            config: None,
            env: Vec::new(),
            package_dir: None,
            memory_limit_mib: 2048,
            max_model_retries: 3,
            max_servers: 8,
            idle_timeout: Duration::from_secs(30 * 60),
            startup_timeout: Duration::from_secs(60),
            trusted_repos: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock limit of one agent run; the session is aborted when it passes.
    #[serde(with = "humantime_serde")]
    pub run_timeout: Duration,
    /// How many agent runs may proceed at once across all issues.
    pub concurrency: usize,
    /// Runs one user may ask for in an hour, across repositories.
    pub per_user_per_hour: u32,
    /// Runs one repository may receive in an hour.
    pub per_repo_per_hour: u32,
    /// Work jobs one issue may have queued or running; more are refused politely.
    pub queued_per_issue: u32,
    /// Below this much free space in the state directory, runs are deferred.
    pub min_free_disk_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            run_timeout: Duration::from_secs(30 * 60),
            concurrency: 2,
            per_user_per_hour: 30,
            per_repo_per_hour: 120,
            queued_per_issue: 5,
            min_free_disk_mib: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitSettings {
    pub user_name: String,
    pub user_email: String,
    /// Issue branches are `<branch_prefix><number>`.
    pub branch_prefix: String,
    /// Limit for one git command; a fetch of a large repository needs the most.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for GitSettings {
    fn default() -> Self {
        Self {
            user_name: "kugetsu".into(),
            user_email: "kugetsu@localhost".into(),
            branch_prefix: "kugetsu/".into(),
            timeout: Duration::from_secs(10 * 60),
        }
    }
}

/// How the webhook bot listens and what triggers it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BotSettings {
    /// The handle people mention, without `@`.
    pub handle: String,
    /// Address `kugetsu serve` listens on.
    pub listen: String,
    /// Labels that start a run when put on an issue (or present when it is opened).
    pub trigger_labels: Vec<String>,
    /// One-line reply to people without write access who mention the bot; unset: no reply.
    pub deny_reply: Option<String>,
    /// How long a collaborator-permission answer is trusted.
    #[serde(with = "humantime_serde")]
    pub permission_cache: Duration,
    /// How long one forge API call may take before it counts as a transient fault.
    #[serde(with = "humantime_serde")]
    pub api_timeout: Duration,
    /// How often one forge call is tried on transient faults before the job is put back.
    pub api_attempts: u32,
    /// The first wait between tries of a forge call; it doubles, with jitter.
    #[serde(with = "humantime_serde")]
    pub api_backoff: Duration,
    /// The first wait before a job put back by forge faults is tried again; it doubles.
    #[serde(with = "humantime_serde")]
    pub requeue_delay: Duration,
    /// How long after its trigger a job keeps being retried before it gives up.
    #[serde(with = "humantime_serde")]
    pub retry_deadline: Duration,
    /// A webhook client must send its request headers within this.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// The longest a webhook connection stays open, body and keep-alive included.
    #[serde(with = "humantime_serde")]
    pub connection_timeout: Duration,
    /// Webhook connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// How often the served repositories' recent comments are read for mentions
    /// no delivery brought (also at start-up); 0 turns it off.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Finished jobs, and the deliveries and event identities that guard against
    /// replays, are removed once this old (hourly, and by `kugetsu prune`).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// A closed issue's working copy is removed this long after it was closed
    /// (its session and record stay, so a reopened issue goes on where it was).
    #[serde(with = "humantime_serde")]
    pub closed_issue_grace: Duration,
    /// The URL the forges reach kugetsu at, for `kugetsu hooks install`: webhooks
    /// point at `<public_url>/webhooks/<instance>`.
    pub public_url: Option<String>,
    /// Where the status page (`/`) and `/metrics` are served, apart from the
    /// webhooks; unset serves neither.
    pub status_listen: Option<String>,
    /// The variable holding the password the status listener asks for (HTTP
    /// Basic, any user name). Agents share the host's network, so without one
    /// they can read the page too.
    pub status_password_env: Option<String>,
    /// Its value, read with the config.
    #[serde(skip)]
    pub status_password: Option<SecretString>,
    /// What people see while a run goes on: a progress comment edited as it
    /// goes, and reactions (`comment`), or only the reactions (`reaction`).
    pub progress: ProgressMode,
    /// The shortest time between two edits of a progress comment.
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
    /// The largest attachment fetched for the agent, in MiB; 0 fetches none.
    pub attachment_max_mib: u64,
    /// How long a run waits for a writer to answer the agent's question (or
    /// permission request) before it goes on without one.
    #[serde(with = "humantime_serde")]
    pub question_timeout: Duration,
    /// How long a replica's leases last without a heartbeat: a replica not heard
    /// from for this long is taken for dead, and its issues and jobs taken over.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgressMode {
    Comment,
    Reaction,
}

impl Default for BotSettings {
    fn default() -> Self {
        Self {
            handle: "kugetsu".into(),
            listen: "127.0.0.1:8080".into(),
            trigger_labels: vec!["kugetsu".into()],
            deny_reply: None,
            permission_cache: Duration::from_secs(60),
            api_timeout: Duration::from_secs(30),
            api_attempts: 4,
            api_backoff: Duration::from_secs(1),
            requeue_delay: Duration::from_secs(30),
            retry_deadline: Duration::from_secs(24 * 3600),
            header_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(60),
            max_connections: 512,
            reconcile_interval: Duration::from_secs(5 * 60),
            retention: Duration::from_secs(30 * 24 * 3600),
            closed_issue_grace: Duration::from_secs(7 * 24 * 3600),
            public_url: None,
            status_listen: None,
            status_password_env: None,
            status_password: None,
            progress: ProgressMode::Comment,
            progress_interval: Duration::from_secs(10),
            attachment_max_mib: 10,
            question_timeout: Duration::from_secs(30 * 60),
            lease: Duration::from_secs(30),
        }
    }
}

/// Checkouts made ready before any issue needs them, each with its opencode
/// started and warmed up, so a new issue starts like a follow-up. Only `kugetsu
/// serve` keeps them, and only in a sandbox (where a checkout can be renamed
/// under its opencode).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSettings {
    /// Ready checkouts per repository; 0 turns the pool off.
    pub size: usize,
    /// The most resident memory the ready checkouts' opencode servers may hold
    /// together (each holds about 500 MiB).
    pub memory_mib: u64,
    /// Repositories made ready at start-up. Others are once they have had a run.
    pub repos: Vec<crate::issue_ref::RepoRef>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { size: 1, memory_mib: 2048, repos: Vec::new() }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    /// PostgreSQL's URL, when the state is there rather than in SQLite in `state_dir`.
    pub database_url: Option<SecretString>,
    /// How agent-steered processes are confined; `none` only by explicit choice.
    pub sandbox: SandboxKind,
    /// The file this was loaded from, hidden from the sandbox (it may name secrets).
    pub source: Option<PathBuf>,
    pub opencode: OpencodeSettings,
    pub limits: Limits,
    pub git: GitSettings,
    pub bot: BotSettings,
    pub pool: PoolSettings,
    /// What issues, repositories and instances may spend, and the loop breaker.
    pub budgets: crate::budget::Budgets,
    pub instances: BTreeMap<InstanceName, Instance>,
}

impl Config {
    /// Loads the file and resolves secrets from the process environment.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Self::parse(&text, base, |name| std::env::var(name).ok())
            .with_context(|| format!("invalid config file {}", path.display()))?;
        config.source = std::path::absolute(path).ok();
        Ok(config)
    }

    /// Parses config text; relative paths are taken from `base`, secrets from `env`.
    pub fn parse(text: &str, base: &Path, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let raw: RawConfig = toml::from_str(text)?;
        let mut opencode = raw.opencode;
        opencode.config = opencode.config.map(|p| base.join(p));
        opencode.package_dir = opencode.package_dir.map(|p| base.join(p));
        if opencode.binary.components().count() > 1 {
            opencode.binary = base.join(&opencode.binary);
        }
        if opencode.max_servers == 0 {
            bail!("opencode.max_servers must be at least 1");
        }
        if raw.limits.concurrency == 0 {
            bail!("limits.concurrency must be at least 1");
        }
        if raw.bot.api_attempts == 0 {
            bail!("bot.api_attempts must be at least 1");
        }
        // Every edit is an API call; a run of hours must not spend a forge's rate limit.
        if raw.bot.progress_interval < Duration::from_secs(1) {
            bail!("bot.progress_interval must be at least 1s");
        }
        // Heartbeats come three times a lease; shorter, a busy database's pause is a death.
        if raw.bot.lease < Duration::from_secs(1) {
            bail!("bot.lease must be at least 1s");
        }
        if raw.bot.question_timeout.is_zero() {
            bail!("bot.question_timeout must be more than zero");
        }
        raw.budgets.validate().map_err(anyhow::Error::msg)?;
        // A replay, or the reconciler's look back, must still find what it repeats.
        if raw.bot.retention < raw.bot.retry_deadline.max(Duration::from_secs(3600)) {
            bail!("bot.retention must be at least bot.retry_deadline, and at least an hour");
        }
        validate_branch_prefix(&raw.git.branch_prefix)?;
        let state_dir = base.join(raw.state_dir);
        // Sandboxes show each checkout there, over whatever else they show.
        let inside = Path::new(crate::sandbox::CHECKOUTS_INSIDE);
        for (key, path) in [("state_dir", Some(&state_dir)), ("opencode.package_dir", opencode.package_dir.as_ref())]
            .into_iter()
            .chain([("opencode.config", opencode.config.as_ref())])
        {
            if path.is_some_and(|p| p.starts_with(inside)) {
                bail!("{key} must not be under {}, where sandboxes show the checkouts", inside.display());
            }
        }
        let mut bot = raw.bot;
        // Only `serve` needs it, and refuses to start without it.
        bot.status_password =
            bot.status_password_env.as_deref().and_then(&env).filter(|v| !v.is_empty()).map(SecretString::from);
        let raw_bot_handle = bot.handle.clone();
        if raw_bot_handle.is_empty() || raw_bot_handle.starts_with('@') {
            bail!("bot.handle must be a login without `@`");
        }
        let instances = raw
            .instances
            .into_iter()
            .map(|(name, raw)| {
                let instance = resolve_instance(name.clone(), raw, &raw_bot_handle, &env)
                    .with_context(|| format!("instance `{name}`"))?;
                Ok((name, instance))
            })
            .collect::<anyhow::Result<_>>()?;
        let database_url = database_url(raw.database_url, raw.database_url_env.as_deref(), &env)?;
        Ok(Self {
            state_dir,
            database_url,
            sandbox: raw.sandbox,
            source: None,
            opencode,
            limits: raw.limits,
            git: raw.git,
            bot,
            pool: raw.pool,
            budgets: raw.budgets,
            instances,
        })
    }

    pub fn instance(&self, name: &InstanceName) -> Option<&Instance> {
        self.instances.get(name)
    }
}

/// `database_url`, given in the file or through the variable `database_url_env` names.
fn database_url(
    given: Option<SecretString>,
    var: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<SecretString>> {
    use secrecy::ExposeSecret;
    let url = match (given, var) {
        (Some(_), Some(_)) => bail!("set database_url or database_url_env, not both"),
        (Some(url), None) => url,
        (None, Some(var)) => match env(var).filter(|v| !v.is_empty()) {
            Some(url) => SecretString::from(url),
            None => bail!("database_url_env names {var}, which is not set"),
        },
        (None, None) => return Ok(None),
    };
    // The URL is not echoed: it may hold a password.
    if !["postgres://", "postgresql://"].iter().any(|scheme| url.expose_secret().starts_with(scheme)) {
        bail!("database_url must be a PostgreSQL URL (postgres://…); without it, kugetsu keeps SQLite in state_dir");
    }
    Ok(Some(url))
}

fn resolve_instance(
    name: InstanceName,
    raw: RawInstance,
    handle: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Instance> {
    let secret = |var: &Option<String>| var.as_deref().and_then(env).filter(|v| !v.is_empty());
    for url in [Some(&raw.api_url), Some(&raw.git_url), raw.web_url.as_ref()].into_iter().flatten() {
        if url.trim().is_empty() {
            bail!("api_url, git_url and web_url must not be empty");
        }
        // A password in a URL would reach argv and logs; tokens belong in token_env.
        let authority = url.split_once("://").map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        if authority.contains('@') {
            bail!("api_url, git_url and web_url must not hold credentials; put the token in token_env");
        }
    }
    let github_app = match (raw.app_id, &raw.app_key_env, raw.installation_id) {
        (None, None, None) => None,
        (Some(app_id), Some(var), Some(installation_id)) if raw.kind == ForgeKind::Github => {
            let private_key = env(var).filter(|v| !v.is_empty()).map(SecretString::from);
            let Some(private_key) = private_key else {
                bail!("the GitHub App key variable {var} (app_key_env) is not set");
            };
            Some(GithubApp { app_id, installation_id, private_key })
        }
        _ => bail!("a GitHub App needs app_id, app_key_env and installation_id, on a github instance"),
    };
    let mut scoped_webhook_secrets = Vec::new();
    for (scope, var) in &raw.webhook_secrets_env {
        let scope = SecretScope::parse(scope)?;
        let Some(value) = secret(&Some(var.clone())) else {
            bail!("the webhook secret variable {var} (webhook_secrets_env) is not set");
        };
        scoped_webhook_secrets.push((scope, SecretString::from(value)));
    }
    let mut repos = BTreeMap::new();
    for (key, overrides) in raw.repos {
        if !matches!(SecretScope::parse(&key), Ok(SecretScope::Repo { .. })) {
            bail!("keys of `repos` are `owner/repo`, not `{key}`");
        }
        if overrides.ci_fix.is_some_and(|c| c.max_attempts == 0) {
            bail!("repos.\"{key}\".ci_fix.max_attempts must be at least 1; leave ci_fix out to turn repairs off");
        }
        repos.insert(key.to_ascii_lowercase(), overrides);
    }
    Ok(Instance {
        pull_requests: raw.pull_requests,
        review_comments: raw.review_comments,
        repos,
        scoped_webhook_secrets,
        github_app,
        name,
        kind: raw.kind,
        token: secret(&raw.token_env).map(SecretString::from),
        webhook_secret: secret(&raw.webhook_secret_env).map(SecretString::from),
        web_url: raw.web_url.unwrap_or_else(|| crate::forge::web_url(&raw.api_url)),
        api_url: raw.api_url,
        git_url: raw.git_url,
        token_env: raw.token_env,
        webhook_secret_env: raw.webhook_secret_env,
        bot_login: raw.bot_login.unwrap_or_else(|| handle.to_owned()),
    })
}

fn validate_branch_prefix(prefix: &str) -> anyhow::Result<()> {
    let ok = !prefix.is_empty()
        && prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'))
        && !prefix.starts_with(['/', '-'])
        && !prefix.contains("//");
    if !ok {
        bail!("git.branch_prefix `{prefix}` must be ASCII letters, digits, `-`, `_` and single `/`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const MINIMAL: &str = r#"
        state_dir = "state"
        [instances.gitea]
        kind = "gitea"
        api_url = "http://gitea:3000/api/v1"
        git_url = "http://gitea:3000"
        token_env = "T"
        webhook_secret_env = "S"
    "#;

    #[test]
    fn database_url_selects_postgres_and_its_password_stays_hidden() {
        let with = |line: &str| format!("{line}\n{MINIMAL}");
        let none = Config::parse(MINIMAL, Path::new("/k"), |_| None).unwrap();
        assert!(none.database_url.is_none(), "SQLite unless a database_url is given");
        let url = "postgres://kugetsu:pw-canary-789@db:5432/kugetsu";
        let given = Config::parse(&with(&format!("database_url = \"{url}\"")), Path::new("/k"), |_| None).unwrap();
        assert_eq!(given.database_url.as_ref().map(|u| u.expose_secret().to_owned()).as_deref(), Some(url));
        assert!(!format!("{given:?}").contains("pw-canary-789"));
        let env = |k: &str| (k == "DB").then(|| url.to_owned());
        let from_env = Config::parse(&with("database_url_env = \"DB\""), Path::new("/k"), env).unwrap();
        assert_eq!(from_env.database_url.map(|u| u.expose_secret().to_owned()).as_deref(), Some(url));
        for (line, why) in [
            ("database_url = \"mysql://u:pw-canary-789@db/k\"", "must be a PostgreSQL URL"),
            ("database_url_env = \"MISSING\"", "MISSING, which is not set"),
        ] {
            let err = format!("{:#}", Config::parse(&with(line), Path::new("/k"), |_| None).unwrap_err());
            assert!(err.contains(why) && !err.contains("pw-canary-789"), "{err}");
        }
        let both = with(&format!("database_url = \"{url}\"\ndatabase_url_env = \"DB\""));
        assert!(format!("{:#}", Config::parse(&both, Path::new("/k"), env).unwrap_err()).contains("not both"));
    }

    #[test]
    fn resolves_secrets_from_env_and_redacts_them() {
        let env = |k: &str| match k {
            "T" => Some("tok-canary-123".to_owned()),
            "S" => Some("sec-canary-456".to_owned()),
            _ => None,
        };
        let config = Config::parse(MINIMAL, Path::new("/etc/kugetsu"), env).unwrap();
        let gitea = config.instance(&"gitea".parse().unwrap()).unwrap();
        assert_eq!(gitea.token.as_ref().unwrap().expose_secret(), "tok-canary-123");
        let debug = format!("{config:?}");
        assert!(!debug.contains("tok-canary-123") && !debug.contains("sec-canary-456"), "{debug}");
        assert_eq!(config.state_dir, PathBuf::from("/etc/kugetsu/state"));
        assert_eq!(gitea.clone_url("acme", "widget"), "http://gitea:3000/acme/widget.git");
    }

    #[test]
    fn the_web_address_defaults_to_the_api_address_without_its_path() {
        let env = |_: &str| Some("x".to_owned());
        let config = Config::parse(MINIMAL, Path::new("/etc/kugetsu"), env).unwrap();
        let gitea = config.instance(&"gitea".parse().unwrap()).unwrap();
        assert_eq!(gitea.web_url, "http://gitea:3000");
        let set = MINIMAL.replace("token_env", "web_url = \"https://git.example.com\"\n        token_env");
        let config = Config::parse(&set, Path::new("/etc/kugetsu"), env).unwrap();
        assert_eq!(config.instance(&"gitea".parse().unwrap()).unwrap().web_url, "https://git.example.com");
        let with_password =
            MINIMAL.replace("token_env", "web_url = \"https://u:p@git.example.com\"\n        token_env");
        let err = Config::parse(&with_password, Path::new("/etc/kugetsu"), env).unwrap_err();
        assert!(format!("{err:#}").contains("credentials"), "{err:#}");
    }

    #[test]
    fn pull_requests_are_drafts_unless_the_instance_or_the_repository_says_otherwise() {
        let env = |_: &str| Some("x".to_owned());
        let gitea = |text: &str| {
            let config = Config::parse(text, Path::new("/"), env)?;
            Ok::<_, anyhow::Error>(config.instance(&"gitea".parse().unwrap()).unwrap().clone())
        };
        assert_eq!(gitea(MINIMAL).unwrap().pull_requests_in("acme", "widget"), PullRequestMode::Draft);
        let set = MINIMAL.replace(
            "token_env",
            "pull_requests = \"off\"\n        repos = { \"Acme/Site\" = { pull_requests = \"ready\" } }\n        token_env",
        );
        let instance = gitea(&set).unwrap();
        assert_eq!(instance.pull_requests_in("acme", "widget"), PullRequestMode::Off);
        assert_eq!(instance.pull_requests_in("acme", "site"), PullRequestMode::Ready, "names are case-insensitive");
        for bad in [
            "repos = { \"acme\" = {} }",
            "repos = { \"a/b\" = { nope = 1 } }",
            "pull_requests = \"maybe\"",
            "repos = { \"a/b\" = { ci_fix = { max_attempts = 0 } } }",
        ] {
            let text = MINIMAL.replace("token_env", &format!("{bad}\n        token_env"));
            assert!(gitea(&text).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn accepted_branch_prefixes_make_valid_git_branch_names() {
        for prefix in ["kugetsu/", "bot-", "a/b_c/", "x"] {
            validate_branch_prefix(prefix).unwrap();
            let ok = std::process::Command::new("git")
                .args(["check-ref-format", "--branch", &format!("{prefix}123")])
                .output()
                .expect("git runs");
            assert!(ok.status.success(), "{prefix}");
        }
        for prefix in ["", "/x", "-x", "a//b", "a..b", "a b", "a~b", "a^", "a:b", "a\\b", "ü"] {
            assert!(validate_branch_prefix(prefix).is_err(), "{prefix:?}");
        }
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        let unknown = format!("{MINIMAL}\nsurprise = 1");
        assert!(Config::parse(&unknown, Path::new("/"), |_| None).is_err());
        let bad_kind = MINIMAL.replace("kind = \"gitea\"", "kind = \"gitlab\"");
        assert!(Config::parse(&bad_kind, Path::new("/"), |_| None).is_err());
        let bad_name = MINIMAL.replace("instances.gitea", "instances.\"Git Ea\"");
        assert!(Config::parse(&bad_name, Path::new("/"), |_| None).is_err());
        let bad_prefix = format!("{MINIMAL}\n[git]\nbranch_prefix = \"../x\"");
        assert!(Config::parse(&bad_prefix, Path::new("/"), |_| None).is_err());
        let bad_scope = format!("{MINIMAL}\n[instances.gitea.webhook_secrets_env]\n\"a/b/c\" = \"S\"");
        let err = format!("{:#}", Config::parse(&bad_scope, Path::new("/"), |_| Some("x".into())).unwrap_err());
        assert!(err.contains("owner/repo"), "{err}");
        let scoped = format!("{MINIMAL}\n[instances.gitea.webhook_secrets_env]\n\"acme\" = \"S2\"");
        let config = Config::parse(&scoped, Path::new("/"), |_| Some("scoped-canary".into())).unwrap();
        let gitea = config.instance(&"gitea".parse().unwrap()).unwrap();
        assert_eq!(gitea.webhook_secrets().len(), 2);
        assert!(
            gitea.webhook_secrets()[1].0.covers("ACME", "anything") && !gitea.webhook_secrets()[1].0.covers("x", "y")
        );
        assert!(!format!("{config:?}").contains("scoped-canary"), "Debug hides scoped secrets");
        assert!(Config::parse(MINIMAL, Path::new("/workspaces/kugetsu"), |_| None).is_ok(), "control: a near name");
        let err = format!("{:#}", Config::parse(MINIMAL, Path::new("/workspace/kugetsu"), |_| None).unwrap_err());
        assert!(err.contains("state_dir must not be under /workspace"), "{err}");
        let userinfo = MINIMAL.replace("git_url = \"http://", "git_url = \"http://bot:tok-canary@");
        let err = format!("{:#}", Config::parse(&userinfo, Path::new("/"), |_| None).unwrap_err());
        assert!(err.contains("token_env") && !err.contains("tok-canary"), "{err}");
    }
}
