//! Forge API clients behind one trait: GitHub through octocrab, Gitea and
//! Forgejo through reqwest against `/api/v1`.

pub mod attachments;
mod gitea;
mod github;
pub mod hooks;
mod permission_cache;
mod retry;
mod stats;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::config::{ForgeKind, Instance};
use crate::issue_ref::{IssueRef, RepoRef};

pub use gitea::GiteaForge;
pub use github::GithubForge;
pub use hooks::{HookDelivery, HookSpec, HookTarget, InstalledHook};
pub use permission_cache::PermissionCache;
pub use retry::{Backoff, RetryingForge};
pub use stats::ApiStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    Read,
    Write,
    Admin,
}

impl Permission {
    /// Maps the `permission` field of both forges' collaborator-permission answer.
    pub fn parse(value: &str) -> Self {
        match value {
            "admin" | "owner" => Self::Admin,
            "write" | "maintain" | "push" => Self::Write,
            "read" | "triage" | "pull" => Self::Read,
            _ => Self::None,
        }
    }

    pub fn can_trigger(self) -> bool {
        self >= Self::Write
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionTarget {
    Issue(u64),
    Comment(u64),
}

/// The reactions kugetsu shows on a trigger, one at a time: taken, working,
/// done, failed. Both forges allow these four by default (GitHub's fixed list;
/// Gitea's and Forgejo's `[ui] REACTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    Eyes,
    Rocket,
    ThumbsUp,
    Confused,
}

impl Reaction {
    /// This reaction as Gitea takes it back: by content alone.
    pub fn into_reacted(self) -> Reacted {
        Reacted { reaction: self, id: None }
    }

    pub fn content(self) -> &'static str {
        match self {
            Self::Eyes => "eyes",
            Self::Rocket => "rocket",
            Self::ThumbsUp => "+1",
            Self::Confused => "confused",
        }
    }
}

/// A reaction kugetsu made: GitHub deletes it by its id, Gitea by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reacted {
    pub reaction: Reaction,
    pub id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeComment {
    pub id: u64,
    pub body: String,
    /// The login of the comment's author.
    pub author: String,
    /// The issue or pull request the comment is on, where the answer says.
    pub issue: Option<CommentPlace>,
    /// When it was last changed, as the forge writes it (RFC 3339).
    pub updated_at: Option<String>,
}

/// Where a comment is, read from the path of its issue's or pull request's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentPlace {
    pub owner: String,
    pub repo: String,
    pub number: u64,
}

impl CommentPlace {
    /// Whether this is `issue`: owner, repository and number. Logins and
    /// repository names are case-insensitive on both forges.
    pub fn is(&self, issue: &IssueRef) -> bool {
        self.number == issue.number()
            && self.owner.eq_ignore_ascii_case(issue.repo().owner())
            && self.repo.eq_ignore_ascii_case(issue.repo().name())
    }
}

/// An issue as the forge has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueFacts {
    pub author: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub is_pull_request: bool,
    /// The issue's web page, `…/{owner}/{repo}/issues/{n}` (or `/pull/`, `/pulls/`).
    pub html_url: Option<String>,
}

/// The forge's record of a label being added: who, and the record's own id,
/// which a replayed delivery cannot change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelAddition {
    /// When, as the forge writes it (RFC 3339).
    pub at: Option<String>,
    pub by: String,
    pub record: u64,
}

/// A pull request, as far as kugetsu follows one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub html_url: String,
    pub state: PullState,
    /// The branch it merges from.
    pub head: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullState {
    Open,
    /// Closed without a merge: by a person, since kugetsu closes none.
    Closed,
    Merged,
}

/// A pull request review as the forge has it, with its line comments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Review {
    pub id: u64,
    pub author: String,
    pub body: String,
    pub comments: Vec<ReviewComment>,
}

/// A comment on lines of a pull request's diff.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReviewComment {
    pub id: u64,
    pub author: String,
    pub body: String,
    pub path: String,
    /// First and last line it is on; `None` when the forge names none.
    pub lines: Option<(u64, u64)>,
    pub diff_hunk: String,
    /// The comment whose thread it is in (GitHub).
    pub in_reply_to: Option<u64>,
}

impl ReviewComment {
    /// The comment that starts its thread: GitHub answers only those.
    pub fn thread(&self) -> u64 {
        self.in_reply_to.unwrap_or(self.id)
    }
}

/// A check or commit status that failed, as the forge reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailedCheck {
    pub name: String,
    /// Where its details are (the CI run's page).
    pub url: Option<String>,
    /// What the check said: a status's description, a check run's output.
    pub summary: String,
}

