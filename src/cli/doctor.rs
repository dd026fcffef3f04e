//! `kugetsu doctor`: checks what a first deployment gets wrong, and says how to
//! fix each failure. It changes nothing on the forges; on this host it at most
//! brings the database's schema up to date, as the next start would.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::config::{Config, ForgeKind, Instance};
use crate::engine::{EngineError, Layout, free_disk_mib};
use crate::forge::hooks::{self, HookTarget};
use crate::forge::{Forge, ForgeError, Permission, forge_for};
use crate::issue_ref::RepoRef;
use crate::opencode::PINNED_VERSION as OPENCODE_VERSION;
use crate::sandbox::Sandbox;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

struct Check {
    verdict: Verdict,
    what: String,
    detail: String,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, verdict: Verdict, what: impl Into<String>, detail: impl Into<String>) {
        // One line a check, also for multi-line errors (TOML's show the line at fault).
        let detail = detail.into().split_whitespace().collect::<Vec<_>>().join(" ");
        let check = Check { verdict, what: what.into(), detail };
        let mark = match check.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        println!("{mark}  {:<28} {}", check.what, check.detail);
        self.0.push(check);
    }

    fn failures(&self) -> usize {
        self.0.iter().filter(|c| c.verdict == Verdict::Fail).count()
    }
}

pub async fn run(config_path: &Path) -> Result<(), EngineError> {
    let mut report = Report::default();
    let config = match Config::load(config_path) {
        Ok(config) => {
            report.add(Verdict::Ok, "config", config_path.display().to_string());
            config
        }
        Err(e) => {
            report.add(Verdict::Fail, "config", format!("{e:#} → fix the file (see config/kugetsu.example.toml)"));
            return Err(EngineError::BadInput("1 check failed".into()));
        }
    };
    check_environment(&config, &mut report);
    check_opencode(&config, &mut report).await;
    match crate::sandbox::check(&Sandbox::for_config(&config)).await {
        Ok(()) => report.add(Verdict::Ok, "sandbox", format!("{:?}", config.sandbox).to_lowercase()),
        Err(why) => report.add(Verdict::Fail, "sandbox", why),
    }
    check_disk(&config, &mut report);
    let store = check_database(&config, &mut report).await;
    let repos = repositories(&config, store.as_deref()).await;
    for instance in config.instances.values() {
        check_instance(&config, instance, &repos, &mut report).await;
    }
    match report.failures() {
        0 => Ok(()),
        n => Err(EngineError::BadInput(format!("{n} check(s) failed"))),
    }
}

fn check_environment(config: &Config, report: &mut Report) {
    let set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    for instance in config.instances.values() {
        let name = format!("{} variables", instance.name);
        let mut missing = Vec::new();
        for var in instance.token_env.iter().chain(instance.webhook_secret_env.iter()) {
            if !set(var) {
                missing.push(var.clone());
            }
        }
        let has_token = instance.token_env.is_some() || instance.github_app.is_some();
        let has_secret = instance.webhook_secret_env.is_some() || !instance.scoped_webhook_secrets.is_empty();
        match (missing.is_empty(), has_token, has_secret) {
            (true, true, true) => report.add(Verdict::Ok, name, "token and webhook secret set"),
            (true, false, _) => {
                report.add(Verdict::Fail, name, "no token_env: set one, naming the variable with the bot's token")
            }
            (true, true, false) => report.add(
                Verdict::Fail,
                name,
                "no webhook_secret_env: set one; kugetsu serve checks every delivery's signature with it",
            ),
            (false, _, _) => report.add(
                Verdict::Fail,
                name,
                format!("{} not set → export them, as kugetsu serve will see them", missing.join(", ")),
            ),
        }
    }
    let unset: Vec<&str> = config.opencode.env.iter().map(String::as_str).filter(|v| !set(v)).collect();
    if !unset.is_empty() {
        report.add(
            Verdict::Warn,
            "opencode variables",
            format!("{} not set: the model provider may refuse", unset.join(", ")),
        );
    }
}

