//! Webhook intake: verify the signature over the raw body, normalise, decide
//! whether it triggers, store the job, answer. Nothing here waits on git, the
//! forge API or the agent.

mod listener;
pub mod signature;

pub use listener::{Bounds, serve};

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use secrecy::SecretString;

use crate::comment::is_bot_comment;
use crate::config::Limits;
use crate::config::{BotSettings, ForgeKind, SecretScope};
use crate::event::{EventKind, ForgeEvent, Normalized, normalize};
use crate::forge::PermissionCache;
use crate::issue_ref::InstanceName;
use crate::queue::{Enqueued, Job, JobTrigger, Queue};
use crate::trigger::{Trigger, trigger_for};

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
}

pub fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route("/webhooks/{instance}", post(receive))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(intake)
}

type Reply = (StatusCode, String);

fn reply(status: StatusCode, text: impl Into<String>) -> Reply {
    (status, text.into())
}

/// The headers that matter, read the way each forge sends them. Gitea and
/// Forgejo also send `X-GitHub-*` headers, so their own headers are read first.
struct Delivery<'a> {
    event: &'a str,
    id: &'a str,
    signature: &'a str,
}

fn delivery_headers(kind: ForgeKind, headers: &HeaderMap) -> Result<Delivery<'_>, Reply> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let is_gitea_family = header("x-gitea-event").is_some() || header("x-forgejo-event").is_some();
    let found = match kind {
        ForgeKind::Github if is_gitea_family => {
            return Err(reply(StatusCode::BAD_REQUEST, "this endpoint is configured for GitHub, but Gitea sent it"));
        }
        ForgeKind::Github => (
            header("x-github-event"),
            header("x-github-delivery"),
            header("x-hub-signature-256").map(|s| s.strip_prefix("sha256=").unwrap_or("")),
        ),
        ForgeKind::Gitea | ForgeKind::Forgejo => (
            header("x-forgejo-event").or(header("x-gitea-event")),
            header("x-forgejo-delivery").or(header("x-gitea-delivery")),
            header("x-forgejo-signature").or(header("x-gitea-signature")),
        ),
    };
    match found {
        (_, _, None | Some("")) => Err(reply(StatusCode::UNAUTHORIZED, "missing webhook signature")),
        (Some(event), Some(id), Some(signature)) => Ok(Delivery { event, id, signature }),
        _ => Err(reply(StatusCode::BAD_REQUEST, "missing event or delivery header")),
    }
}

/// The JSON document inside a form-encoded delivery (`payload=<json>`).
fn form_payload(body: &[u8]) -> Option<Vec<u8>> {
    form_urlencoded::parse(body).find(|(k, _)| k == "payload").map(|(_, v)| v.into_owned().into_bytes())
}

async fn receive(
    State(intake): State<Arc<Intake>>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let Some((name, hook)) = instance.parse::<InstanceName>().ok().and_then(|n| intake.hooks.get_key_value(&n)) else {
        return reply(StatusCode::NOT_FOUND, "no such instance");
    };
    let delivery = match delivery_headers(hook.kind, &headers) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    // GitHub signs the body as sent; Gitea signs the JSON even in a form delivery.
    let json: Option<Cow<'_, [u8]>> =
        if is_form { form_payload(&body).map(Cow::Owned) } else { Some(Cow::Borrowed(&body)) };
    let signed: &[u8] = match hook.kind {
        ForgeKind::Github => &body,
        _ => json.as_deref().unwrap_or(&body),
    };
    let Some(scope) = signing_scope(hook, signed, delivery.signature).await else {
        return reply(StatusCode::UNAUTHORIZED, "bad webhook signature");
    };
    let Some(json) = json else {
        return reply(StatusCode::BAD_REQUEST, "form delivery without a payload field");
    };
    let event = match normalize(hook.kind, name, delivery.event, delivery.id, &json) {
        Ok(Normalized::Event(event)) => event,
        Ok(Normalized::Ignored(why)) => return reply(StatusCode::OK, format!("ignored: {why}")),
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let repo = event.issue.repo();
    if !scope.covers(repo.owner(), repo.name()) {
        tracing::warn!(delivery = delivery.id, %repo, "a delivery was signed with another repository's secret");
        return reply(StatusCode::UNAUTHORIZED, "this secret does not sign for this repository");
    }
    match accept(&intake, name, hook, &event).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not store a webhook delivery");
            reply(StatusCode::SERVICE_UNAVAILABLE, "could not store the delivery; please redeliver")
        }
    }
}

/// Bodies above this are hashed on the blocking pool, not on the runtime's threads.
const HASH_INLINE_LIMIT: usize = 64 * 1024;

