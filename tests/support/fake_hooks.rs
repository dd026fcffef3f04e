//! The fake forge's webhooks: repository and organisation hooks, as strict as
//! the real APIs for what `kugetsu hooks` sends.
//!
//! - GitHub: docs.github.com/en/rest/repos/webhooks and
//!   docs.github.com/en/rest/orgs/webhooks ("Create", "List", "Update").
//! - gitea: routers/api/v1/utils/hook.go (`checkCreateHookOption`, `addHook`,
//!   `editHook`), services/convert/convert.go (`ToHook`), modules/webhook/type.go.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

/// A hook as the fake keeps it; `secret` is never shown back.
#[derive(Debug, Clone)]
pub struct StoredHook {
    pub id: u64,
    pub url: String,
    pub content_type: String,
    pub secret: String,
    pub events: Vec<String>,
    pub active: bool,
    /// GitHub's record of what the hook sent, newest first.
    pub deliveries: Vec<Value>,
}

/// Hooks by place: `repos/<owner>/<repo>` or `orgs/<owner>`.
#[derive(Debug, Default)]
pub struct Hooks {
    pub by_place: HashMap<String, Vec<StoredHook>>,
}

pub type Refusal = (StatusCode, String);

fn unprocessable(message: &str) -> Refusal {
    (StatusCode::UNPROCESSABLE_ENTITY, message.to_owned())
}

/// GitHub's webhook events that kugetsu could ask for; anything else is refused
/// with 422 (docs.github.com/en/webhooks/webhook-events-and-payloads).
const GITHUB_EVENTS: [&str; 11] = [
    "*",
    "status",
    "check_run",
    "check_suite",
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "push",
    "label",
];

/// gitea: an `issues` or `pull_request` entry turns on each of its kind's
/// sub-events (`issuesHook`/`pullHook` in routers/api/v1/utils/hook.go), which
/// `ToHook` then lists one by one.
fn gitea_events(asked: &[String]) -> Vec<String> {
    const ISSUES: [&str; 5] = ["issues", "issue_assign", "issue_label", "issue_milestone", "issue_comment"];
    const PULLS: [&str; 4] = ["pull_request", "pull_request_assign", "pull_request_label", "pull_request_comment"];
    let mut events: Vec<String> = Vec::new();
    for event in asked {
        let group: Vec<&str> = match event.as_str() {
            "issues" => ISSUES.to_vec(),
            "pull_request" => PULLS.to_vec(),
            other => vec![other],
        };
        for e in group {
            if !events.iter().any(|have| have == e) {
                events.push(e.to_owned());
            }
        }
    }
    events
}

