//! A fake forge API, as strict as the real ones for every call kugetsu makes.
//! It serves GitHub's paths at the root of one port and Gitea's under `/api/v1`
//! on another, keeps state, records every call, and can be told to fail.
//!
//! Each rule names its source:
//! - gitea: go-gitea/gitea (`routers/api/v1/...`, `modules/structs/...`);
//! - GitHub: docs.github.com/en/rest (the page named at the rule).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fake_reactions;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::fake_hooks::{Hooks, StoredHook};
use super::fake_pulls::{Pull, Pulls};
use super::webhook::Delivery;

#[derive(Debug, Clone)]
pub struct PostedComment {
    pub repo: String,
    pub issue: u64,
    pub id: u64,
    pub body: String,
    pub author: String,
    /// When it was made or last changed (RFC 3339), as both forges write it.
    pub updated_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    Github,
    Gitea,
}

/// Faults injected into the calls on a job's path (permission, comments,
/// reactions), each with its own share of `rate`.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub rate: f64,
    /// How long a "slow" answer takes: set it past kugetsu's `bot.api_timeout`.
    pub slow: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 before anything happened.
    Error,
    /// The call takes effect, then the forge answers 502 (a proxy timing out).
    BadGatewayAfterEffect,
    /// The connection drops mid-answer; the call may or may not have taken effect.
    Dropped { applied: bool },
    /// The answer comes after the client gave up; the call took effect.
    Slow,
    /// 429 with `retry-after` (GitHub's rate-limit docs; Gitea has no such limit by default).
    RateLimited { retry_after_secs: u64 },
}

/// An issue as the fake holds it.
#[derive(Debug, Clone, Default)]
pub(super) struct Issue {
    pub(super) author: String,
    pub(super) title: String,
    pub(super) body: String,
    pub(super) labels: Vec<String>,
    /// A pull request, which both forges also serve as an issue.
    pub(super) is_pull: bool,
    /// `(added, label, by, when)`, oldest first: GitHub's issue events, Gitea's timeline.
    pub(super) label_events: Vec<(bool, String, String, String)>,
    /// When it last changed (RFC 3339); unset, the start of the fake's day.
    pub(super) updated: Option<String>,
}

/// Before anything the fake is told: what its issues and records say when unset.
const EPOCH_OF_THE_FAKE: &str = "2026-01-01T00:00:00Z";

#[derive(Default)]
pub(super) struct State {
    calls: Vec<String>,
    /// Token → the login it authenticates.
    tokens: HashMap<String, String>,
    /// Site administrators (Gitea's `is_admin`).
    site_admins: BTreeSet<String>,
    /// `owner/repo` → its issues.
    pub(super) repos: HashMap<String, BTreeMap<u64, Issue>>,
    pub(super) pulls: Pulls,
    pub(super) checks: super::fake_checks::Checks,
    /// Every comment, whoever wrote it, in creation order.
    comments: Vec<PostedComment>,
    pub(super) reactions: super::fake_reactions::Reactions,
    /// Every edit of a comment: its id and new text, in order.
    edits: Vec<(u64, String)>,
    /// Gitea's web attachments: uuid → (content type, bytes).
    attachments: HashMap<String, (String, Vec<u8>)>,
    /// Login → permission on every repository (`read` when unset).
    permissions: HashMap<String, String>,
    permission_failure: Option<u16>,
    faults: Option<Faults>,
    rng: Option<rand::rngs::StdRng>,
    /// Faults for the next calls whose method and path match, in order.
    forced: Vec<(Method, String, Fault)>,
    /// How many faults were injected, by kind.
    injected: HashMap<String, usize>,
    pub(super) next_id: u64,
    hooks: Hooks,
    /// Organisations that exist (their owners are the admins).
    orgs: BTreeSet<String>,
    /// Calls answered 304.
    not_modified: usize,
}

#[derive(Clone)]
pub struct FakeForge {
    github_port: u16,
    gitea_port: u16,
    state: Arc<Mutex<State>>,
}

/// kugetsu's progress comments end with this marker (`comment::progress`).
fn is_progress(body: &str) -> bool {
    body.contains("<!-- kugetsu:progress:")
}

/// A slow answer's delay when no fault plan says otherwise: past the tests' `api_timeout`.
const SLOW: Duration = Duration::from_secs(5);

/// The token a GitHub App installation gets from this fake.
pub const INSTALLATION_TOKEN: &str = "ghs_fake-installation-token";
/// The login an installation token acts as: a GitHub App's bot user.
pub const APP_BOT_LOGIN: &str = "kugetsu[bot]";
/// The login of the bot account the tests' tokens belong to.
pub const BOT_LOGIN: &str = "kugetsu";

/// GitHub: "body is too long (maximum is 65536 characters)" (REST API, issue comments).
const GITHUB_MAX_BODY: usize = 65_536;

