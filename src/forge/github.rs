use std::time::Duration;

use async_trait::async_trait;
use octocrab::models::{AppId, InstallationId};
use octocrab::{EncodingKey, Octocrab};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::wire::{
    CheckRunAnswer, CheckRunsAnswer, CombinedStatusAnswer, CommentAnswer, EventAnswer, HookAnswer, IssueAnswer,
    PermissionAnswer, PullAnswer, ReactionAnswer, ReviewAnswer, ReviewCommentAnswer, StatusAnswer, error_message,
    last_adder, newest_review_by, review_of,
};
use super::{
    FailedCheck, Forge, ForgeComment, ForgeError, HookSpec, HookTarget, InstalledHook, IssueFacts, LabelAddition,
    Listed, NewPullRequest, Permission, PullRequest, Reacted, Reaction, ReactionTarget,
};
use crate::config::Instance;
use crate::issue_ref::{IssueRef, RepoRef};

/// GitHub through octocrab, which authenticates (a token, or a GitHub App
/// installation token it renews), applies the base URL and the timeouts. The
/// calls go through its raw `_get`/`_post`, so kugetsu sees every status and
/// the rate-limit headers, and maps them the same way for every call.
pub struct GithubForge {
    octocrab: Octocrab,
    /// Whether `octocrab` authenticates as a GitHub App installation.
    is_app: bool,
    token: Option<SecretString>,
    stats: super::ApiStats,
}

impl GithubForge {
    /// octocrab is built without its `retry` feature: it would repeat a POST
    /// that the forge stored but answered with a 5xx, and post a comment twice.
    pub fn new(instance: &Instance, timeout: Duration) -> anyhow::Result<Self> {
        let builder = Octocrab::builder()
            .base_uri(instance.api_url.as_str())?
            .set_connect_timeout(Some(timeout))
            .set_read_timeout(Some(timeout))
            .set_write_timeout(Some(timeout));
        if let Some(app) = &instance.github_app {
            let key = EncodingKey::from_rsa_pem(app.private_key.expose_secret().as_bytes())
                .map_err(|e| anyhow::anyhow!("the GitHub App key is not an RSA PEM key: {e}"))?;
            // The installation client fetches a token on first use and renews it before expiry.
            let octocrab =
                builder.app(AppId(app.app_id), key).build()?.installation(InstallationId(app.installation_id))?;
            return Ok(Self { octocrab, is_app: true, token: None, stats: super::ApiStats::default() });
        }
        let builder = match &instance.token {
            Some(token) => builder.personal_token(token.expose_secret().to_owned()),
            None => builder,
        };
        Ok(Self {
            octocrab: builder.build()?,
            is_app: false,
            token: instance.token.clone(),
            stats: super::ApiStats::default(),
        })
    }
}

/// GitHub's docs: on a secondary rate limit without `retry-after`, wait at least a minute.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// An answer that never arrived whole: the call may or may not have taken effect.
fn unreachable(e: &octocrab::Error) -> ForgeError {
    let kind = match e {
        octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. } => "connection failed or timed out",
        _ => "request failed",
    };
    ForgeError::transient(format!("GitHub API call failed ({kind}): {e}"))
}

/// How long GitHub asked us to wait, per its rate-limit docs: `retry-after`, or
/// until `x-ratelimit-reset` when `x-ratelimit-remaining` is 0.
fn rate_limit_wait(status: u16, header: impl Fn(&str) -> Option<String>) -> Option<Duration> {
    if let Some(secs) = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining").as_deref() == Some("0") {
        let reset = header("x-ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok())?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        return Some(Duration::from_secs(reset.saturating_sub(now).max(1)));
    }
    (status == 429).then_some(RATE_LIMIT_WAIT)
}

/// A 2xx answer, or a 304 to a conditional GET.
struct Answer {
    not_modified: bool,
    text: String,
    link: Option<String>,
    etag: Option<String>,
}

