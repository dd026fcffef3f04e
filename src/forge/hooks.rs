//! Webhooks on the forge: what kugetsu needs delivered, and installing it.
//!
//! A hook is kugetsu's when its URL is kugetsu's endpoint for the instance.
//! Installing is idempotent: an existing hook of kugetsu's is updated in place
//! (the secret and events are set again, since neither forge shows a secret
//! back), and hooks of anyone else are left alone.

use secrecy::SecretString;

use super::{Forge, ForgeError};
use crate::config::ForgeKind;

/// Where a hook lives: one repository, or every repository of an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookTarget {
    Repo { owner: String, name: String },
    Org(String),
}

impl HookTarget {
    /// The API path below the base URL, the same on GitHub and Gitea.
    pub fn path(&self) -> String {
        match self {
            Self::Repo { owner, name } => format!("/repos/{owner}/{name}/hooks"),
            Self::Org(owner) => format!("/orgs/{owner}/hooks"),
        }
    }
}

impl std::fmt::Display for HookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Repo { owner, name } => write!(f, "{owner}/{name}"),
            Self::Org(owner) => write!(f, "organisation {owner}"),
        }
    }
}

/// The hook kugetsu wants: its URL, secret and events, JSON bodies, active.
pub struct HookSpec {
    pub url: String,
    pub secret: SecretString,
    pub events: Vec<&'static str>,
}

impl std::fmt::Debug for HookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookSpec").field("url", &self.url).field("events", &self.events).finish_non_exhaustive()
    }
}

/// One delivery of a hook, as the forge reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookDelivery {
    pub delivered_at: String,
    /// The forge's words for the outcome (`OK`, `failed to connect`…).
    pub status: String,
    /// The answer's HTTP status; 0 when none came.
    pub status_code: u16,
    pub event: String,
}

impl HookDelivery {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// A hook as the forge lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledHook {
    pub id: u64,
    pub url: String,
    pub content_type: String,
    pub events: Vec<String>,
    pub active: bool,
}

/// The events kugetsu acts on (see `event::normalize`), by the names each
/// forge's hook API takes.
///
/// GitHub: `issues` (opened, labeled, edited, closed) and `issue_comment`, which
/// also covers pull requests' conversation comments, and the reviews:
/// `pull_request_review` and `pull_request_review_comment`; for CI repair,
/// `status` and `check_run`.
/// Gitea and Forgejo: `issues`, `issue_label` and `issue_comment`, and
/// `pull_request_comment` for comments on pull requests, which arrive as
/// `issue_comment` deliveries, and the three review hooks (`HookEventType` in
/// go-gitea/gitea `modules/webhook/type.go`; `routers/api/v1/utils/hook.go`
/// reads the list), and `status` for CI repair.
pub fn events_for(kind: ForgeKind) -> Vec<&'static str> {
    match kind {
        ForgeKind::Github => {
            vec!["issues", "issue_comment", "pull_request_review", "pull_request_review_comment", "status", "check_run"]
        }
        ForgeKind::Gitea | ForgeKind::Forgejo => vec![
            "issues",
            "issue_label",
            "issue_comment",
            "pull_request_comment",
            "pull_request_review_approved",
            "pull_request_review_rejected",
            "pull_request_review_comment",
            "status",
        ],
    }
}

impl InstalledHook {
    /// Whether this is kugetsu's hook: it delivers to `url`.
    pub fn delivers_to(&self, url: &str) -> bool {
        self.url.trim_end_matches('/') == url.trim_end_matches('/')
    }

    /// Whether it delivers as kugetsu needs: active, JSON, every event it acts on.
    pub fn serves(&self, kind: ForgeKind) -> bool {
        self.active
            && self.content_type == "json"
            && events_for(kind).iter().all(|wanted| self.events.iter().any(|e| e == wanted))
    }
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    Created(InstalledHook),
    /// An existing hook of kugetsu's, set again.
    Updated(InstalledHook),
}

/// Creates kugetsu's hook on `target`, or sets an existing one again.
pub async fn install(forge: &dyn Forge, target: &HookTarget, spec: &HookSpec) -> Result<Installed, ForgeError> {
    let existing = forge.hooks(target).await?;
    match existing.iter().find(|h| h.delivers_to(&spec.url)) {
        Some(hook) => Ok(Installed::Updated(forge.update_hook(target, hook.id, spec).await?)),
        None => Ok(Installed::Created(forge.create_hook(target, spec).await?)),
    }
}

/// kugetsu's endpoint for `instance`, under its public URL.
pub fn endpoint(public_url: &str, instance: &str) -> String {
    format!("{}/webhooks/{instance}", public_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_and_its_match_ignore_a_trailing_slash() {
        assert_eq!(endpoint("https://bot.example.com/", "gitea"), "https://bot.example.com/webhooks/gitea");
        let hook = |url: &str| InstalledHook {
            id: 1,
            url: url.into(),
            content_type: "json".into(),
            events: vec![],
            active: true,
        };
        assert!(hook("https://bot.example.com/webhooks/gitea/").delivers_to("https://bot.example.com/webhooks/gitea"));
        assert!(!hook("https://bot.example.com/webhooks/github").delivers_to("https://bot.example.com/webhooks/gitea"));
    }

    #[test]
    fn the_debug_form_of_a_spec_has_no_secret() {
        let spec = HookSpec { url: "u".into(), secret: SecretString::from("s3cr3t-value"), events: vec!["issues"] };
        assert!(!format!("{spec:?}").contains("s3cr3t"));
    }
}