impl FakeForge {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State { next_id: 100_000, ..State::default() }));
        state.lock().unwrap().tokens.insert(INSTALLATION_TOKEN.into(), APP_BOT_LOGIN.into());
        let mut this = Self { github_port: 0, gitea_port: 0, state };
        this.github_port = super::serve_on_loopback(this.router(Flavor::Github), "fake GitHub").await;
        this.gitea_port = super::serve_on_loopback(this.router(Flavor::Gitea), "fake Gitea").await;
        this
    }

    fn router(&self, flavor: Flavor) -> Router {
        let forge = self.clone();
        Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let forge = forge.clone();
            async move { forge.handle(flavor, method, uri, headers, body).await }
        })
    }

    pub fn github_api(&self) -> String {
        format!("http://127.0.0.1:{}", self.github_port)
    }

    pub fn gitea_api(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1", self.gitea_port)
    }

    /// Lets `token` in as `login`.
    pub fn accept_token(&self, token: &str, login: &str) {
        self.state.lock().unwrap().tokens.insert(token.to_owned(), login.to_owned());
    }

    pub fn set_permission(&self, user: &str, permission: &str) {
        self.state.lock().unwrap().permissions.insert(user.to_owned(), permission.to_owned());
    }

    /// Makes the permission API answer this status from now on (`None`: answer again).
    pub fn fail_permissions(&self, status: Option<u16>) {
        self.state.lock().unwrap().permission_failure = status;
    }

    /// Injects faults from now on (`None` stops them); `seed` makes them repeatable.
    pub fn set_faults(&self, faults: Option<Faults>, seed: u64) {
        let mut state = self.state.lock().unwrap();
        state.faults = faults;
        state.rng = Some(rand::rngs::StdRng::seed_from_u64(seed));
    }

    /// Makes the next `method` call whose path contains `path` fail with `fault`.
    pub fn fail_next(&self, method: Method, path: &str, fault: Fault) {
        self.state.lock().unwrap().forced.push((method, path.to_owned(), fault));
    }

    pub fn add_repo(&self, repo: &str) {
        self.state.lock().unwrap().repos.entry(repo.to_owned()).or_default();
    }

    pub fn add_org(&self, owner: &str) {
        self.state.lock().unwrap().orgs.insert(owner.to_owned());
    }

    /// The hooks at `repos/<owner>/<repo>` or `orgs/<owner>`, secrets included.
    pub fn hooks(&self, place: &str) -> Vec<StoredHook> {
        self.state.lock().unwrap().hooks.by_place.get(place).cloned().unwrap_or_default()
    }

    /// Someone changes a hook on the forge: turns it off, sets another secret.
    pub fn tamper_with_hook(&self, place: &str, id: u64) {
        let mut state = self.state.lock().unwrap();
        if let Some(hook) = state.hooks.by_place.get_mut(place).and_then(|h| h.iter_mut().find(|h| h.id == id)) {
            hook.active = false;
            hook.secret = "tampered".into();
            hook.events = vec!["push".into()];
        }
    }

    /// GitHub records that the hook delivered an `issue_comment` event, answered `status_code`.
    pub fn add_hook_delivery(&self, place: &str, id: u64, status_code: u16) {
        let mut state = self.state.lock().unwrap();
        let hook = state.hooks.by_place.get_mut(place).and_then(|h| h.iter_mut().find(|h| h.id == id));
        let hook = hook.expect("a hook to record a delivery of");
        let status = if status_code == 0 {
            "failed to connect"
        } else if status_code < 300 {
            "OK"
        } else {
            "Invalid HTTP Response"
        };
        let n = hook.deliveries.len() + 1;
        let delivery = json!({
            "id": n, "guid": format!("guid-{n}"), "delivered_at": format!("2026-11-30T12:00:{n:02}Z"),
            "redelivery": false, "duration": 0.05, "status": status, "status_code": status_code,
            "event": "issue_comment", "action": "created", "installation_id": null, "repository_id": 1,
        });
        hook.deliveries.insert(0, delivery);
    }

    /// A hook someone else installed.
    pub fn add_hook(&self, place: &str, url: &str) {
        let mut state = self.state.lock().unwrap();
        state.next_id += 1;
        let hook = StoredHook {
            id: state.next_id,
            url: url.to_owned(),
            content_type: "json".into(),
            secret: "theirs".into(),
            events: vec!["push".into()],
            active: true,
            deliveries: Vec::new(),
        };
        state.hooks.by_place.entry(place.to_owned()).or_default().push(hook);
    }

    /// How many calls were answered 304 Not Modified.
    pub fn not_modified(&self) -> usize {
        self.state.lock().unwrap().not_modified
    }

    /// Whether the forge has the repository `owner/name`.
    pub fn has_repo(&self, repo: &str) -> bool {
        self.state.lock().unwrap().repos.contains_key(repo)
    }

    /// The permission the fake gives `user` (one for every repository).
    pub fn permission_of(&self, user: &str) -> Option<String> {
        self.state.lock().unwrap().permissions.get(user).cloned()
    }

    /// Pull requests may only come from branches that exist in these bare repositories.
    pub fn set_git_remotes(&self, remotes: &std::path::Path) {
        self.state.lock().unwrap().pulls.remotes = Some(remotes.to_owned());
    }

    /// The repository's pull requests: number, title, body and how they stand.
    pub fn pulls(&self, repo: &str) -> Vec<(u64, String, String, Pull)> {
        let state = self.state.lock().unwrap();
        state
            .pulls
            .all
            .iter()
            .filter(|((r, _), _)| r == repo)
            .map(|((r, n), p)| {
                let issue = &state.repos[r][n];
                (*n, issue.title.clone(), issue.body.clone(), p.clone())
            })
            .collect()
    }

    /// `author` submits a review of pull request `pull` with line comments
    /// `(path, line, body)`; returns the review's id and its comments' ids.
    pub fn add_review(
        &self,
        repo: &str,
        pull: u64,
        author: &str,
        body: &str,
        comments: &[(&str, u64, &str)],
    ) -> (u64, Vec<u64>) {
        let mut state = self.state.lock().unwrap();
        let review = super::fake_pulls::next_id(&mut state);
        let comments: Vec<super::fake_pulls::LineComment> = comments
            .iter()
            .map(|(path, line, text)| super::fake_pulls::LineComment {
                id: super::fake_pulls::next_id(&mut state),
                review,
                author: author.to_owned(),
                body: (*text).to_owned(),
                path: (*path).to_owned(),
                line: *line,
                diff_hunk: format!("@@ -1,2 +1,2 @@\n-old line {line}\n+new line {line}"),
                in_reply_to: None,
            })
            .collect();
        let ids = comments.iter().map(|c| c.id).collect();
        let state_name = if comments.is_empty() && body.is_empty() { "APPROVED" } else { "COMMENTED" };
        state.pulls.reviews.push(super::fake_pulls::FakeReview {
            id: review,
            repo: repo.to_owned(),
            pull,
            author: author.to_owned(),
            body: body.to_owned(),
            state: state_name,
            comments,
        });
        (review, ids)
    }

    /// A CI reports `state` for `context` on commit `sha`.
    pub fn set_status(&self, repo: &str, sha: &str, context: &str, state: &str, description: &str) {
        let status = super::fake_checks::Status {
            repo: repo.to_owned(),
            sha: sha.to_owned(),
            context: context.to_owned(),
            state: state.to_owned(),
            target_url: format!("https://ci.example.com/{repo}/{context}/{sha}"),
            description: description.to_owned(),
        };
        self.state.lock().unwrap().checks.statuses.push(status);
    }

    /// A GitHub check run completes on `sha`.
    pub fn add_check_run(&self, repo: &str, sha: &str, name: &str, conclusion: &str, summary: &str) {
        let run = super::fake_checks::CheckRun {
            repo: repo.to_owned(),
            sha: sha.to_owned(),
            name: name.to_owned(),
            conclusion: conclusion.to_owned(),
            summary: summary.to_owned(),
        };
        self.state.lock().unwrap().checks.runs.push(run);
    }

    /// Replies in review threads, by the comment they answer: `(parent, author, body)`.
    pub fn thread_replies(&self, repo: &str, pull: u64) -> Vec<(u64, String, String)> {
        let state = self.state.lock().unwrap();
        state
            .pulls
            .reviews
            .iter()
            .filter(|r| r.repo == repo && r.pull == pull)
            .flat_map(|r| r.comments.iter())
            .filter_map(|c| c.in_reply_to.map(|parent| (parent, c.author.clone(), c.body.clone())))
            .collect()
    }

    /// A person opens a pull request from `head` to `base`, as the forge's web page would.
    pub fn open_pull_as(&self, repo: &str, head: &str, base: &str, author: &str) -> u64 {
        let mut state = self.state.lock().unwrap();
        let issues = state.repos.entry(repo.to_owned()).or_default();
        let number = issues.keys().max().copied().unwrap_or(0) + 1;
        let issue =
            Issue { author: author.to_owned(), title: format!("{author}'s take"), is_pull: true, ..Issue::default() };
        issues.insert(number, issue);
        let pull = Pull { head: head.to_owned(), base: base.to_owned(), draft: false, open: true, merged: false };
        state.pulls.all.insert((repo.to_owned(), number), pull);
        number
    }

    /// A person closes the pull request without merging it (or merges it).
    pub fn close_pull(&self, repo: &str, number: u64, merged: bool) {
        let mut state = self.state.lock().unwrap();
        let pull = state.pulls.all.get_mut(&(repo.to_owned(), number)).expect("a pull request");
        pull.open = false;
        pull.merged = merged;
    }

    pub fn add_issue(&self, repo: &str, number: u64) {
        self.state.lock().unwrap().repos.entry(repo.to_owned()).or_default().entry(number).or_default();
    }

    /// Records that `by` added `label` at `at` (RFC 3339), long ago say.
    pub fn label_event_at(&self, repo: &str, number: u64, label: &str, by: &str, at: &str) {
        let mut state = self.state.lock().unwrap();
        let issue = state.repos.entry(repo.to_owned()).or_default().entry(number).or_default();
        issue.labels.retain(|l| !l.eq_ignore_ascii_case(label));
        issue.labels.push(label.to_owned());
        issue.label_events.push((true, label.to_owned(), by.to_owned(), at.to_owned()));
    }

    /// Someone changes the issue (a comment, an edit): it counts as updated now.
    pub fn touch_issue(&self, repo: &str, number: u64) {
        let mut state = self.state.lock().unwrap();
        state.repos.entry(repo.to_owned()).or_default().entry(number).or_default().updated = Some(now_rfc3339());
    }

    /// Records that `by` added (or removed) `label` on an issue, as the forge would.
    pub fn label_event(&self, repo: &str, number: u64, label: &str, added: bool, by: &str) {
        let mut state = self.state.lock().unwrap();
        let issue = state.repos.entry(repo.to_owned()).or_default().entry(number).or_default();
        issue.labels.retain(|l| !l.eq_ignore_ascii_case(label));
        if added {
            issue.labels.push(label.to_owned());
        }
        let now = now_rfc3339();
        issue.label_events.push((added, label.to_owned(), by.to_owned(), now.clone()));
        issue.updated = Some(now);
    }

    /// Makes the forge hold what a delivery says happened: its repository, issue
    /// and comment, written by its author. A real forge only sends a webhook for
    /// things that exist.
    pub fn seed(&self, delivery: &Delivery) {
        let Some(payload) = delivery.payload() else { return };
        let repository = &payload["repository"];
        let owner = repository["owner"]["login"].as_str().or(repository["owner"]["username"].as_str());
        let (Some(owner), Some(name)) = (owner, repository["name"].as_str()) else { return };
        let repo = format!("{owner}/{name}");
        let Some(number) = payload["issue"]["number"].as_u64() else {
            self.add_repo(&repo);
            return;
        };
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let sender = text(&payload["sender"]["login"]);
        let labels: Vec<String> =
            payload["issue"]["labels"].as_array().into_iter().flatten().map(|l| text(&l["name"])).collect();
        let (before, action) = {
            let mut state = self.state.lock().unwrap();
            let issue = state.repos.entry(repo.clone()).or_default().entry(number).or_default();
            issue.author = text(&payload["issue"]["user"]["login"]);
            issue.title = text(&payload["issue"]["title"]);
            issue.body = text(&payload["issue"]["body"]);
            issue.is_pull = !payload["issue"]["pull_request"].is_null();
            (std::mem::replace(&mut issue.labels, labels.clone()), text(&payload["action"]))
        };
        // What the forge records for a label change: GitHub names the label,
        // Gitea sends the whole new set.
        match action.as_str() {
            "labeled" => self.label_event(&repo, number, &text(&payload["label"]["name"]), true, &sender),
            "label_updated" | "label_cleared" => {
                for added in labels.iter().filter(|l| !before.contains(l)) {
                    self.label_event(&repo, number, added, true, &sender);
                }
                for removed in before.iter().filter(|l| !labels.contains(l)) {
                    self.label_event(&repo, number, removed, false, &sender);
                }
            }
            _ => {}
        }
        let comment = &payload["comment"];
        if let Some(id) = comment["id"].as_u64() {
            let author = text(&comment["user"]["login"]);
            let body = text(&comment["body"]);
            let mut state = self.state.lock().unwrap();
            state.comments.retain(|c| c.id != id);
            // The forge's own record, which its webhook payloads copy.
            let updated_at = comment["updated_at"].as_str().map_or_else(now_rfc3339, str::to_owned);
            state.comments.push(PostedComment { repo, issue: number, id, body, author, updated_at });
        }
    }

    /// A file people attached on the Gitea side, at `/attachments/<uuid>`.
    pub fn add_attachment(&self, uuid: &str, mime: &str, bytes: &[u8]) {
        self.state.lock().unwrap().attachments.insert(uuid.to_owned(), (mime.to_owned(), bytes.to_vec()));
    }

    /// Changes a comment behind the delivery's back (an edit, or a forgery's victim).
    pub fn set_comment(&self, id: u64, author: &str, body: &str) {
        let mut state = self.state.lock().unwrap();
        if let Some(c) = state.comments.iter_mut().find(|c| c.id == id) {
            c.author = author.to_owned();
            c.body = body.to_owned();
            c.updated_at = now_rfc3339();
        }
    }

    /// The comments the bot wrote on an issue, its progress comments aside.
    pub fn comments(&self, repo: &str, issue: u64) -> Vec<PostedComment> {
        self.bot_comments(repo, issue).into_iter().filter(|c| !is_progress(&c.body)).collect()
    }

    /// The bot's progress comments on an issue, as they read now.
    pub fn progress_comments(&self, repo: &str, issue: u64) -> Vec<PostedComment> {
        self.bot_comments(repo, issue).into_iter().filter(|c| is_progress(&c.body)).collect()
    }

    fn bot_comments(&self, repo: &str, issue: u64) -> Vec<PostedComment> {
        let state = self.state.lock().unwrap();
        let bots = [BOT_LOGIN, APP_BOT_LOGIN];
        state
            .comments
            .iter()
            .filter(|c| c.repo == repo && c.issue == issue && bots.contains(&c.author.as_str()))
            .cloned()
            .collect()
    }

    /// Every text a comment had after its edits, in order.
    pub fn edits_of(&self, id: u64) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.edits.iter().filter(|(edited, _)| *edited == id).map(|(_, body)| body.clone()).collect()
    }

    /// Reactions standing now, as `owner/repo comment|issue <id> <content>`.
    pub fn reactions(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.reactions.current.iter().map(|r| format!("{} {} {} {}", r.repo, r.kind, r.target, r.content)).collect()
    }

    /// Every reaction made (`+content`) and taken back (`-content`), in order.
    pub fn reaction_history(&self) -> Vec<String> {
        self.state.lock().unwrap().reactions.history.clone()
    }

    /// The faults injected so far, by kind.
    pub fn faults_injected(&self) -> Vec<(String, usize)> {
        let mut all: Vec<_> = self.state.lock().unwrap().injected.clone().into_iter().collect();
        all.sort();
        all
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Waits until `done` holds of this forge (two minutes at most).
    pub async fn wait_until(&self, what: &str, done: impl Fn(&FakeForge) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while !done(self) {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The reactions made and taken back on one target (`comment 501`, `issue 33`), in order.
    pub fn reactions_on(&self, repo: &str, target: &str) -> Vec<String> {
        let prefix = format!("{repo} {target} ");
        self.reaction_history().iter().filter_map(|h| h.strip_prefix(&prefix).map(str::to_owned)).collect()
    }

    pub async fn wait_for_comments(&self, repo: &str, issue: u64, count: usize) -> Vec<PostedComment> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let comments = self.comments(repo, issue);
            if comments.len() >= count {
                return comments;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{repo}#{issue} never got {count} comment(s): {comments:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn handle(&self, flavor: Flavor, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let if_none_match = headers.get("if-none-match").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let fault = {
            let mut state = self.state.lock().unwrap();
            state.calls.push(format!("{method} {} [{auth}]", uri.path()));
            let fault = draw_fault(&mut state, &method, uri.path());
            if let Some(f) = fault {
                *state.injected.entry(format!("{f:?}")).or_default() += 1;
            }
            fault
        };
        // The router's clone of `self` predates the ports, so the caller's Host says where we are.
        let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
        let prefix = if flavor == Flavor::Gitea { "/api/v1" } else { "" };
        let request =
            Request { flavor, method, uri, auth, if_none_match, body, base: format!("http://{host}{prefix}") };
        if fault == Some(Fault::Error) {
            return error(flavor, StatusCode::INTERNAL_SERVER_ERROR, "");
        }
        if let Some(Fault::RateLimited { retry_after_secs }) = fault {
            let mut response = error(flavor, StatusCode::TOO_MANY_REQUESTS, "API rate limit exceeded");
            response.headers_mut().insert("retry-after", HeaderValue::from(retry_after_secs));
            return response;
        }
        let applied = !matches!(fault, Some(Fault::Dropped { applied: false }));
        let response = if applied { self.state.lock().map(|mut s| route(&mut s, &request)).unwrap() } else { None };
        if response.as_ref().is_some_and(|r| r.status() == StatusCode::NOT_MODIFIED) {
            self.state.lock().unwrap().not_modified += 1;
        }
        match fault {
            Some(Fault::BadGatewayAfterEffect) => error(flavor, StatusCode::BAD_GATEWAY, ""),
            Some(Fault::Dropped { .. }) => dropped(),
            Some(Fault::Slow) => {
                let wait = self.state.lock().unwrap().faults.map_or(SLOW, |f| f.slow);
                tokio::time::sleep(wait).await;
                response.unwrap_or_else(|| not_found(flavor))
            }
            _ => response.unwrap_or_else(|| not_found(flavor)),
        }
    }
}

pub(super) struct Request {
    pub(super) flavor: Flavor,
    pub(super) method: Method,
    uri: Uri,
    auth: String,
    if_none_match: Option<String>,
    body: Bytes,
    /// This fake's own API base, for `Link` headers.
    base: String,
}

/// Faults hit only the calls on a job's path, never the GitHub App token call.
fn draw_fault(state: &mut State, method: &Method, path: &str) -> Option<Fault> {
    if let Some(at) = state.forced.iter().position(|(m, p, _)| m == method && path.contains(p.as_str())) {
        return Some(state.forced.remove(at).2);
    }
    let faults = state.faults?;
    // Everything a job asks the forge: permissions, the trigger's confirmation,
    // comments and reactions; not the GitHub App token.
    let on_job_path = path.contains("/repos/");
    let rng = state.rng.as_mut()?;
    if !on_job_path || !rng.random_bool(faults.rate.clamp(0.0, 1.0)) {
        return None;
    }
    let writes = *method == Method::POST;
    Some(match rng.random_range(0..4) {
        0 => Fault::Error,
        1 if writes => Fault::BadGatewayAfterEffect,
        1 => Fault::Error,
        2 => Fault::Dropped { applied: rng.random_bool(0.5) },
        _ => Fault::Slow,
    })
}

/// Routes one call; `None` is a 404 (unknown path, repository, issue or comment).
fn route(state: &mut State, req: &Request) -> Option<Response> {
    // gitea's web route for attachments (GetAttachment in routers/web/repo/attachment.go),
    // outside the API: the file with its type, 404 for an unknown uuid.
    if let (Flavor::Gitea, "GET", Some(uuid)) =
        (req.flavor, req.method.as_str(), req.uri.path().strip_prefix("/attachments/"))
    {
        let (mime, bytes) = state.attachments.get(uuid)?.clone();
        return Some(([(axum::http::header::CONTENT_TYPE, mime)], bytes).into_response());
    }
    let path = match req.flavor {
        Flavor::Github => req.uri.path().to_owned(),
        // gitea: every API route lives under /api/v1 (routers/api/v1/api.go).
        Flavor::Gitea => req.uri.path().strip_prefix("/api/v1")?.to_owned(),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let ("POST", ["app", "installations", _, "access_tokens"]) = (req.method.as_str(), segments.as_slice()) {
        return Some(installation_token(req));
    }
    // Both forges refuse anonymous calls to what kugetsu uses here: GitHub's
    // reactions and comment creation need auth; gitea's repo routes need a
    // signed-in user for writes and hide private repositories (404) otherwise.
    let Some(caller) = caller(state, req) else {
        return Some(error(req.flavor, StatusCode::UNAUTHORIZED, "Bad credentials"));
    };
    let request: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    match (req.method.as_str(), segments.as_slice()) {
        // Both: GET /user, the authenticated user (an App installation token gets
        // 403 "Resource not accessible by integration" from GitHub).
        ("GET", ["user"]) if caller == APP_BOT_LOGIN => {
            Some(error(req.flavor, StatusCode::FORBIDDEN, "Resource not accessible by integration"))
        }
        ("GET", ["user"]) => Some(
            axum::Json(match req.flavor {
                Flavor::Github => github_user(&caller),
                Flavor::Gitea => gitea_user(&caller),
            })
            .into_response(),
        ),
        // gitea's "createCurrentUserRepo" (routers/api/v1/repo/repo.go, CreateUserRepo):
        // 201 with the repository, 409 when the caller has one of that name.
        ("POST", ["user", "repos"]) if req.flavor == Flavor::Gitea => {
            let Some(name) = request.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
                return Some(error(req.flavor, StatusCode::UNPROCESSABLE_ENTITY, "[Name]: Required"));
            };
            let full = format!("{caller}/{name}");
            if state.repos.contains_key(&full) {
                let text = "The repository with the same name already exists.";
                return Some(error(req.flavor, StatusCode::CONFLICT, text));
            }
            state.repos.insert(full.clone(), BTreeMap::new());
            // The fake keeps one permission per user, for every repository.
            state.permissions.insert(caller.clone(), "owner".into());
            let branch = request.get("default_branch").and_then(Value::as_str).unwrap_or("main");
            let repo = json!({ "id": state.repos.len(), "name": name, "full_name": full,
                "owner": { "login": caller }, "default_branch": branch, "private": false });
            Some((StatusCode::CREATED, axum::Json(repo)).into_response())
        }
        // gitea's AddOrUpdateCollaborator (routers/api/v1/repo/collaborators.go):
        // repository admins only (`reqAdmin()`), 204; an unknown permission is 422.
        ("PUT", ["repos", o, r, "collaborators", user]) if req.flavor == Flavor::Gitea => {
            known_repo(state, o, r)?;
            if !matches!(level(state, &caller).as_str(), "admin" | "owner") {
                return Some(error(
                    req.flavor,
                    StatusCode::FORBIDDEN,
                    "Must be an organization owner or repository admin",
                ));
            }
            let permission = request.get("permission").and_then(Value::as_str).unwrap_or("write");
            if !["read", "write", "admin"].contains(&permission) {
                return Some(error(req.flavor, StatusCode::UNPROCESSABLE_ENTITY, "invalid permission"));
            }
            state.permissions.insert((*user).to_owned(), permission.to_owned());
            Some(StatusCode::NO_CONTENT.into_response())
        }
        (_, ["repos", o, r, "hooks", rest @ ..]) => {
            known_repo(state, o, r)?;
            let place = format!("repos/{o}/{r}");
            hook_call(state, req, &caller, &place, rest, &request)
        }
        (_, ["repos", o, r, "commits", rest @ ..]) => {
            let repo = known_repo(state, o, r)?;
            super::fake_checks::call(state, req, &repo, rest)
        }
        (_, ["repos", o, r, "pulls", rest @ ..]) => {
            let repo = known_repo(state, o, r)?;
            super::fake_pulls::call(state, req, &caller, &repo, rest, &request)
        }
        (_, ["orgs", o, "hooks", rest @ ..]) => {
            state.orgs.contains(*o).then_some(())?;
            let place = format!("orgs/{o}");
            hook_call(state, req, &caller, &place, rest, &request)
        }
        ("GET", ["repos", o, r, "collaborators", user, "permission"]) => {
            known_repo(state, o, r)?;
            Some(permission(state, req.flavor, &caller, user))
        }
        ("POST", ["repos", o, r, "issues", "comments", id, "reactions"]) => {
            let repo = known_repo(state, o, r)?;
            let id: u64 = id.parse().ok()?;
            state.comments.iter().find(|c| c.id == id && c.repo == repo)?;
            Some(fake_reactions::react(state, req.flavor, &caller, (repo, "comment", id), &request))
        }
        ("POST", ["repos", o, r, "issues", n, "reactions"]) => {
            let (repo, number) = known_issue(state, o, r, n)?;
            Some(fake_reactions::react(state, req.flavor, &caller, (repo, "issue", number), &request))
        }
        ("DELETE", ["repos", o, r, "issues", "comments", id, "reactions", reaction])
            if req.flavor == Flavor::Github =>
        {
            let repo = known_repo(state, o, r)?;
            let (id, reaction): (u64, u64) = (id.parse().ok()?, reaction.parse().ok()?);
            Some(fake_reactions::unreact_by_id(state, (repo, "comment", id), reaction))
        }
        ("DELETE", ["repos", o, r, "issues", n, "reactions", reaction]) if req.flavor == Flavor::Github => {
            let (repo, number) = known_issue(state, o, r, n)?;
            Some(fake_reactions::unreact_by_id(state, (repo, "issue", number), reaction.parse().ok()?))
        }
        ("DELETE", ["repos", o, r, "issues", "comments", id, "reactions"]) if req.flavor == Flavor::Gitea => {
            let repo = known_repo(state, o, r)?;
            let id: u64 = id.parse().ok()?;
            state.comments.iter().find(|c| c.id == id && c.repo == repo)?;
            Some(fake_reactions::unreact_by_content(state, &caller, (repo, "comment", id), &request))
        }
        ("DELETE", ["repos", o, r, "issues", n, "reactions"]) if req.flavor == Flavor::Gitea => {
            let (repo, number) = known_issue(state, o, r, n)?;
            Some(fake_reactions::unreact_by_content(state, &caller, (repo, "issue", number), &request))
        }
        // GitHub documents PATCH; octocrab's `update_comment` sends POST, which
        // GitHub was reported to take (octocrab PR #33): both are taken. gitea:
        // PATCH (EditIssueComment in routers/api/v1/repo/issue_comment.go).
        ("PATCH" | "POST", ["repos", o, r, "issues", "comments", id])
            if req.method == Method::PATCH || req.flavor == Flavor::Github =>
        {
            let repo = known_repo(state, o, r)?;
            let id: u64 = id.parse().ok()?;
            Some(edit_comment(state, req, &caller, (&repo, id), &request))
        }
        ("POST", ["repos", o, r, "issues", n, "comments"]) => {
            let (repo, number) = known_issue(state, o, r, n)?;
            Some(create_comment(state, req, &caller, (repo, number), &request))
        }
        ("GET", ["repos", o, r, "issues", n, "comments"]) => {
            let (repo, number) = known_issue(state, o, r, n)?;
            Some(list_comments(state, req, (&repo, number)))
        }
        ("GET", ["repos", o, r, "issues", "comments", id]) => {
            let repo = known_repo(state, o, r)?;
            let id: u64 = id.parse().ok()?;
            let comment = state.comments.iter().find(|c| c.id == id && c.repo == repo)?;
            Some(axum::Json(comment_json(req.flavor, comment, on_pull(state, comment))).into_response())
        }
        // GitHub: GET /repos/{o}/{r}/issues/comments, "list issue comments for a
        // repository": `since` keeps those updated at or after it; paged by per_page.
        // gitea: ListRepoIssueComments (routers/api/v1/repo/issue_comment.go): `since`
        // too, paged by `page` and `limit` (at most 50, MAX_RESPONSE_ITEMS).
        ("GET", ["repos", o, r, "issues", "comments"]) => {
            let repo = known_repo(state, o, r)?;
            let query = query_of(req);
            let since =
                query.get("since").map(|s| humantime::parse_rfc3339(s).ok()).unwrap_or(Some(std::time::UNIX_EPOCH));
            let Some(since) = since else {
                return Some(error(req.flavor, StatusCode::UNPROCESSABLE_ENTITY, "since is not a timestamp"));
            };
            let all: Vec<Value> = state
                .comments
                .iter()
                .filter(|c| c.repo == repo && humantime::parse_rfc3339(&c.updated_at).is_ok_and(|at| at >= since))
                .map(|c| comment_json(req.flavor, c, on_pull(state, c)))
                .collect();
            if req.flavor == Flavor::Github {
                return Some(paginated(req, all));
            }
            let limit = query.get("limit").and_then(|v| v.parse().ok()).unwrap_or(30usize).clamp(1, 50);
            let page = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1usize).max(1);
            let total = HeaderValue::from(all.len());
            let items: Vec<Value> = all.into_iter().skip((page - 1) * limit).take(limit).collect();
            Some(([("x-total-count", total)], axum::Json(items)).into_response())
        }
        // Both: the repository's issues and pull requests, filtered by `labels`
        // (comma-separated; all must be on it), `since` (updated at or after) and
        // `state` (the fake's issues are all open). GitHub pages by `per_page`,
        // gitea by `limit` and `page` (routers/api/v1/repo/issue.go, ListIssues).
        ("GET", ["repos", o, r, "issues"]) => {
            let repo = known_repo(state, o, r)?;
            let query = query_of(req);
            let wanted: Vec<&str> = query.get("labels").map(|l| l.split(',').collect()).unwrap_or_default();
            let since = query
                .get("since")
                .map(|s| humantime::parse_rfc3339_weak(s).ok())
                .unwrap_or(Some(std::time::UNIX_EPOCH))?;
            if query.get("state").is_some_and(|s| s == "closed") {
                return Some(axum::Json(Vec::<Value>::new()).into_response());
            }
            let all: Vec<Value> = state.repos[&repo]
                .iter()
                .filter(|(_, issue)| wanted.iter().all(|w| issue.labels.iter().any(|l| l.eq_ignore_ascii_case(w))))
                .filter(|(_, issue)| {
                    let updated = issue.updated.as_deref().unwrap_or(EPOCH_OF_THE_FAKE);
                    humantime::parse_rfc3339_weak(updated).is_ok_and(|at| at >= since)
                })
                .map(|(n, issue)| issue_json(req.flavor, &repo, *n, issue))
                .collect();
            if req.flavor == Flavor::Github {
                return Some(paginated(req, all));
            }
            let limit = query.get("limit").and_then(|v| v.parse().ok()).unwrap_or(30usize).clamp(1, 50);
            let page = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1usize).max(1);
            Some(axum::Json(all.into_iter().skip((page - 1) * limit).take(limit).collect::<Vec<_>>()).into_response())
        }
        ("GET", ["repos", o, r, "issues", n]) => {
            let (repo, number) = known_issue(state, o, r, n)?;
            let issue = &state.repos[&repo][&number];
            Some(axum::Json(issue_json(req.flavor, &repo, number, issue)).into_response())
        }
        // GitHub: GET /repos/{o}/{r}/issues/{n}/events (paginated like comments).
        ("GET", ["repos", o, r, "issues", n, "events"]) if req.flavor == Flavor::Github => {
            let (repo, number) = known_issue(state, o, r, n)?;
            let events =
                state.repos[&repo][&number].label_events.iter().enumerate().map(|(i, (added, label, by, at))| {
                    json!({
                        "id": i + 1, "event": if *added { "labeled" } else { "unlabeled" }, "actor": github_user(by),
                        "label": { "name": label, "color": "ededed" }, "created_at": at
                    })
                });
            Some(paginated(req, events.collect()))
        }
        // gitea: GET /repos/{o}/{r}/issues/{index}/timeline; a label entry's body is
        // "1" when added (modules/structs/issue_comment.go, TimelineComment), paged by
        // `page` and `limit` (routers/api/v1/repo/issue_comment.go, ListIssueCommentsAndTimeline).
        ("GET", ["repos", o, r, "issues", n, "timeline"]) if req.flavor == Flavor::Gitea => {
            let (repo, number) = known_issue(state, o, r, n)?;
            let entries: Vec<Value> = state.repos[&repo][&number]
                .label_events
                .iter()
                .enumerate()
                .map(|(i, (added, label, by, at))| {
                    json!({
                        "id": i + 1, "type": "label", "body": if *added { "1" } else { "" }, "user": gitea_user(by),
                        "label": { "id": 1, "name": label, "color": "ededed" }, "created_at": at
                    })
                })
                .collect();
            let query = query_of(req);
            let limit = query.get("limit").and_then(|v| v.parse().ok()).unwrap_or(30usize).clamp(1, 50);
            let page = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1usize).max(1);
            let items: Vec<Value> = entries.into_iter().skip((page - 1) * limit).take(limit).collect();
            Some(axum::Json(items).into_response())
        }
        _ => None,
    }
}

