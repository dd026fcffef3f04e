//! `kugetsu hooks`: the forge's webhooks that deliver to kugetsu.

use clap::{Args, Subcommand};

use crate::config::{Config, ForgeKind, Instance};
use crate::engine::EngineError;
use crate::forge::hooks::{self, HookSpec, HookTarget, Installed, InstalledHook};
use crate::forge::{ForgeError, forge_for};
use crate::issue_ref::{InstanceName, RepoRef};

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Create kugetsu's webhook, or set it again: `<bot.public_url>/webhooks/<instance>`,
    /// the webhook secret, and exactly the events kugetsu acts on.
    Install(HookArgs),
    /// The webhooks there, and which one is kugetsu's.
    List(HookArgs),
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// instance/owner/repo
    #[arg(required_unless_present = "org", conflicts_with = "org")]
    repo: Option<RepoRef>,
    /// An organisation's webhook, for all its repositories: instance/owner.
    #[arg(long, value_name = "INSTANCE/OWNER")]
    org: Option<String>,
}

impl HookArgs {
    fn target(&self) -> Result<(InstanceName, HookTarget), EngineError> {
        if let Some(repo) = &self.repo {
            let target = HookTarget::Repo { owner: repo.owner().to_owned(), name: repo.name().to_owned() };
            return Ok((repo.instance().clone(), target));
        }
        let org = self.org.as_deref().unwrap_or_default();
        let bad = || EngineError::BadInput(format!("--org takes instance/owner, not `{org}`"));
        let (instance, owner) = org.split_once('/').ok_or_else(bad)?;
        // An owner is valid where it would be valid in a repository reference.
        let probe = RepoRef::new(instance.parse().map_err(|_| bad())?, owner, "repository").map_err(|_| bad())?;
        Ok((probe.instance().clone(), HookTarget::Org(probe.owner().to_owned())))
    }
}

pub async fn run(config: &Config, command: HooksCommand) -> Result<(), EngineError> {
    let (HooksCommand::Install(args) | HooksCommand::List(args)) = &command;
    let (name, target) = args.target()?;
    let instance =
        config.instance(&name).ok_or_else(|| EngineError::BadInput(format!("no instance `{name}` in the config")))?;
    let forge = forge_for(instance, config.bot.api_timeout).map_err(|e| EngineError::Infra(format!("{e:#}")))?;
    let url = config.bot.public_url.as_deref().map(|public| hooks::endpoint(public, name.as_str()));
    match command {
        HooksCommand::List(_) => {
            let listed = forge.hooks(&target).await.map_err(|e| forge_error(&target, e))?;
            print_hooks(&listed, url.as_deref(), instance.kind);
        }
        HooksCommand::Install(_) => {
            let url = url.ok_or_else(|| {
                EngineError::BadInput("set bot.public_url: the URL the forge reaches kugetsu at".into())
            })?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(EngineError::BadInput(format!("bot.public_url must be an http(s) URL, not `{url}`")));
            }
            let spec = spec_for(instance, &target, url)?;
            let done = hooks::install(forge.as_ref(), &target, &spec).await.map_err(|e| forge_error(&target, e))?;
            let (verb, hook) = match &done {
                Installed::Created(hook) => ("created", hook),
                Installed::Updated(hook) => ("updated", hook),
            };
            println!("{verb} webhook {} on {target}: {} ({})", hook.id, hook.url, spec.events.join(", "));
        }
    }
    Ok(())
}

fn spec_for(instance: &Instance, target: &HookTarget, url: String) -> Result<HookSpec, EngineError> {
    let (owner, repo) = match target {
        HookTarget::Repo { owner, name } => (owner.as_str(), Some(name.as_str())),
        HookTarget::Org(owner) => (owner.as_str(), None),
    };
    let secret = instance.webhook_secret_for(owner, repo).ok_or_else(|| {
        EngineError::BadInput(format!(
            "instance {} has no webhook secret for {target}: set webhook_secret_env",
            instance.name
        ))
    })?;
    Ok(HookSpec { url, secret, events: hooks::events_for(instance.kind) })
}

fn print_hooks(listed: &[InstalledHook], ours: Option<&str>, kind: ForgeKind) {
    if listed.is_empty() {
        println!("no webhooks");
    }
    for hook in listed {
        let state = if hook.active { "active" } else { "inactive" };
        let mut line =
            format!("{:>8}  {state:<8}  {:<4}  {}  [{}]", hook.id, hook.content_type, hook.url, hook.events.join(", "));
        if ours.is_some_and(|url| hook.delivers_to(url)) {
            line.push_str("  ← kugetsu's");
            if !hook.serves(kind) {
                line.push_str(" (not as kugetsu needs it: run `kugetsu hooks install`)");
            }
        }
        println!("{line}");
    }
}

fn forge_error(target: &HookTarget, e: ForgeError) -> EngineError {
    match e {
        ForgeError::NotFound | ForgeError::Forbidden(_) => EngineError::BadInput(format!(
            "the forge would not show or change the webhooks of {target} ({e}): it needs to exist, and the bot's \
             token needs admin rights there"
        )),
        ForgeError::Unauthorized => EngineError::BadInput(format!("the forge refused the bot's token ({e})")),
        other => EngineError::Infra(format!("cannot manage the webhooks of {target}: {other}")),
    }
}