fn config_text(config: &Value, key: &str) -> Option<String> {
    config.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl Hooks {
    pub fn list(&self, place: &str, github: bool) -> Vec<Value> {
        self.by_place.get(place).map(|hooks| hooks.iter().map(|h| show(h, github)).collect()).unwrap_or_default()
    }

    pub fn create(&mut self, place: &str, github: bool, body: &Value, id: u64) -> Result<Value, Refusal> {
        let config = body.get("config").cloned().unwrap_or(Value::Null);
        let url = config_text(&config, "url");
        let content_type = config_text(&config, "content_type");
        let asked: Vec<String> = body
            .get("events")
            .and_then(Value::as_array)
            .map(|events| events.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let events = if github {
            // GitHub: `name` must be "web"; `config.url` is required; events default to push.
            if body.get("name").and_then(Value::as_str).unwrap_or("web") != "web" {
                return Err(unprocessable("Validation Failed: name must be web"));
            }
            if let Some(bad) = asked.iter().find(|e| !GITHUB_EVENTS.contains(&e.as_str())) {
                return Err(unprocessable(&format!("Validation Failed: {bad} is not a valid event name")));
            }
            if asked.is_empty() { vec!["push".to_owned()] } else { asked }
        } else {
            // gitea: checkCreateHookOption: a known type, then config url and content_type.
            let kind = body.get("type").and_then(Value::as_str).unwrap_or_default();
            if !["gitea", "forgejo", "gogs", "slack", "discord", "dingtalk", "telegram", "msteams", "feishu", "matrix"]
                .contains(&kind)
            {
                return Err(unprocessable("Invalid hook type"));
            }
            if url.is_none() {
                return Err(unprocessable("Missing config option: url"));
            }
            gitea_events(&asked)
        };
        let Some(url) = url else { return Err(unprocessable("Validation Failed: url is missing")) };
        let content_type = match content_type.as_deref() {
            None if !github => return Err(unprocessable("Missing config option: content_type")),
            None => "form".to_owned(),
            Some(t @ ("json" | "form")) => t.to_owned(),
            Some(_) => return Err(unprocessable("Invalid content type")),
        };
        let hooks = self.by_place.entry(place.to_owned()).or_default();
        // GitHub: "Hook already exists on this repository" for a second hook with
        // the same URL; gitea keeps both.
        if github && hooks.iter().any(|h| h.url == url) {
            return Err(unprocessable("Validation Failed: Hook already exists on this repository"));
        }
        let secret = config_text(&config, "secret").unwrap_or_default();
        let active = body.get("active").and_then(Value::as_bool).unwrap_or(github);
        let hook = StoredHook { id, url, content_type, secret, events, active, deliveries: Vec::new() };
        hooks.push(hook.clone());
        Ok(show(&hook, github))
    }

    /// GitHub's "List deliveries for a repository webhook" (and its organisation
    /// twin): newest first, `per_page` of them (default 30, at most 100). gitea has
    /// no such route (go-gitea/gitea#38463), so the fake has none for it either.
    pub fn deliveries(&self, place: &str, id: u64, per_page: usize) -> Option<Vec<Value>> {
        let hook = self.by_place.get(place)?.iter().find(|h| h.id == id)?;
        Some(hook.deliveries.iter().take(per_page.clamp(1, 100)).cloned().collect())
    }

    pub fn update(&mut self, place: &str, github: bool, id: u64, body: &Value) -> Option<Result<Value, Refusal>> {
        let hook = self.by_place.get_mut(place)?.iter_mut().find(|h| h.id == id)?;
        if let Some(config) = body.get("config") {
            // Both forges keep what a patch's config leaves out (GitHub's docs: "Update a
            // repository webhook"; gitea: editHook reads each key present).
            if let Some(url) = config_text(config, "url") {
                hook.url = url;
            }
            match config_text(config, "content_type").as_deref() {
                Some(t @ ("json" | "form")) => hook.content_type = t.to_owned(),
                Some(_) => return Some(Err(unprocessable("Invalid content type"))),
                None => {}
            }
            if let Some(secret) = config_text(config, "secret") {
                hook.secret = secret;
            }
        }
        if let Some(events) = body.get("events").and_then(Value::as_array) {
            let asked: Vec<String> = events.iter().filter_map(Value::as_str).map(str::to_owned).collect();
            hook.events = if github { asked } else { gitea_events(&asked) };
        }
        if let Some(active) = body.get("active").and_then(Value::as_bool) {
            hook.active = active;
        }
        Some(Ok(show(hook, github)))
    }
}

/// GitHub shows the secret masked; gitea's `ToHook` leaves it out.
fn show(hook: &StoredHook, github: bool) -> Value {
    if github {
        json!({
            "type": "Repository", "id": hook.id, "name": "web", "active": hook.active, "events": hook.events,
            "config": { "url": hook.url, "content_type": hook.content_type, "insecure_ssl": "0", "secret": "********" },
            "updated_at": "2026-11-30T00:00:00Z", "created_at": "2026-11-30T00:00:00Z"
        })
    } else {
        json!({
            "id": hook.id, "type": "gitea", "branch_filter": "*", "authorization_header": "",
            "config": { "url": hook.url, "content_type": hook.content_type, "http_method": "post" },
            "events": hook.events, "active": hook.active,
            "updated_at": "2026-11-30T00:00:00Z", "created_at": "2026-11-30T00:00:00Z"
        })
    }
}