fn caller(state: &State, req: &Request) -> Option<String> {
    let token = match req.flavor {
        Flavor::Github => req.auth.strip_prefix("Bearer ").or(req.auth.strip_prefix("token ")),
        // gitea: `token <t>` or `Bearer <t>` (services/auth/oauth2.go, parseToken).
        Flavor::Gitea => req.auth.strip_prefix("token ").or(req.auth.strip_prefix("Bearer ")),
    }?;
    state.tokens.get(token).cloned()
}

/// Webhooks need admin rights: GitHub answers 404 to others ("Repository
/// webhooks": the endpoints need admin access); gitea 403 (`reqAdmin()` on the
/// repository's hook routes, `reqOrgOwnership()` on an organisation's, in
/// routers/api/v1/api.go).
fn hook_call(
    state: &mut State,
    req: &Request,
    caller: &str,
    place: &str,
    rest: &[&str],
    body: &Value,
) -> Option<Response> {
    let admin = state.site_admins.contains(caller) || matches!(level(state, caller).as_str(), "admin" | "owner");
    if !admin {
        return Some(match req.flavor {
            Flavor::Github => not_found(req.flavor),
            Flavor::Gitea => {
                error(req.flavor, StatusCode::FORBIDDEN, "Must be an organization owner or repository admin")
            }
        });
    }
    let github = req.flavor == Flavor::Github;
    let answer = match (req.method.as_str(), rest) {
        ("GET", []) => {
            let all = state.hooks.list(place, github);
            return Some(if github { paginated(req, all) } else { axum::Json(all).into_response() });
        }
        ("POST", []) => {
            state.next_id += 1;
            let id = state.next_id;
            state.hooks.create(place, github, body, id).map(|hook| (StatusCode::CREATED, hook))
        }
        ("GET", [id, "deliveries"]) if github => {
            let id: u64 = id.parse().ok()?;
            let per_page = query_of(req).get("per_page").and_then(|n| n.parse().ok()).unwrap_or(30);
            return Some(axum::Json(state.hooks.deliveries(place, id, per_page)?).into_response());
        }
        ("PATCH", [id]) => {
            let id: u64 = id.parse().ok()?;
            state.hooks.update(place, github, id, body)?.map(|hook| (StatusCode::OK, hook))
        }
        _ => return None,
    };
    Some(match answer {
        Ok((status, hook)) => (status, axum::Json(hook)).into_response(),
        Err((status, message)) => error(req.flavor, status, &message),
    })
}

