//! The verifying extractor: a request to `/webhooks/<instance>` becomes a
//! [`Verified`] delivery (its signature checked over the raw body, then
//! normalised) or a [`Rejected`] one with the answer it gets. Nothing here reads
//! stored state: that is admission's.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{HeaderMap, StatusCode};
use secrecy::SecretString;

use super::{Hook, Intake, Reply, reply, signature};
use crate::config::{ForgeKind, SecretScope};
use crate::event::{ChecksFailed, ForgeEvent, Normalized, normalize};
use crate::issue_ref::InstanceName;

/// A delivery whose signature held, normalised.
#[derive(Debug)]
pub struct Verified {
    pub instance: InstanceName,
    pub delivery: Delivered,
    /// When the request arrived, before its body was read.
    pub started: Instant,
}

#[derive(Debug)]
pub enum Delivered {
    Event(Box<ForgeEvent>),
    /// CI failed on a commit.
    Checks(Box<ChecksFailed>),
    /// Nothing kugetsu acts on (a ping, a push, an action it ignores), and why.
    Ignored(String),
}

/// A delivery refused before admission: its answer, and the instance when the
/// path named a configured one.
#[derive(Debug)]
pub struct Rejected {
    pub instance: Option<InstanceName>,
    pub reply: Reply,
    pub started: Instant,
}

impl axum::response::IntoResponse for Rejected {
    fn into_response(self) -> axum::response::Response {
        self.reply.into_response()
    }
}

impl FromRequest<Arc<Intake>> for Verified {
    type Rejection = Rejected;

    async fn from_request(req: Request, intake: &Arc<Intake>) -> Result<Self, Rejected> {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        let named = Path::<String>::from_request_parts(&mut parts, intake).await.ok();
        let known = named.and_then(|n| n.0.parse::<InstanceName>().ok()).and_then(|n| intake.hooks.get_key_value(&n));
        let Some((name, hook)) = known else {
            return Err(Rejected { instance: None, reply: reply(StatusCode::NOT_FOUND, "no such instance"), started });
        };
        let rejected = |reply| Rejected { instance: Some(name.clone()), reply, started };
        // The body limit travels in the request's extensions, not its headers.
        let headers = std::mem::take(&mut parts.headers);
        let body = Bytes::from_request(Request::from_parts(parts, body), intake)
            .await
            .map_err(|e| rejected(reply(e.status(), e.body_text())))?;
        let delivery = verify(name, hook, &headers, &body).await.map_err(rejected)?;
        Ok(Verified { instance: name.clone(), delivery, started })
    }
}

/// Checks the signature over the body as the forge signed it, then normalises.
pub async fn verify(name: &InstanceName, hook: &Hook, headers: &HeaderMap, body: &[u8]) -> Result<Delivered, Reply> {
    let delivery = delivery_headers(hook.kind, headers)?;
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    // GitHub signs the body as sent; Gitea signs the JSON even in a form delivery.
    let json: Option<Cow<'_, [u8]>> =
        if is_form { form_payload(body).map(Cow::Owned) } else { Some(Cow::Borrowed(body)) };
    let signed: &[u8] = match hook.kind {
        ForgeKind::Github => body,
        _ => json.as_deref().unwrap_or(body),
    };
    let Some(scope) = signing_scope(hook, signed, delivery.signature).await else {
        return Err(reply(StatusCode::UNAUTHORIZED, "bad webhook signature"));
    };
    let Some(json) = json else {
        return Err(reply(StatusCode::BAD_REQUEST, "form delivery without a payload field"));
    };
    let delivered = match normalize(hook.kind, name, delivery.event, delivery.id, &json) {
        Ok(Normalized::Event(event)) => Delivered::Event(event),
        Ok(Normalized::ChecksFailed(checks)) => Delivered::Checks(checks),
        Ok(Normalized::Ignored(why)) => return Ok(Delivered::Ignored(why)),
        Err(e) => return Err(reply(StatusCode::BAD_REQUEST, e.to_string())),
    };
    let repo = match &delivered {
        Delivered::Event(event) => event.issue.repo(),
        Delivered::Checks(checks) => &checks.repo,
        Delivered::Ignored(_) => return Ok(delivered),
    };
    if !scope.covers(repo.owner(), repo.name()) {
        tracing::warn!(delivery = delivery.id, %repo, "a delivery was signed with another repository's secret");
        return Err(reply(StatusCode::UNAUTHORIZED, "this secret does not sign for this repository"));
    }
    Ok(delivered)
}

/// The headers that matter, read the way each forge sends them. Gitea and
/// Forgejo also send `X-GitHub-*` headers, so their own headers are read first.
struct DeliveryHeaders<'a> {
    event: &'a str,
    id: &'a str,
    signature: &'a str,
}

fn delivery_headers(kind: ForgeKind, headers: &HeaderMap) -> Result<DeliveryHeaders<'_>, Reply> {
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
        (Some(event), Some(id), Some(signature)) => Ok(DeliveryHeaders { event, id, signature }),
        _ => Err(reply(StatusCode::BAD_REQUEST, "missing event or delivery header")),
    }
}

/// The JSON document inside a form-encoded delivery (`payload=<json>`).
fn form_payload(body: &[u8]) -> Option<Vec<u8>> {
    form_urlencoded::parse(body).find(|(k, _)| k == "payload").map(|(_, v)| v.into_owned().into_bytes())
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