async fn check_opencode(config: &Config, report: &mut Report) {
    let binary = &config.opencode.binary;
    let run = tokio::process::Command::new(binary).arg("--version").kill_on_drop(true).output();
    match tokio::time::timeout(Duration::from_secs(60), run).await {
        Ok(Ok(out)) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if version == OPENCODE_VERSION {
                report.add(Verdict::Ok, "opencode", format!("{} {version}", binary.display()));
            } else {
                report.add(
                    Verdict::Warn,
                    "opencode",
                    format!("{} is {version}; kugetsu is tested with {OPENCODE_VERSION} (npm install -g opencode-ai@{OPENCODE_VERSION})", binary.display()),
                );
            }
        }
        Ok(Ok(out)) => report.add(
            Verdict::Fail,
            "opencode",
            format!("`{} --version` failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr).trim()),
        ),
        Ok(Err(e)) => report.add(
            Verdict::Fail,
            "opencode",
            format!(
                "cannot run `{}` ({e}) → npm install -g opencode-ai@{OPENCODE_VERSION}, or set opencode.binary",
                binary.display()
            ),
        ),
        Err(_) => report.add(
            Verdict::Fail,
            "opencode",
            format!("`{} --version` did not answer within 60 s", binary.display()),
        ),
    }
}

fn check_disk(config: &Config, report: &mut Report) {
    // The state directory may not exist before the first start: its nearest existing parent counts.
    let dir = config.state_dir.ancestors().find(|d| d.exists()).unwrap_or(Path::new("/"));
    let free = free_disk_mib(dir);
    let floor = config.limits.min_free_disk_mib;
    match free {
        Ok(free) if free >= floor => report.add(Verdict::Ok, "disk", format!("{free} MiB free at {}", dir.display())),
        Ok(free) => report.add(
            Verdict::Fail,
            "disk",
            format!(
                "{free} MiB free at {}, under limits.min_free_disk_mib ({floor}): runs would wait → free space",
                dir.display()
            ),
        ),
        Err(e) => report.add(Verdict::Fail, "disk", format!("cannot read free space at {}: {e}", dir.display())),
    }
}

/// Opens the database as `serve` would (applying pending migrations), if
/// there is one: a fresh host's SQLite file is made by the first start.
async fn check_database(config: &Config, report: &mut Report) -> Option<std::sync::Arc<dyn Store>> {
    let place = match &config.database_url {
        Some(url) => format!("PostgreSQL at {}", crate::store::postgres::describe(url)),
        None => {
            let file = Layout::new(&config.state_dir).database();
            if !file.exists() {
                report.add(Verdict::Ok, "database", format!("SQLite at {}, made at the first start", file.display()));
                return None;
            }
            format!("SQLite at {}", file.display())
        }
    };
    match tokio::time::timeout(Duration::from_secs(15), crate::store::open(config, false)).await {
        Ok(Ok(store)) => {
            report.add(Verdict::Ok, "database", format!("{place}: reachable, schema up to date"));
            Some(store)
        }
        Ok(Err(e)) => {
            let fix = match config.database_url {
                Some(_) => "check database_url, that the server runs, and that its role may log in and create tables",
                None => "check that state_dir is writable by kugetsu's user",
            };
            report.add(Verdict::Fail, "database", format!("{place}: {e:#} → {fix}"));
            None
        }
        Err(_) => {
            report.add(
                Verdict::Fail,
                "database",
                format!("{place}: no answer in 15 s → is the server up and reachable?"),
            );
            None
        }
    }
}

/// The repositories kugetsu is set to serve: `pool.repos`, and those it has
/// issues of (read from the database, if there is one).
async fn repositories(config: &Config, store: Option<&dyn Store>) -> BTreeSet<RepoRef> {
    let mut repos: BTreeSet<RepoRef> = config.pool.repos.iter().cloned().collect();
    if let Some(store) = store
        && let Ok(sessions) = store.issue_sessions().await
    {
        repos.extend(sessions.into_iter().map(|s| s.issue.repo().clone()));
    }
    repos
}

async fn check_instance(config: &Config, instance: &Instance, repos: &BTreeSet<RepoRef>, report: &mut Report) {
    let name = instance.name.as_str();
    let forge = match forge_for(instance, config.bot.api_timeout) {
        Ok(forge) => forge,
        Err(e) => return report.add(Verdict::Fail, format!("{name} API"), format!("{e:#}")),
    };
    let login = if instance.github_app.is_some() {
        // An installation token cannot ask who it is; it acts as the App's bot user.
        instance.bot_login.clone()
    } else {
        match forge.current_user().await {
            Ok(login) => login,
            Err(e) => return report.add(Verdict::Fail, format!("{name} API"), api_fix(instance, &e)),
        }
    };
    if login.eq_ignore_ascii_case(&instance.bot_login) {
        report.add(Verdict::Ok, format!("{name} API"), format!("{} answers; the token is {login}'s", instance.api_url));
    } else {
        report.add(
            Verdict::Fail,
            format!("{name} API"),
            format!(
                "the token is {login}'s, but bot_login is {} → set bot_login = \"{login}\", or use the bot's token",
                instance.bot_login
            ),
        );
    }
    for repo in repos.iter().filter(|r| r.instance() == &instance.name) {
        check_repository(config, instance, forge.as_ref(), repo, &login, report).await;
    }
}