fn known_repo(state: &State, owner: &str, name: &str) -> Option<String> {
    let repo = format!("{owner}/{name}");
    state.repos.contains_key(&repo).then_some(repo)
}

fn known_issue(state: &State, owner: &str, name: &str, number: &str) -> Option<(String, u64)> {
    let repo = known_repo(state, owner, name)?;
    let number: u64 = number.parse().ok()?;
    state.repos.get(&repo)?.contains_key(&number).then_some((repo, number))
}

fn level(state: &State, user: &str) -> String {
    state.permissions.get(user).cloned().unwrap_or_else(|| "read".into())
}

fn known_user(state: &State, user: &str) -> bool {
    state.permissions.contains_key(user)
        || state.tokens.values().any(|login| login == user)
        || state.comments.iter().any(|c| c.author == user)
}

fn permission(state: &State, flavor: Flavor, caller: &str, user: &str) -> Response {
    if let Some(status) = state.permission_failure {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(flavor, status, "");
    }
    // gitea: routers/api/v1/repo/collaborators.go, GetRepoPermissions.
    let caller_is_admin =
        state.site_admins.contains(caller) || matches!(level(state, caller).as_str(), "admin" | "owner");
    if flavor == Flavor::Gitea && !caller_is_admin && !caller.eq_ignore_ascii_case(user) {
        return error(
            flavor,
            StatusCode::FORBIDDEN,
            "Only admins can query all permissions, repo admins can query all repo permissions, collaborators can query only their own",
        );
    }
    if !known_user(state, user) {
        return error(flavor, StatusCode::NOT_FOUND, "Not Found");
    }
    let permission = level(state, user);
    let user_json = match flavor {
        Flavor::Github => github_user(user),
        Flavor::Gitea => gitea_user(user),
    };
    axum::Json(json!({ "permission": permission, "role_name": permission, "user": user_json })).into_response()
}