/// Large bodies hashed at once. A permit is held until the hashing ends, also
/// when its request was dropped meanwhile, so slow or vanished clients cannot pile
/// up work that no connection limit counts.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The scope of the secret that signed `signed`, if any did. Each secret costs a
/// hash of the whole body, which for a large one would hold up every other
/// request on this thread, so large bodies are hashed off the runtime.
async fn signing_scope<'h>(hook: &'h Hook, signed: &[u8], signature: &str) -> Option<&'h SecretScope> {
    let matches = |secrets: &[(SecretScope, SecretString)], body: &[u8], signature: &str| {
        secrets.iter().position(|(_, secret)| signature::verify(secret, body, signature))
    };
    if !signature::is_well_formed(signature) {
        return None;
    }
    let found = if signed.len() <= HASH_INLINE_LIMIT {
        matches(&hook.secrets, signed, signature)
    } else {
        let permit = HASHING.acquire().await.ok()?;
        let (secrets, body, signature) = (hook.secrets.clone(), signed.to_vec(), signature.to_owned());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            matches(&secrets, &body, &signature)
        })
        .await
        .ok()
        .flatten()
    };
    found.and_then(|i| hook.secrets.get(i)).map(|(scope, _)| scope)
}

/// Queues what an event the forge's API showed asks for, as a delivery of it
/// would have: the reconciler's way in. `true` when a job was stored.
pub async fn take_event(intake: &Intake, event: &ForgeEvent) -> anyhow::Result<bool> {
    let Some((name, hook)) = intake.hooks.get_key_value(event.issue.repo().instance()) else { return Ok(false) };
    let (status, _) = accept(intake, name, hook, event).await?;
    Ok(status == StatusCode::ACCEPTED)
}

async fn accept(intake: &Intake, instance: &InstanceName, hook: &Hook, event: &ForgeEvent) -> anyhow::Result<Reply> {
    let from_bot = event.author_is_bot
        || event.author.eq_ignore_ascii_case(&hook.bot_login)
        || event.comment.as_ref().is_some_and(|c| is_bot_comment(&c.body));
    // Whoever closed it (a stale bot too): its working copy goes after
    // `bot.closed_issue_grace`; its session and record stay, so a reopened issue
    // goes on where it was.
    if event.kind == EventKind::IssueClosed {
        intake.queue.mark_closed(&event.issue).await?;
        return Ok(reply(StatusCode::OK, "closed: its working copy will be removed"));
    }
    if from_bot {
        return Ok(reply(StatusCode::OK, "ignored: written by a bot"));
    }
    let previous = match event.kind {
        EventKind::IssueLabeled { .. } | EventKind::IssueOpened | EventKind::IssueEdited => {
            let previous = intake.queue.labels(&event.issue).await?;
            intake.queue.set_labels(&event.issue, &event.labels).await?;
            previous
        }
        _ => None,
    };
    let Some(trigger) = trigger_for(event, &intake.bot.handle, &intake.bot.trigger_labels, previous.as_deref()) else {
        return Ok(reply(StatusCode::OK, "ignored: no mention or trigger label"));
    };
    let trigger = match trigger {
        Trigger::Control(command) => JobTrigger::Control { command },
        work => match over_limit(intake, event).await? {
            Some(reason) => JobTrigger::Refused { reason },
            None => work.into(),
        },
    };
    let job = Job {
        issue: event.issue.clone(),
        delivery_id: event.delivery_id.clone(),
        trigger,
        author: event.author.clone(),
        title: event.title.clone(),
        issue_body: event.body.clone(),
        comment: event.comment.clone(),
        is_pull_request: event.is_pull_request,
        repo_html_url: event.repo_html_url.clone(),
        default_branch: event.default_branch.clone(),
    };
    Ok(match intake.queue.enqueue(instance.as_str(), Some(&event.identity), &job).await? {
        Enqueued::Queued(id) => reply(StatusCode::ACCEPTED, format!("queued job {id}")),
        Enqueued::Duplicate => reply(StatusCode::OK, "duplicate delivery"),
    })
}

/// Why a request for work must be refused at once: the issue already has
/// `limits.queued_per_issue` requests waiting from people known to be allowed.
/// Requests from anyone else do not count, so strangers cannot fill the queue;
/// the hourly limits apply later, to admitted runs only.
async fn over_limit(intake: &Intake, event: &ForgeEvent) -> anyhow::Result<Option<String>> {
    let repo = event.issue.repo();
    if !intake.permissions.is_known_writer(repo, &event.author) {
        return Ok(None);
    }
    let waiting = intake.queue.waiting_authors(&event.issue).await?;
    let counted = waiting
        .iter()
        .filter(|(author, admitted)| *admitted || intake.permissions.is_known_writer(repo, author))
        .count();
    let cap = usize::try_from(intake.limits.queued_per_issue).unwrap_or(usize::MAX);
    Ok((counted >= cap).then(|| {
        format!("{counted} requests on this issue are already queued or running; ask again once they are done.")
    }))
}
