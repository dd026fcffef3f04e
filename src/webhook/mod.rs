//! Webhook intake: the verifying extractor ([`verify`]) checks the signature over
//! the raw body and normalises; admission ([`admission`]) decides from the event
//! and the stored state, and stores the job; then the delivery is answered.
//! Nothing here waits on git, the forge API or the agent.

pub mod admission;
mod listener;
pub mod signature;
mod verify;

pub use listener::{Bounds, serve};
pub use verify::{Delivered, Rejected, Verified};

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use secrecy::SecretString;

use crate::config::Limits;
use crate::config::{BotSettings, ForgeKind, SecretScope};
use crate::event::ForgeEvent;
use crate::forge::PermissionCache;
use crate::issue_ref::InstanceName;
use crate::metrics::{DeliveryOutcome, Metrics};
use crate::queue::Queue;
use admission::{Accepted, Rules};

/// Issue and comment events are small: a 65,536-character body and its issue
/// fit many times over. Larger deliveries (a push of many commits) are refused
/// unread; kugetsu acts on none of them.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// One instance's webhook endpoint settings.
#[derive(Debug, Clone)]
pub struct Hook {
    pub kind: ForgeKind,
    /// The instance's secret and any per-owner or per-repository ones.
    pub secrets: Vec<(SecretScope, SecretString)>,
    pub bot_login: String,
}

pub struct Intake {
    pub hooks: HashMap<InstanceName, Hook>,
    pub queue: Queue,
    pub bot: BotSettings,
    pub limits: Limits,
    /// The workers' permission answers, read here without asking the forge.
    pub permissions: Arc<PermissionCache>,
    pub metrics: Arc<Metrics>,
}

pub fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route("/webhooks/{instance}", post(receive))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(intake)
}

pub type Reply = (StatusCode, String);

fn reply(status: StatusCode, text: impl Into<String>) -> Reply {
    (status, text.into())
}

async fn receive(State(intake): State<Arc<Intake>>, verified: Result<Verified, Rejected>) -> Reply {
    let (instance, answer, started) = match verified {
        Ok(Verified { instance, delivery, started }) => {
            let answer = match delivery {
                Delivered::Ignored(why) => reply(StatusCode::OK, format!("ignored: {why}")),
                Delivered::Event(event) => answer(&intake, &instance, &event).await,
                Delivered::Checks(checks) => {
                    answer_with(admission::accept_checks(&intake.queue, instance.as_str(), &checks).await)
                }
            };
            (Some(instance), answer, started)
        }
        Err(Rejected { instance, reply, started }) => (instance, reply, started),
    };
    // Only configured names become labels: the path is the sender's to choose.
    let label = instance.as_ref().map_or("(unknown)", InstanceName::as_str);
    intake.metrics.delivery(label, outcome_of(&answer), started.elapsed());
    answer
}

async fn answer(intake: &Intake, instance: &InstanceName, event: &ForgeEvent) -> Reply {
    answer_with(accept(intake, instance, event).await)
}

fn answer_with(accepted: anyhow::Result<Accepted>) -> Reply {
    match accepted {
        Ok(Accepted::Queued(id)) => reply(StatusCode::ACCEPTED, format!("queued job {id}")),
        Ok(Accepted::Duplicate) => reply(StatusCode::OK, DUPLICATE),
        Ok(Accepted::Closed) => reply(StatusCode::OK, "closed: its working copy will be removed"),
        Ok(Accepted::Ignored(why)) => reply(StatusCode::OK, why),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not store a webhook delivery");
            reply(StatusCode::SERVICE_UNAVAILABLE, "could not store the delivery; please redeliver")
        }
    }
}

const DUPLICATE: &str = "duplicate delivery";

fn outcome_of((status, text): &Reply) -> DeliveryOutcome {
    match *status {
        StatusCode::ACCEPTED => DeliveryOutcome::Stored,
        StatusCode::OK if text == DUPLICATE => DeliveryOutcome::Duplicate,
        StatusCode::OK => DeliveryOutcome::Ignored,
        StatusCode::UNAUTHORIZED => DeliveryOutcome::Unauthorized,
        s if s.is_server_error() => DeliveryOutcome::Failed,
        _ => DeliveryOutcome::Malformed,
    }
}

/// Admits an event of `instance` and stores what it asks for.
async fn accept(intake: &Intake, instance: &InstanceName, event: &ForgeEvent) -> anyhow::Result<Accepted> {
    let Some(hook) = intake.hooks.get(instance) else { return Ok(Accepted::Ignored("no such instance".into())) };
    let rules = Rules {
        handle: &intake.bot.handle,
        bot_login: &hook.bot_login,
        trigger_labels: &intake.bot.trigger_labels,
        queued_per_issue: intake.limits.queued_per_issue,
    };
    let repo = event.issue.repo();
    let is_known_writer = |author: &str| intake.permissions.is_known_writer(repo, author);
    admission::accept(&intake.queue, instance.as_str(), event, &rules, is_known_writer).await
}

/// Queues what an event the forge's API showed asks for, as a delivery of it
/// would have: the reconciler's way in. `true` when a job was stored.
pub async fn take_event(intake: &Intake, event: &ForgeEvent) -> anyhow::Result<bool> {
    let instance = event.issue.repo().instance();
    Ok(matches!(accept(intake, instance, event).await?, Accepted::Queued(_)))
}