/// Both: only the comment's author edits it here (the forges also let a
/// repository's writers, which kugetsu never relies on); the body is required,
/// and GitHub's at most 65,536 characters. 200 with the comment.
fn edit_comment(state: &mut State, req: &Request, caller: &str, (repo, id): (&str, u64), request: &Value) -> Response {
    let body = request["body"].as_str().unwrap_or_default().to_owned();
    if body.is_empty() {
        return error(req.flavor, StatusCode::UNPROCESSABLE_ENTITY, "body is missing");
    }
    if req.flavor == Flavor::Github && body.chars().count() > GITHUB_MAX_BODY {
        return error(req.flavor, StatusCode::UNPROCESSABLE_ENTITY, "body is too long (maximum is 65536 characters)");
    }
    let Some(at) = state.comments.iter().position(|c| c.id == id && c.repo == repo) else {
        return error(req.flavor, StatusCode::NOT_FOUND, "Not Found");
    };
    if !state.comments[at].author.eq_ignore_ascii_case(caller) {
        return error(req.flavor, StatusCode::FORBIDDEN, "only the poster may edit this comment here");
    }
    state.comments[at].body = body.clone();
    state.comments[at].updated_at = now_rfc3339();
    state.edits.push((id, body));
    let on_pull = on_pull(state, &state.comments[at]);
    axum::Json(comment_json(req.flavor, &state.comments[at], on_pull)).into_response()
}

