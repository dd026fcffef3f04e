//! Real captured webhook payloads, retargeted at the test repositories and
//! signed the way each forge signs them.

use std::path::PathBuf;

use kugetsu::webhook::signature::sign;
use serde_json::Value;

pub fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    assert!(dir.is_dir(), "webhook fixtures are missing at {}", dir.display());
    dir
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(name)).expect("fixture is JSON")
}

/// Points a payload at `owner/repo#number`, written by `author`.
pub fn retarget(mut payload: Value, owner: &str, repo: &str, number: u64, author: &str) -> Value {
    let r = &mut payload["repository"];
    r["name"] = repo.into();
    r["full_name"] = format!("{owner}/{repo}").into();
    r["owner"]["login"] = owner.into();
    r["owner"]["username"] = owner.into();
    r["html_url"] = format!("https://forge.example.com/{owner}/{repo}").into();
    r["default_branch"] = "main".into();
    payload["issue"]["number"] = number.into();
    fn set_user(who: &mut Value, author: &str) {
        if !who.is_object() {
            return;
        }
        who["login"] = author.into();
        who["username"] = author.into();
        if who.get("type").is_some() {
            who["type"] = "User".into();
        }
    }
    set_user(&mut payload["sender"], author);
    set_user(&mut payload["issue"]["user"], author);
    if payload.get("comment").is_some() {
        set_user(&mut payload["comment"]["user"], author);
    }
    payload
}

pub fn with_comment(mut payload: Value, id: u64, body: &str) -> Value {
    payload["comment"]["id"] = id.into();
    payload["comment"]["body"] = body.into();
    payload
}

pub struct Delivery {
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

pub fn github(event: &str, delivery: &str, payload: &Value, secret: &str) -> Delivery {
    let body = serde_json::to_vec_pretty(payload).unwrap();
    let headers = vec![
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", delivery.to_owned()),
        ("x-hub-signature-256", format!("sha256={}", sign(secret, &body))),
        ("user-agent", "GitHub-Hookshot/test".to_owned()),
        ("content-type", "application/json".to_owned()),
    ];
    Delivery { headers, body }
}

/// As Gitea sends it: its own headers plus GitHub-style ones.
pub fn gitea(event: &str, event_type: &str, delivery: &str, payload: &Value, secret: &str) -> Delivery {
    let body = serde_json::to_vec_pretty(payload).unwrap();
    gitea_raw(event, event_type, delivery, body, secret)
}

pub fn gitea_raw(event: &str, event_type: &str, delivery: &str, body: Vec<u8>, secret: &str) -> Delivery {
    let sig = sign(secret, &body);
    let headers = vec![
        ("x-gitea-event", event.to_owned()),
        ("x-gitea-event-type", event_type.to_owned()),
        ("x-gitea-delivery", delivery.to_owned()),
        ("x-gitea-signature", sig.clone()),
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", delivery.to_owned()),
        ("x-hub-signature-256", format!("sha256={sig}")),
        ("content-type", "application/json".to_owned()),
    ];
    Delivery { headers, body }
}

/// Where a delivery goes: a bare URL, or a bot's endpoint whose fake forge
/// first learns what the delivery says exists.
pub trait Target {
    fn url(&self) -> &str;
    fn seed(&self, _delivery: &Delivery) {}
}

impl Target for str {
    fn url(&self) -> &str {
        self
    }
}

impl Target for String {
    fn url(&self) -> &str {
        self
    }
}

/// A webhook URL of a bot whose forge is the fake one.
pub struct Endpoint {
    pub url: String,
    pub forge: super::FakeForge,
}

impl Target for Endpoint {
    fn url(&self) -> &str {
        &self.url
    }

    fn seed(&self, delivery: &Delivery) {
        self.forge.seed(delivery);
    }
}

impl Delivery {
    /// The JSON document the delivery carries, form-encoded or not.
    pub fn payload(&self) -> Option<Value> {
        let form = self.headers.iter().any(|(k, v)| *k == "content-type" && v.starts_with("application/x-www-form"));
        if form {
            let json = form_urlencoded::parse(&self.body).find(|(k, _)| k == "payload").map(|(_, v)| v.into_owned())?;
            return serde_json::from_str(&json).ok();
        }
        serde_json::from_slice(&self.body).ok()
    }

    pub fn without(mut self, header: &str) -> Self {
        self.headers.retain(|(k, _)| *k != header);
        self
    }

    pub fn with(mut self, header: &'static str, value: &str) -> Self {
        self.headers.retain(|(k, _)| *k != header);
        self.headers.push((header, value.to_owned()));
        self
    }

    pub async fn post<T: Target + ?Sized>(&self, to: &T) -> (u16, String) {
        self.post_with(&reqwest::Client::new(), to).await
    }

    /// Posts with a caller's client, which keeps its connection alive as a forge does.
    pub async fn post_with<T: Target + ?Sized>(&self, client: &reqwest::Client, to: &T) -> (u16, String) {
        to.seed(self);
        let mut req = client.post(to.url()).body(self.body.clone());
        for (k, v) in &self.headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("webhook request");
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }
}