async fn check_repository(
    config: &Config,
    instance: &Instance,
    forge: &dyn Forge,
    repo: &RepoRef,
    login: &str,
    report: &mut Report,
) {
    // Gitea answers permission checks of other users only to repository admins.
    let needed = match instance.kind {
        ForgeKind::Github => Permission::Write,
        ForgeKind::Gitea | ForgeKind::Forgejo => Permission::Admin,
    };
    match forge.permission(repo, login).await {
        Ok(level) if level >= needed => report.add(Verdict::Ok, repo.to_string(), format!("{login} has {level:?} access")),
        Ok(level) => report.add(
            Verdict::Fail,
            repo.to_string(),
            format!("{login} has {level:?} access; it needs {needed:?} to comment, react, push and check who asks → grant it"),
        ),
        Err(e) => report.add(Verdict::Fail, repo.to_string(), api_fix(instance, &e)),
    }
    let what = format!("{repo} webhook");
    let Some(public) = config.bot.public_url.as_deref() else {
        return report.add(
            Verdict::Warn,
            what,
            "bot.public_url is unset, so kugetsu cannot tell which hook is its own",
        );
    };
    let url = hooks::endpoint(public, instance.name.as_str());
    let places = [
        HookTarget::Repo { owner: repo.owner().to_owned(), name: repo.name().to_owned() },
        HookTarget::Org(repo.owner().to_owned()),
    ];
    let mut unreadable = None;
    for place in &places {
        match forge.hooks(place).await {
            Ok(listed) => {
                if let Some(hook) = listed.iter().find(|h| h.delivers_to(&url)) {
                    if !hook.serves(instance.kind) {
                        let fix = format!(
                            "on {place}, but inactive, not JSON or missing events → kugetsu hooks install {repo}"
                        );
                        return report.add(Verdict::Fail, what, fix);
                    }
                    report.add(Verdict::Ok, what, format!("on {place}, to {url}"));
                    return check_deliveries(forge, place, hook.id, &url, repo, report).await;
                }
            }
            Err(e) => unreadable = Some(e),
        }
    }
    match unreadable {
        Some(e) if !matches!(e, ForgeError::NotFound | ForgeError::Forbidden(_)) => {
            report.add(Verdict::Fail, what, api_fix(instance, &e))
        }
        Some(_) => report.add(
            Verdict::Warn,
            what,
            "the token may not read the webhooks (admin rights); check by hand that one delivers to kugetsu",
        ),
        None => report.add(Verdict::Fail, what, format!("none delivers to {url} → kugetsu hooks install {repo}")),
    }
}

/// The hook's latest deliveries, where the forge reports them: the newest
/// must have reached kugetsu.
async fn check_deliveries(
    forge: &dyn Forge,
    place: &HookTarget,
    id: u64,
    url: &str,
    repo: &RepoRef,
    report: &mut Report,
) {
    let what = format!("{repo} webhook deliveries");
    let recent = match forge.hook_deliveries(place, id).await {
        Ok(Some(recent)) => recent,
        Ok(None) => {
            let note = "this forge's API does not report them: see the webhook's Recent Deliveries in its settings";
            return report.add(Verdict::Ok, what, note);
        }
        Err(e) => return report.add(Verdict::Warn, what, format!("could not read them: {e}")),
    };
    let Some(newest) = recent.first() else {
        return report.add(Verdict::Ok, what, "none yet: mention the bot in an issue to send one");
    };
    let failed = recent.iter().filter(|d| !d.succeeded()).count();
    let answer = format!("{} {}", newest.status_code, newest.status);
    if !newest.succeeded() {
        let fix = format!(
            "the latest ({} at {}) got {answer} → check that the forge reaches {url} and that the hook's secret is \
             the instance's webhook secret (kugetsu hooks install sets both)",
            newest.event, newest.delivered_at
        );
        return report.add(Verdict::Fail, what, fix);
    }
    match failed {
        0 => report.add(Verdict::Ok, what, format!("the last {} reached kugetsu", recent.len())),
        n => {
            report.add(Verdict::Warn, what, format!("{n} of the last {} failed; the latest got {answer}", recent.len()))
        }
    }
}

fn api_fix(instance: &Instance, e: &ForgeError) -> String {
    match e {
        ForgeError::Unauthorized => {
            format!("the forge refused the token → check {}", instance.token_env.as_deref().unwrap_or("token_env"))
        }
        ForgeError::Transient { .. } => format!("{e} → check api_url ({}) and that the forge is up", instance.api_url),
        other => other.to_string(),
    }
}