fn create_comment(state: &mut State, req: &Request, caller: &str, at: (String, u64), request: &Value) -> Response {
    let body = request["body"].as_str().unwrap_or_default().to_owned();
    // gitea: CreateIssueCommentOption.Body is `binding:"Required"` (modules/structs/issue_comment.go);
    // GitHub: body is required and at most 65536 characters.
    if body.is_empty() {
        return error(req.flavor, StatusCode::UNPROCESSABLE_ENTITY, "body is missing");
    }
    if req.flavor == Flavor::Github && body.chars().count() > GITHUB_MAX_BODY {
        return error(req.flavor, StatusCode::UNPROCESSABLE_ENTITY, "body is too long (maximum is 65536 characters)");
    }
    state.next_id += 1;
    let (repo, issue) = at;
    let comment =
        PostedComment { repo, issue, id: state.next_id, body, author: caller.to_owned(), updated_at: now_rfc3339() };
    let answer = comment_json(req.flavor, &comment, on_pull(state, &comment));
    state.comments.push(comment);
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

fn list_comments(state: &State, req: &Request, at: (&str, u64)) -> Response {
    let all: Vec<Value> = state
        .comments
        .iter()
        .filter(|c| c.repo == at.0 && c.issue == at.1)
        .map(|c| comment_json(req.flavor, c, on_pull(state, c)))
        .collect();
    if req.flavor == Flavor::Gitea {
        // gitea: ListIssueComments returns every comment, with X-Total-Count.
        let total = HeaderValue::from(all.len());
        return ([("x-total-count", total)], axum::Json(all)).into_response();
    }
    paginated(req, all)
}

pub(super) fn query_of(req: &Request) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes()).into_owned().collect()
}