#[derive(Clone, Copy)]
enum Write {
    Post,
    Patch,
    Delete,
}

impl GithubForge {
    /// Sends one call; returns the body of a 2xx answer and the `link` header.
    async fn send(
        &self,
        post: Option<&serde_json::Value>,
        route: &str,
    ) -> Result<(String, Option<String>), ForgeError> {
        self.send_as(post.map(|body| (Write::Post, body)), route).await
    }

    async fn send_as(
        &self,
        write: Option<(Write, &serde_json::Value)>,
        route: &str,
    ) -> Result<(String, Option<String>), ForgeError> {
        self.answer(write, route, None).await.map(|a| (a.text, a.link))
    }

    async fn answer(
        &self,
        write: Option<(Write, &serde_json::Value)>,
        route: &str,
        if_none_match: Option<&str>,
    ) -> Result<Answer, ForgeError> {
        let result = self.send_once(write, route, if_none_match).await;
        self.stats.saw(&result);
        result
    }

    /// One call; a GET with `if_none_match` may be answered 304.
    async fn send_once(
        &self,
        write: Option<(Write, &serde_json::Value)>,
        route: &str,
        if_none_match: Option<&str>,
    ) -> Result<Answer, ForgeError> {
        let resp = match write {
            Some((Write::Post, body)) => self.octocrab._post(route, Some(body)).await,
            Some((Write::Patch, body)) => self.octocrab._patch(route, Some(body)).await,
            Some((Write::Delete, _)) => self.octocrab._delete(route, None::<&serde_json::Value>).await,
            None => {
                let tag = if_none_match.and_then(|t| axum::http::HeaderValue::from_str(t).ok());
                let headers = tag.map(|t| axum::http::HeaderMap::from_iter([(axum::http::header::IF_NONE_MATCH, t)]));
                self.octocrab._get_with_headers(route, headers).await
            }
        }
        .map_err(|e| unreachable(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (link, etag) = (header("link"), header("etag"));
        self.stats.saw_rate_limit(header("x-ratelimit-remaining").as_deref());
        let wait = rate_limit_wait(status, header);
        let text = self.octocrab.body_to_string(resp).await.map_err(|e| unreachable(&e))?;
        if status == 304 && if_none_match.is_some() {
            return Ok(Answer { not_modified: true, text: String::new(), link: None, etag });
        }
        if (200..300).contains(&status) {
            return Ok(Answer { not_modified: false, text, link, etag });
        }
        let message = error_message(&text);
        let error = match (status, wait) {
            (403 | 429, Some(wait)) => {
                ForgeError::transient(format!("GitHub rate limit: {message}")).with_retry_after(Some(wait))
            }
            (403, None) if message.to_ascii_lowercase().contains("rate limit") => {
                ForgeError::transient(format!("GitHub rate limit: {message}")).with_retry_after(Some(RATE_LIMIT_WAIT))
            }
            _ => ForgeError::from_status(status, message).with_retry_after(wait),
        };
        Err(error)
    }

    async fn call<T: DeserializeOwned>(&self, post: Option<&serde_json::Value>, route: &str) -> Result<T, ForgeError> {
        let (text, _) = self.send(post, route).await?;
        serde_json::from_str(&text).map_err(|e| ForgeError::transient(format!("unexpected answer from GitHub: {e}")))
    }
}

impl GithubForge {
    /// Every item of a paginated list, following `link: rel="next"`.
    async fn all_pages<T: DeserializeOwned>(&self, first: String) -> Result<Vec<T>, ForgeError> {
        self.all_pages_upto(first, usize::MAX).await
    }

    /// Pages from `first` until there are no more, or at least `most` items.
    async fn all_pages_upto<T: DeserializeOwned>(&self, first: String, most: usize) -> Result<Vec<T>, ForgeError> {
        match self.pages_if_changed(first, most, None).await? {
            Listed::Changed { items, .. } => Ok(items),
            Listed::Unchanged => Ok(Vec::new()),
        }
    }

    /// As `all_pages_upto`, the first page asked on condition that its answer
    /// is no longer the one tagged `etag`.
    async fn pages_if_changed<T: DeserializeOwned>(
        &self,
        first: String,
        most: usize,
        etag: Option<&str>,
    ) -> Result<Listed<T>, ForgeError> {
        let first_answer = self.answer(None, &first, etag).await?;
        if first_answer.not_modified {
            return Ok(Listed::Unchanged);
        }
        let first_etag = first_answer.etag.clone();
        let mut answer = Some(first_answer);
        let mut route = first;
        let mut all = Vec::new();
        loop {
            let (text, link) = match answer.take() {
                Some(a) => (a.text, a.link),
                None => self.send(None, &route).await?,
            };
            let page: Vec<T> = serde_json::from_str(&text)
                .map_err(|e| ForgeError::transient(format!("unexpected answer from GitHub: {e}")))?;
            all.extend(page);
            match link.as_deref().and_then(next_page) {
                Some(next) if all.len() < most => route = next.to_owned(),
                _ => return Ok(Listed::Changed { items: all, etag: first_etag }),
            }
        }
    }
}

/// The `rel="next"` URL of a `link` header.
fn next_page(link: &str) -> Option<&str> {
    link.split(',').find(|part| part.contains("rel=\"next\"")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        part.get(start..end)
    })
}

fn reactions_route(repo: &RepoRef, target: ReactionTarget) -> String {
    match target {
        ReactionTarget::Issue(n) => format!("{}/issues/{n}/reactions", repo_route(repo)),
        ReactionTarget::Comment(id) => format!("{}/issues/comments/{id}/reactions", repo_route(repo)),
    }
}

fn repo_route(repo: &RepoRef) -> String {
    format!("/repos/{}/{}", repo.owner(), repo.name())
}

#[async_trait]
impl Forge for GithubForge {
    fn api_stats(&self) -> Option<&super::ApiStats> {
        Some(&self.stats)
    }