/// What kugetsu asks for when it opens a pull request.
#[derive(Debug, Clone)]
pub struct NewPullRequest<'a> {
    pub title: &'a str,
    pub body: &'a str,
    pub head: &'a str,
    pub base: &'a str,
    pub draft: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ForgeError {
    #[error("the forge refused our credentials")]
    Unauthorized,
    #[error("the forge forbade this: {0}")]
    Forbidden(String),
    #[error("not found on the forge")]
    NotFound,
    /// A fault that may pass: a 5xx, a 429, a timeout, a dropped connection, an
    /// answer cut short. The call may have taken effect on the forge.
    #[error("{message}")]
    Transient { message: String, retry_after: Option<Duration> },
    #[error("{0}")]
    Other(String),
}

impl ForgeError {
    pub fn from_status(status: u16, message: String) -> Self {
        match status {
            401 => Self::Unauthorized,
            403 => Self::Forbidden(message),
            404 => Self::NotFound,
            408 | 429 | 500..=599 => Self::transient(format!("the forge answered {status}: {message}")),
            _ => Self::Other(format!("the forge answered {status}: {message}")),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient { message: message.into(), retry_after: None }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// A `Retry-After` the forge asked for (429, or GitHub's secondary limits).
    pub fn with_retry_after(self, wait: Option<Duration>) -> Self {
        match self {
            Self::Transient { message, .. } => Self::Transient { message, retry_after: wait },
            other => other,
        }
    }
}

#[async_trait]
pub trait Forge: Send + Sync {
    /// The token git should push with: the configured one, or a fresh GitHub App
    /// installation token (they last an hour).
    async fn git_token(&self) -> Result<Option<SecretString>, ForgeError>;
    async fn permission(&self, repo: &RepoRef, user: &str) -> Result<Permission, ForgeError>;
    async fn react(&self, repo: &RepoRef, target: ReactionTarget, reaction: Reaction) -> Result<Reacted, ForgeError>;
    /// Takes back a reaction kugetsu made; one already gone is not an error.
    async fn unreact(&self, repo: &RepoRef, target: ReactionTarget, reacted: Reacted) -> Result<(), ForgeError>;
    async fn post_comment(&self, issue: &IssueRef, body: &str) -> Result<u64, ForgeError>;
    /// Replaces the text of one of kugetsu's comments. Forges notify nobody of an edit.
    async fn edit_comment(&self, repo: &RepoRef, id: u64, body: &str) -> Result<(), ForgeError>;
    async fn comments(&self, issue: &IssueRef) -> Result<Vec<ForgeComment>, ForgeError>;
    /// One comment, by id, wherever it is in the repository.
    async fn comment(&self, repo: &RepoRef, id: u64) -> Result<ForgeComment, ForgeError>;
    /// The repository's comments changed at or after `since` (RFC 3339), oldest
    /// first, at most [`MAX_RECENT_COMMENTS`]; [`Listed::Unchanged`] when the
    /// forge says the answer tagged `etag` still holds.
    async fn comments_since(
        &self,
        repo: &RepoRef,
        since: &str,
        etag: Option<&str>,
    ) -> Result<Listed<ForgeComment>, ForgeError>;
    async fn issue(&self, issue: &IssueRef) -> Result<IssueFacts, ForgeError>;
    /// The repository's open issues and pull requests that carry `label` and
    /// changed at or after `since` (RFC 3339), by number; at most
    /// [`MAX_RECENT_COMMENTS`]; [`Listed::Unchanged`] as for `comments_since`.
    async fn labeled_since(
        &self,
        repo: &RepoRef,
        label: &str,
        since: &str,
        etag: Option<&str>,
    ) -> Result<Listed<(u64, IssueFacts)>, ForgeError>;
    /// Who most recently added `label` to the issue, by the forge's own record
    /// (GitHub's issue events, Gitea's timeline).
    async fn label_added_by(&self, issue: &IssueRef, label: &str) -> Result<Option<LabelAddition>, ForgeError>;
    /// Opens a pull request from `head` to `base` in `repo`. A forge without
    /// drafts marks a draft the way its users do: a `WIP:` title.
    async fn open_pull_request(&self, repo: &RepoRef, new: &NewPullRequest<'_>) -> Result<PullRequest, ForgeError>;
    async fn pull_request(&self, repo: &RepoRef, number: u64) -> Result<PullRequest, ForgeError>;
    /// The newest pull request from `head` to `base`, open or not.
    async fn find_pull_request(
        &self,
        repo: &RepoRef,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, ForgeError>;
    /// Review `id` of pull request `pull`, or, when the event named none
    /// (Gitea's never does), `author`'s newest submitted review there whose text
    /// is the event's `text`, else their newest.
    async fn review(
        &self,
        repo: &RepoRef,
        pull: u64,
        id: Option<u64>,
        author: &str,
        text: &str,
    ) -> Result<Option<Review>, ForgeError>;
    /// Answers in the thread that review comment `comment` starts; `Ok(None)`
    /// where the forge has no way to (Gitea and Forgejo have no reply endpoint).
    async fn reply_in_thread(
        &self,
        _repo: &RepoRef,
        _pull: u64,
        _comment: u64,
        _body: &str,
    ) -> Result<Option<u64>, ForgeError> {
        Ok(None)
    }
    /// The pull request's review comments, where replies in threads are.
    async fn thread_comments(&self, _repo: &RepoRef, _pull: u64) -> Result<Vec<ForgeComment>, ForgeError> {
        Ok(Vec::new())
    }
    /// The commit statuses and checks on `sha` that failed.
    async fn failed_checks(&self, repo: &RepoRef, sha: &str) -> Result<Vec<FailedCheck>, ForgeError>;
    /// The login the token acts as (`GET /user`).
    async fn current_user(&self) -> Result<String, ForgeError>;
    /// The webhooks on a repository or organisation.
    async fn hooks(&self, target: &HookTarget) -> Result<Vec<InstalledHook>, ForgeError>;
    async fn create_hook(&self, target: &HookTarget, spec: &HookSpec) -> Result<InstalledHook, ForgeError>;
    async fn update_hook(&self, target: &HookTarget, id: u64, spec: &HookSpec) -> Result<InstalledHook, ForgeError>;
    /// The hook's latest deliveries, newest first, where the forge's API reports
    /// them (GitHub); `None` where it has no such API (Gitea and Forgejo show them
    /// on the hook's settings page only).
    async fn hook_deliveries(&self, _target: &HookTarget, _id: u64) -> Result<Option<Vec<HookDelivery>>, ForgeError> {
        Ok(None)
    }
    /// What the client saw of the API, for `/metrics`; a client that keeps no count has none.
    fn api_stats(&self) -> Option<&ApiStats> {
        None
    }
}

/// A list asked for on condition that it changed. GitHub answers a request
/// whose `If-None-Match` names the tag of its current answer with 304, which
/// does not count against the rate limit ("Use conditional requests if
/// appropriate", docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api).
/// Gitea sends no tag for these lists, so it is always asked in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed<T> {
    /// The answer tagged with the `etag` given still holds.
    Unchanged,
    /// The first page's tag comes with the items, for the next ask.
    Changed { items: Vec<T>, etag: Option<String> },
}

/// At most [`MAX_RECENT_COMMENTS`] of a list's items, each mapped by `f`.
fn map_listed<A, B>(listed: Listed<A>, f: impl FnMut(A) -> B) -> Listed<B> {
    match listed {
        Listed::Unchanged => Listed::Unchanged,
        Listed::Changed { items, etag } => {
            Listed::Changed { items: items.into_iter().take(MAX_RECENT_COMMENTS).map(f).collect(), etag }
        }
    }
}

/// The most comments one look at a repository's recent comments reads; more
/// are read at the next look, from the last one's time.
pub const MAX_RECENT_COMMENTS: usize = 500;

/// The API client for an instance; one call that takes longer than `timeout`
/// is a transient fault.
pub fn forge_for(instance: &Instance, timeout: Duration) -> anyhow::Result<Arc<dyn Forge>> {
    Ok(match instance.kind {
        ForgeKind::Github => Arc::new(GithubForge::new(instance, timeout)?),
        ForgeKind::Gitea | ForgeKind::Forgejo => Arc::new(GiteaForge::new(instance, timeout)?),
    })
}

/// A link that shows the branch against the default branch, with a button to
/// open a pull request.
pub fn compare_url(kind: ForgeKind, repo_html_url: &str, base: &str, branch: &str) -> String {
    let root = repo_html_url.trim_end_matches('/');
    let escape = |s: &str| s.split('/').map(urlencoding_path).collect::<Vec<_>>().join("/");
    match kind {
        ForgeKind::Github => format!("{root}/compare/{}...{}?quick_pull=1", escape(base), escape(branch)),
        ForgeKind::Gitea | ForgeKind::Forgejo => {
            format!("{root}/compare/{}...{}", escape(base), escape(branch))
        }
    }
}

/// The forge's web address, from its API address: GitHub's API is
/// `api.github.com`; GitHub Enterprise's is `/api/v3` and Gitea's and Forgejo's
/// `/api/v1` under the web address.
pub fn web_url(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    if let Some(host) = api.strip_prefix("https://api.github.com") {
        return format!("https://github.com{host}");
    }
    api.strip_suffix("/api/v1").or_else(|| api.strip_suffix("/api/v3")).unwrap_or(api).to_owned()
}

/// The issue's page; both forges redirect `/issues/<n>` of a pull request to it.
pub fn issue_url(web_url: &str, issue: &IssueRef) -> String {
    let repo = issue.repo();
    let root = web_url.trim_end_matches('/');
    format!("{root}/{}/{}/issues/{}", urlencoding_path(repo.owner()), urlencoding_path(repo.name()), issue.number())
}

/// The branch's files on the forge's web pages.
pub fn branch_url(kind: ForgeKind, web_url: &str, repo: &RepoRef, branch: &str) -> String {
    let root = format!(
        "{}/{}/{}",
        web_url.trim_end_matches('/'),
        urlencoding_path(repo.owner()),
        urlencoding_path(repo.name())
    );
    let branch = branch.split('/').map(urlencoding_path).collect::<Vec<_>>().join("/");
    match kind {
        ForgeKind::Github => format!("{root}/tree/{branch}"),
        ForgeKind::Gitea | ForgeKind::Forgejo => format!("{root}/src/branch/{branch}"),
    }
}

fn urlencoding_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Git tokens from the forge clients, for the engine's fetches and pushes.
pub struct ForgeTokens(pub Arc<std::collections::HashMap<crate::issue_ref::InstanceName, Arc<dyn Forge>>>);

#[async_trait]
impl crate::engine::GitTokens for ForgeTokens {
    async fn git_token(&self, instance: &Instance) -> Result<Option<SecretString>, String> {
        match self.0.get(&instance.name) {
            Some(forge) => forge.git_token().await.map_err(|e| e.to_string()),
            None => Ok(instance.token.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_map_both_forges_values() {
        for (value, can) in [
            ("admin", true),
            ("owner", true),
            ("write", true),
            ("maintain", true),
            ("read", false),
            ("triage", false),
            ("none", false),
            ("weird", false),
        ] {
            assert_eq!(Permission::parse(value).can_trigger(), can, "{value}");
        }
    }

    #[test]
    fn a_comment_is_on_an_issue_only_when_owner_repository_and_number_all_match() {
        let issue: IssueRef = "gh/Acme/Widget#7".parse().unwrap();
        let place = |owner: &str, repo: &str, number| CommentPlace { owner: owner.into(), repo: repo.into(), number };
        assert!(place("acme", "widget", 7).is(&issue), "control: case does not matter");
        assert!(!place("acme", "widget", 8).is(&issue));
        assert!(!place("acme", "gadget", 7).is(&issue), "same number, another repository");
        assert!(!place("other", "widget", 7).is(&issue), "same name, another owner");
    }

    #[test]
    fn web_addresses_come_from_api_addresses() {
        assert_eq!(web_url("https://api.github.com"), "https://github.com");
        assert_eq!(web_url("https://ghe.example.com/api/v3/"), "https://ghe.example.com");
        assert_eq!(web_url("https://git.example.com/api/v1"), "https://git.example.com");
        assert_eq!(web_url("http://127.0.0.1:3000"), "http://127.0.0.1:3000");
        let issue: IssueRef = "tea/acme/widgets#7".parse().unwrap();
        assert_eq!(issue_url("https://git.example.com", &issue), "https://git.example.com/acme/widgets/issues/7");
        let repo = issue.repo();
        assert_eq!(
            branch_url(ForgeKind::Gitea, "https://git.example.com", repo, "kugetsu/7"),
            "https://git.example.com/acme/widgets/src/branch/kugetsu/7"
        );
        assert_eq!(
            branch_url(ForgeKind::Github, "https://github.com", repo, "kugetsu/7"),
            "https://github.com/acme/widgets/tree/kugetsu/7"
        );
    }

    #[test]
    fn compare_urls_follow_each_forge() {
        assert_eq!(
            compare_url(ForgeKind::Github, "https://github.com/acme/widget", "main", "kugetsu/3"),
            "https://github.com/acme/widget/compare/main...kugetsu/3?quick_pull=1"
        );
        assert_eq!(
            compare_url(ForgeKind::Gitea, "https://git.example.com/acme/widget/", "main", "kugetsu/3"),
            "https://git.example.com/acme/widget/compare/main...kugetsu/3"
        );
    }
}