/// GitHub's lists: per_page (default 30, max 100) and page, with a `Link` header.
fn paginated(req: &Request, all: Vec<Value>) -> Response {
    let query = query_of(req);
    let per_page = query.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(30usize).clamp(1, 100);
    let page = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1usize).max(1);
    let last = all.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = all.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let path = req.uri.path();
    let url = |p: usize| format!("<{}{path}?per_page={per_page}&page={p}>", req.base.trim_end_matches("/api/v1"));
    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        links.push(format!("{}; rel=\"last\"", url(last)));
    }
    // GitHub tags every answer; a GET that names the current tag in
    // `If-None-Match` is answered 304 with no body ("Conditional requests",
    // docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api).
    let body = serde_json::to_vec(&items).unwrap_or_default();
    let tag =
        format!("W/\"{}\"", hex::encode(sha2::Sha256::digest([body.as_slice(), links.join(", ").as_bytes()].concat())));
    if req.if_none_match.as_deref() == Some(tag.as_str()) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().insert("etag", HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("")));
        return response;
    }
    let mut response = axum::Json(items).into_response();
    if let Ok(value) = HeaderValue::from_str(&links.join(", "))
        && !links.is_empty()
    {
        response.headers_mut().insert("link", value);
    }
    if let Ok(value) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert("etag", value);
    }
    response
}