    async fn git_token(&self) -> Result<Option<SecretString>, ForgeError> {
        if !self.is_app {
            return Ok(self.token.clone());
        }
        self.octocrab.installation_token().await.map(Some).map_err(|e| match e {
            octocrab::Error::GitHub { source, .. } => {
                ForgeError::from_status(source.status_code.as_u16(), source.message.clone())
            }
            other => unreachable(&other),
        })
    }

    async fn permission(&self, repo: &RepoRef, user: &str) -> Result<Permission, ForgeError> {
        let route = format!("{}/collaborators/{user}/permission", repo_route(repo));
        let answer: PermissionAnswer = self.call(None, &route).await?;
        Ok(Permission::parse(&answer.permission))
    }

    async fn react(&self, repo: &RepoRef, target: ReactionTarget, reaction: Reaction) -> Result<Reacted, ForgeError> {
        let route = reactions_route(repo, target);
        let answer: ReactionAnswer = self.call(Some(&json!({ "content": reaction.content() })), &route).await?;
        Ok(Reacted { reaction, id: Some(answer.id) })
    }

    /// `DELETE …/reactions/{reaction_id}`, 204 (docs.github.com/en/rest/reactions/reactions).
    async fn unreact(&self, repo: &RepoRef, target: ReactionTarget, reacted: Reacted) -> Result<(), ForgeError> {
        let Some(id) = reacted.id else { return Ok(()) };
        let route = format!("{}/{id}", reactions_route(repo, target));
        match self.send_as(Some((Write::Delete, &serde_json::Value::Null)), &route).await {
            Ok(_) | Err(ForgeError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `PATCH /repos/{o}/{r}/issues/comments/{id}`, as GitHub documents it
    /// (octocrab's own `update_comment` sends POST).
    async fn edit_comment(&self, repo: &RepoRef, id: u64, body: &str) -> Result<(), ForgeError> {
        let route = format!("{}/issues/comments/{id}", repo_route(repo));
        self.send_as(Some((Write::Patch, &json!({ "body": body }))), &route).await.map(drop)
    }

    async fn post_comment(&self, issue: &IssueRef, body: &str) -> Result<u64, ForgeError> {
        let route = format!("{}/issues/{}/comments", repo_route(issue.repo()), issue.number());
        let answer: CommentAnswer = self.call(Some(&json!({ "body": body })), &route).await?;
        Ok(answer.id)
    }

    async fn comments(&self, issue: &IssueRef) -> Result<Vec<ForgeComment>, ForgeError> {
        let route = format!("{}/issues/{}/comments?per_page=100", repo_route(issue.repo()), issue.number());
        let all: Vec<CommentAnswer> = self.all_pages(route).await?;
        Ok(all.into_iter().map(ForgeComment::from).collect())
    }

    async fn comment(&self, repo: &RepoRef, id: u64) -> Result<ForgeComment, ForgeError> {
        let answer: CommentAnswer = self.call(None, &format!("{}/issues/comments/{id}", repo_route(repo))).await?;
        Ok(answer.into())
    }

    /// GitHub: `GET /repos/{o}/{r}/issues/comments`, "list issue comments for a
    /// repository", by `since` (updated at or after), sorted by update, oldest first.
    async fn comments_since(
        &self,
        repo: &RepoRef,
        since: &str,
        etag: Option<&str>,
    ) -> Result<Listed<ForgeComment>, ForgeError> {
        let since: String = form_urlencoded::byte_serialize(since.as_bytes()).collect();
        let route =
            format!("{}/issues/comments?since={since}&sort=updated&direction=asc&per_page=100", repo_route(repo));
        let listed: Listed<CommentAnswer> =
            self.pages_if_changed(route, crate::forge::MAX_RECENT_COMMENTS, etag).await?;
        Ok(super::map_listed(listed, ForgeComment::from))
    }

    async fn issue(&self, issue: &IssueRef) -> Result<IssueFacts, ForgeError> {
        let route = format!("{}/issues/{}", repo_route(issue.repo()), issue.number());
        Ok(self.call::<IssueAnswer>(None, &route).await?.into())
    }

    async fn labeled_since(
        &self,
        repo: &RepoRef,
        label: &str,
        since: &str,
        etag: Option<&str>,
    ) -> Result<Listed<(u64, IssueFacts)>, ForgeError> {
        let query = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let route = format!(
            "{}/issues?labels={}&since={}&state=open&sort=updated&direction=asc&per_page=100",
            repo_route(repo),
            query(label),
            query(since)
        );
        let listed: Listed<IssueAnswer> = self.pages_if_changed(route, crate::forge::MAX_RECENT_COMMENTS, etag).await?;
        Ok(super::map_listed(listed, |i| (i.number, IssueFacts::from(i))))
    }

    async fn label_added_by(&self, issue: &IssueRef, label: &str) -> Result<Option<LabelAddition>, ForgeError> {
        let route = format!("{}/issues/{}/events?per_page=100", repo_route(issue.repo()), issue.number());
        let events: Vec<EventAnswer> = self.all_pages(route).await?;
        let records = events.iter().map(|e| {
            (
                e.event == "labeled",
                e.label.as_ref().map(|l| l.name.as_str()),
                e.actor.as_ref().map(|a| a.login.as_str()),
                e.id,
                e.created_at.as_deref(),
            )
        });
        Ok(last_adder(records, label))
    }

    /// github: "Create a pull request" (`POST /repos/{o}/{r}/pulls`), `draft` included.
    async fn open_pull_request(&self, repo: &RepoRef, new: &NewPullRequest<'_>) -> Result<PullRequest, ForgeError> {
        let body = json!({
            "title": new.title, "body": new.body, "head": new.head, "base": new.base,
            "draft": new.draft, "maintainer_can_modify": true
        });
        let route = format!("{}/pulls", repo_route(repo));
        Ok(self.call::<PullAnswer>(Some(&body), &route).await?.into())
    }

    async fn pull_request(&self, repo: &RepoRef, number: u64) -> Result<PullRequest, ForgeError> {
        Ok(self.call::<PullAnswer>(None, &format!("{}/pulls/{number}", repo_route(repo))).await?.into())
    }

    /// github: "List pull requests" filtered by `head` (`owner:branch`) and `base`, newest first.
    async fn find_pull_request(
        &self,
        repo: &RepoRef,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let query = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let route = format!(
            "{}/pulls?head={}&base={}&state=all&sort=created&direction=desc&per_page=1",
            repo_route(repo),
            query(&format!("{}:{head}", repo.owner())),
            query(base)
        );
        let found: Vec<PullAnswer> = self.call(None, &route).await?;
        Ok(found.into_iter().next().map(PullRequest::from))
    }

    /// github: "Get a review for a pull request" and "List comments for a pull
    /// request review"; without an id, the newest of "List reviews for a pull
    /// request" (oldest first) by `author`.
    async fn review(
        &self,
        repo: &RepoRef,
        pull: u64,
        id: Option<u64>,
        author: &str,
        text: &str,
    ) -> Result<Option<super::Review>, ForgeError> {
        let base = format!("{}/pulls/{pull}/reviews", repo_route(repo));
        let answer = match id {
            Some(id) => match self.call::<ReviewAnswer>(None, &format!("{base}/{id}")).await {
                Ok(answer) => answer,
                Err(ForgeError::NotFound) => return Ok(None),
                Err(e) => return Err(e),
            },
            None => {
                let all: Vec<ReviewAnswer> = self.all_pages(format!("{base}?per_page=100")).await?;
                match newest_review_by(all, author, text) {
                    Some(answer) => answer,
                    None => return Ok(None),
                }
            }
        };
        let route = format!("{base}/{}/comments?per_page=100", answer.id);
        let comments: Vec<ReviewCommentAnswer> = self.all_pages(route).await?;
        let comments = comments
            .into_iter()
            .map(|c| {
                let end = c.line.or(c.original_line);
                let lines = end.map(|end| (c.start_line.unwrap_or(end), end));
                c.into_comment(lines)
            })
            .collect();
        Ok(Some(review_of(answer, comments)))
    }

    /// github: "Create a reply for a review comment"; replies to replies are not
    /// supported, so `comment` is the thread's first.
    async fn reply_in_thread(
        &self,
        repo: &RepoRef,
        pull: u64,
        comment: u64,
        body: &str,
    ) -> Result<Option<u64>, ForgeError> {
        let route = format!("{}/pulls/{pull}/comments/{comment}/replies", repo_route(repo));
        let answer: CommentAnswer = self.call(Some(&json!({ "body": body })), &route).await?;
        Ok(Some(answer.id))
    }

    async fn thread_comments(&self, repo: &RepoRef, pull: u64) -> Result<Vec<ForgeComment>, ForgeError> {
        let route = format!("{}/pulls/{pull}/comments?per_page=100", repo_route(repo));
        let all: Vec<CommentAnswer> = self.all_pages(route).await?;
        Ok(all.into_iter().map(ForgeComment::from).collect())
    }

    /// github: "Get the combined status for a specific reference" and "List check
    /// runs for a Git reference".
    async fn failed_checks(&self, repo: &RepoRef, sha: &str) -> Result<Vec<FailedCheck>, ForgeError> {
        let status: CombinedStatusAnswer =
            self.call(None, &format!("{}/commits/{sha}/status?per_page=100", repo_route(repo))).await?;
        let runs: CheckRunsAnswer =
            self.call(None, &format!("{}/commits/{sha}/check-runs?per_page=100", repo_route(repo))).await?;
        let statuses = status.statuses.into_iter().filter_map(StatusAnswer::failed);
        Ok(statuses.chain(runs.check_runs.into_iter().filter_map(CheckRunAnswer::failed)).collect())
    }

    async fn current_user(&self) -> Result<String, ForgeError> {
        Ok(self.call::<super::wire::UserAnswer>(None, "/user").await?.login)
    }

    /// github: `GET /repos/{o}/{r}/hooks`, `GET /orgs/{org}/hooks` (paginated).
    /// The five latest: doctor reports the newest, and how many of them failed.
    async fn hook_deliveries(
        &self,
        target: &HookTarget,
        id: u64,
    ) -> Result<Option<Vec<super::HookDelivery>>, ForgeError> {
        let answer: Vec<super::wire::DeliveryAnswer> =
            self.call(None, &format!("{}/{id}/deliveries?per_page=5", target.path())).await?;
        Ok(Some(answer.into_iter().map(super::HookDelivery::from).collect()))
    }

    async fn hooks(&self, target: &HookTarget) -> Result<Vec<InstalledHook>, ForgeError> {
        let answer: Vec<HookAnswer> = self.all_pages(format!("{}?per_page=100", target.path())).await?;
        Ok(answer.into_iter().map(InstalledHook::from).collect())
    }

    /// github: "Create a repository webhook" / "Create an organization webhook":
    /// `name` must be `web`; `config.url` is required.
    async fn create_hook(&self, target: &HookTarget, spec: &HookSpec) -> Result<InstalledHook, ForgeError> {
        let body = json!({ "name": "web", "active": true, "events": spec.events, "config": hook_config(spec) });
        let answer: HookAnswer = self.call(Some(&body), &target.path()).await?;
        Ok(answer.into())
    }

    /// github: "Update a repository webhook" (`PATCH …/hooks/{id}`).
    async fn update_hook(&self, target: &HookTarget, id: u64, spec: &HookSpec) -> Result<InstalledHook, ForgeError> {
        let body = json!({ "active": true, "events": spec.events, "config": hook_config(spec) });
        let route = format!("{}/{id}", target.path());
        let (text, _) = self.send_as(Some((Write::Patch, &body)), &route).await?;
        let answer: HookAnswer = serde_json::from_str(&text)
            .map_err(|e| ForgeError::transient(format!("unexpected answer from GitHub: {e}")))?;
        Ok(answer.into())
    }
}

fn hook_config(spec: &HookSpec) -> serde_json::Value {
    json!({ "url": spec.url, "content_type": "json", "insecure_ssl": "0", "secret": spec.secret.expose_secret() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_is_read_from_the_link_header() {
        let link = "<https://api.github.com/repositories/1/issues/5/comments?per_page=100&page=2>; rel=\"next\", \
                    <https://api.github.com/repositories/1/issues/5/comments?per_page=100&page=3>; rel=\"last\"";
        assert_eq!(
            next_page(link),
            Some("https://api.github.com/repositories/1/issues/5/comments?per_page=100&page=2")
        );
        assert_eq!(next_page("<https://x/?page=1>; rel=\"prev\""), None);
    }

    #[test]
    fn rate_limits_say_how_long_to_wait() {
        let none = |_: &str| None;
        assert_eq!(rate_limit_wait(500, none), None);
        assert_eq!(rate_limit_wait(429, none), Some(RATE_LIMIT_WAIT));
        let retry_after = |h: &str| (h == "retry-after").then(|| "7".to_owned());
        assert_eq!(rate_limit_wait(403, retry_after), Some(Duration::from_secs(7)));
        let exhausted = |h: &str| match h {
            "x-ratelimit-remaining" => Some("0".to_owned()),
            "x-ratelimit-reset" => Some("1".to_owned()),
            _ => None,
        };
        assert_eq!(rate_limit_wait(403, exhausted), Some(Duration::from_secs(1)), "a reset in the past waits 1 s");
    }
}