/// Each forge's issue: GitHub's (octocrab's `Issue` fields) or gitea's
/// (modules/structs/issue.go); `pull_request` absent on GitHub, null on Gitea.
fn issue_json(flavor: Flavor, repo: &str, n: u64, issue: &Issue) -> Value {
    let base = "https://forge.example.com";
    let labels: Vec<Value> = issue.labels.iter().map(|l| json!({ "id": 1, "name": l, "color": "ededed" })).collect();
    match flavor {
        Flavor::Github => json!({
            "id": n, "node_id": format!("I_{n}"), "url": format!("{base}/repos/{repo}/issues/{n}"),
            "repository_url": format!("{base}/repos/{repo}"), "labels_url": format!("{base}/repos/{repo}/issues/{n}/labels{{/name}}"),
            "comments_url": format!("{base}/repos/{repo}/issues/{n}/comments"), "events_url": format!("{base}/repos/{repo}/issues/{n}/events"),
            "html_url": format!("{base}/{repo}/issues/{n}"), "number": n, "state": "open", "title": issue.title,
            "body": issue.body, "user": github_user(&issue.author), "labels": labels, "assignees": [], "locked": false,
            "comments": 0, "created_at": EPOCH_OF_THE_FAKE, "updated_at": issue.updated.as_deref().unwrap_or(EPOCH_OF_THE_FAKE)
        })
        .as_object()
        .cloned()
        .map(|mut o| {
            // GitHub: the key is there on pull requests only.
            if issue.is_pull {
                let pr = json!({ "url": format!("{base}/repos/{repo}/pulls/{n}"), "html_url": format!("{base}/{repo}/pull/{n}"), "merged_at": null });
                o.insert("pull_request".into(), pr);
            }
            Value::Object(o)
        })
        .unwrap_or_default(),
        Flavor::Gitea => json!({
            "id": n, "url": format!("{base}/api/v1/repos/{repo}/issues/{n}"), "html_url": format!("{base}/{repo}/issues/{n}"),
            "number": n, "user": gitea_user(&issue.author), "original_author": "", "original_author_id": 0,
            "title": issue.title, "body": issue.body, "ref": "", "labels": labels, "milestone": null, "assignees": null,
            "state": "open", "is_locked": false, "comments": 0, "created_at": EPOCH_OF_THE_FAKE,
            "updated_at": issue.updated.as_deref().unwrap_or(EPOCH_OF_THE_FAKE), "closed_at": null, "due_date": null,
            // gitea: null on issues, `{merged, merged_at}` on pull requests (modules/structs/issue.go).
            "pull_request": if issue.is_pull { json!({ "merged": false, "merged_at": null }) } else { Value::Null }
        }),
    }
}

fn installation_token(req: &Request) -> Response {
    if !req.auth.starts_with("Bearer ey") {
        return error(Flavor::Github, StatusCode::UNAUTHORIZED, "A JSON web token is required");
    }
    let body = json!({
        "token": INSTALLATION_TOKEN, "expires_at": "2099-01-01T00:00:00Z",
        "permissions": { "issues": "write", "contents": "write" }, "repository_selection": "all"
    });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// Each forge's error body: GitHub `{message, documentation_url}`, gitea `{message, url}`.
pub(super) fn error(flavor: Flavor, status: StatusCode, message: &str) -> Response {
    let body = match flavor {
        Flavor::Github => json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }),
        Flavor::Gitea => json!({ "message": message, "url": "https://forge.example.com/api/swagger" }),
    };
    (status, axum::Json(body)).into_response()
}

pub(super) fn not_found(flavor: Flavor) -> Response {
    error(flavor, StatusCode::NOT_FOUND, "Not Found")
}

/// Headers go out, then the connection breaks before the body does.
fn dropped() -> Response {
    let stream = futures_util::stream::once(async { Err::<Bytes, std::io::Error>(std::io::Error::other("dropped")) });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}

fn on_pull(state: &State, c: &PostedComment) -> bool {
    state.repos.get(&c.repo).and_then(|issues| issues.get(&c.issue)).is_some_and(|i| i.is_pull)
}

/// gitea's comment on a pull request has an empty `issue_url` and the pull
/// request's page in `pull_request_url` (services/convert/issue_comment.go).
fn comment_json(flavor: Flavor, c: &PostedComment, on_pull: bool) -> Value {
    let base = "https://forge.example.com";
    let (repo, n, id) = (&c.repo, c.issue, c.id);
    match flavor {
        Flavor::Github => json!({
            "id": id, "node_id": format!("IC_{id}"), "body": c.body,
            "url": format!("{base}/repos/{repo}/issues/comments/{id}"),
            "html_url": format!("{base}/{repo}/issues/{n}#issuecomment-{id}"),
            "issue_url": format!("{base}/repos/{repo}/issues/{n}"),
            "user": github_user(&c.author), "created_at": c.updated_at, "updated_at": c.updated_at
        }),
        // gitea: modules/structs/issue_comment.go, Comment.
        Flavor::Gitea => json!({
            "id": id, "html_url": format!("{base}/{repo}/issues/{n}#issuecomment-{id}"),
            "pull_request_url": if on_pull { format!("{base}/{repo}/pulls/{n}") } else { String::new() },
            "issue_url": if on_pull { String::new() } else { format!("{base}/{repo}/issues/{n}") },
            "user": gitea_user(&c.author), "original_author": "", "original_author_id": 0,
            "body": c.body, "created_at": c.updated_at, "updated_at": c.updated_at
        }),
    }
}

/// octocrab's `Author` needs every one of these (models.rs).
pub(super) fn github_user(login: &str) -> Value {
    let base = "https://forge.example.com";
    let url = |p: &str| format!("{base}/users/{login}{p}");
    let kind = if login.ends_with("[bot]") { "Bot" } else { "User" };
    json!({
        "login": login, "id": 1, "node_id": "U_1", "type": kind, "site_admin": false, "gravatar_id": "",
        "avatar_url": "https://avatars.example.com/u/1", "url": url(""), "html_url": format!("{base}/{login}"),
        "followers_url": url("/followers"), "following_url": url("/following"), "gists_url": url("/gists"),
        "starred_url": url("/starred"), "subscriptions_url": url("/subscriptions"),
        "organizations_url": url("/orgs"), "repos_url": url("/repos"), "events_url": url("/events"),
        "received_events_url": url("/received_events")
    })
}

/// gitea: modules/structs/user.go, User.
pub(super) fn gitea_user(login: &str) -> Value {
    json!({
        "id": 1, "login": login, "login_name": "", "source_id": 0, "full_name": "", "email": format!("{login}@noreply.example.com"),
        "avatar_url": "https://forge.example.com/avatars/1", "html_url": format!("https://forge.example.com/{login}"),
        "language": "", "is_admin": false, "last_login": "2026-11-30T00:00:00Z", "created": "2026-01-01T00:00:00Z",
        "restricted": false, "active": true, "prohibit_login": false, "location": "", "website": "", "description": "",
        "visibility": "public", "followers_count": 0, "following_count": 0, "starred_repos_count": 0, "username": login
    })
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
