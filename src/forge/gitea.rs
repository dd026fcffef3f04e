use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::wire::{
    CombinedStatusAnswer, CommentAnswer, HookAnswer, IssueAnswer, PermissionAnswer, PullAnswer, ReviewAnswer,
    ReviewCommentAnswer, StatusAnswer, TimelineAnswer, error_message, last_adder, newest_review_by, review_of,
};
use super::{
    FailedCheck, Forge, ForgeComment, ForgeError, HookSpec, HookTarget, InstalledHook, IssueFacts, LabelAddition,
    Listed, NewPullRequest, Permission, PullRequest, Reacted, Reaction, ReactionTarget,
};
use crate::config::Instance;
use crate::issue_ref::{IssueRef, RepoRef};

/// Gitea and Forgejo share this API (`/api/v1`).
pub struct GiteaForge {
    http: reqwest::Client,
    api_url: String,
    token: Option<SecretString>,
    stats: super::ApiStats,
}

/// A request that never reached an answer: the connection failed, dropped or timed out.
fn unreachable(e: &reqwest::Error) -> ForgeError {
    ForgeError::transient(format!("cannot reach the forge: {}", without_url(e)))
}

/// reqwest's error text carries the URL; keep it to the kind of failure.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut short or malformed"
    } else {
        "the request failed"
    };
    kind.to_owned()
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let value = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl GiteaForge {
    pub fn new(instance: &Instance, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("kugetsu/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            api_url: instance.api_url.trim_end_matches('/').to_owned(),
            token: instance.token.clone(),
            stats: super::ApiStats::default(),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.api_url));
        match &self.token {
            Some(token) => req.header("Authorization", format!("token {}", token.expose_secret())),
            None => req,
        }
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ForgeError> {
        let result = self.send_once(req).await;
        self.stats.saw(&result);
        result
    }

    async fn send_once<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ForgeError> {
        let answer = self.read(req, false).await?;
        answer.map(|(value, _)| value).ok_or_else(|| ForgeError::transient("the forge answered 304 unasked"))
    }

    /// One answer: its value and tag; `None` for a 304 to a `conditional` ask.
    async fn read<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
        conditional: bool,
    ) -> Result<Option<(T, Option<String>)>, ForgeError> {
        let resp = req.send().await.map_err(|e| unreachable(&e))?;
        // Gitea and Forgejo have no API rate limit of their own; a proxy in front may.
        self.stats.saw_rate_limit(resp.headers().get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()));
        let status = resp.status();
        if conditional && status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !status.is_success() {
            let wait = retry_after(&resp);
            let message = error_message(&resp.text().await.unwrap_or_default());
            return Err(ForgeError::from_status(status.as_u16(), message).with_retry_after(wait));
        }
        let tag = resp.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // A body cut short arrives as a decode error after a 2xx: the call may
        // have taken effect, which the caller's retry must allow for.
        let bytes = resp.bytes().await.map_err(|e| unreachable(&e))?;
        // Some answers have no body (a removed reaction: 200; an edit of a
        // comment with no editable text: 204); they read as `null`.
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        let value = serde_json::from_slice(bytes)
            .map_err(|e| ForgeError::transient(format!("unexpected answer from the forge: {e}")))?;
        Ok(Some((value, tag)))
    }
}

impl GiteaForge {
    /// `path` (which has its `limit`) page by page, up to [`crate::forge::MAX_RECENT_COMMENTS`]
    /// items; the first page asked on condition that its answer is no longer the one
    /// tagged `etag`, should Gitea (or a proxy before it) tag it.
    async fn pages_if_changed<T: DeserializeOwned>(
        &self,
        path: &str,
        etag: Option<&str>,
    ) -> Result<Listed<T>, ForgeError> {
        let mut all: Vec<T> = Vec::new();
        let mut first_etag = None;
        for page in 1.. {
            let mut req = self.request(Method::GET, &format!("{path}&page={page}"));
            if page == 1
                && let Some(tag) = etag
            {
                req = req.header(reqwest::header::IF_NONE_MATCH, tag);
            }
            let result = self.read::<Vec<T>>(req, page == 1 && etag.is_some()).await;
            self.stats.saw(&result);
            let Some((batch, tag)) = result? else { return Ok(Listed::Unchanged) };
            if page == 1 {
                first_etag = tag;
            }
            let done = batch.len() < PAGE_LIMIT;
            all.extend(batch);
            if done || all.len() >= crate::forge::MAX_RECENT_COMMENTS {
                break;
            }
        }
        Ok(Listed::Changed { items: all, etag: first_etag })
    }
}

fn reactions_path(repo: &RepoRef, target: ReactionTarget) -> String {
    match target {
        ReactionTarget::Issue(n) => format!("{}/issues/{n}/reactions", repo_path(repo)),
        ReactionTarget::Comment(id) => format!("{}/issues/comments/{id}/reactions", repo_path(repo)),
    }
}

fn repo_path(repo: &RepoRef) -> String {
    format!("/repos/{}/{}", repo.owner(), repo.name())
}

#[async_trait]
impl Forge for GiteaForge {
    fn api_stats(&self) -> Option<&super::ApiStats> {
        Some(&self.stats)
    }

    async fn git_token(&self) -> Result<Option<SecretString>, ForgeError> {
        Ok(self.token.clone())
    }

    async fn permission(&self, repo: &RepoRef, user: &str) -> Result<Permission, ForgeError> {
        let path = format!("{}/collaborators/{user}/permission", repo_path(repo));
        let answer: PermissionAnswer = self.send(self.request(Method::GET, &path)).await?;
        Ok(Permission::parse(&answer.permission))
    }

    async fn react(&self, repo: &RepoRef, target: ReactionTarget, reaction: Reaction) -> Result<Reacted, ForgeError> {
        let req =
            self.request(Method::POST, &reactions_path(repo, target)).json(&json!({ "content": reaction.content() }));
        self.send::<serde_json::Value>(req).await?;
        Ok(Reacted { reaction, id: None })
    }

    /// gitea: `DELETE …/reactions` with the content in the body, 200 with no body
    /// (DeleteIssueReaction, DeleteIssueCommentReaction in routers/api/v1/repo/issue_reaction.go);
    /// removing one that is not there is a no-op there too.
    async fn unreact(&self, repo: &RepoRef, target: ReactionTarget, reacted: Reacted) -> Result<(), ForgeError> {
        let content = json!({ "content": reacted.reaction.content() });
        let req = self.request(Method::DELETE, &reactions_path(repo, target)).json(&content);
        match self.send::<serde_json::Value>(req).await {
            Ok(_) | Err(ForgeError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// gitea: `PATCH /repos/{o}/{r}/issues/comments/{id}` (EditIssueComment).
    async fn edit_comment(&self, repo: &RepoRef, id: u64, body: &str) -> Result<(), ForgeError> {
        let path = format!("{}/issues/comments/{id}", repo_path(repo));
        self.send::<serde_json::Value>(self.request(Method::PATCH, &path).json(&json!({ "body": body })))
            .await
            .map(drop)
    }

    async fn post_comment(&self, issue: &IssueRef, body: &str) -> Result<u64, ForgeError> {
        let path = format!("{}/issues/{}/comments", repo_path(issue.repo()), issue.number());
        let answer: CommentAnswer = self.send(self.request(Method::POST, &path).json(&json!({ "body": body }))).await?;
        Ok(answer.id)
    }

    async fn comments(&self, issue: &IssueRef) -> Result<Vec<ForgeComment>, ForgeError> {
        // Gitea returns every comment at once; it does not paginate this list.
        let path = format!("{}/issues/{}/comments", repo_path(issue.repo()), issue.number());
        let answer: Vec<CommentAnswer> = self.send(self.request(Method::GET, &path)).await?;
        Ok(answer.into_iter().map(ForgeComment::from).collect())
    }

    async fn comment(&self, repo: &RepoRef, id: u64) -> Result<ForgeComment, ForgeError> {
        let path = format!("{}/issues/comments/{id}", repo_path(repo));
        Ok(self.send::<CommentAnswer>(self.request(Method::GET, &path)).await?.into())
    }

    /// gitea: `GET /repos/{o}/{r}/issues/comments` (ListRepoIssueComments in
    /// routers/api/v1/repo/issue_comment.go): `since` (updated at or after), paged
    /// by `page` and `limit` (at most MAX_RESPONSE_ITEMS, 50 by default), oldest first.
    async fn comments_since(
        &self,
        repo: &RepoRef,
        since: &str,
        etag: Option<&str>,
    ) -> Result<Listed<ForgeComment>, ForgeError> {
        let since: String = form_urlencoded::byte_serialize(since.as_bytes()).collect();
        let path = format!("{}/issues/comments?since={since}&limit={PAGE_LIMIT}", repo_path(repo));
        let listed: Listed<CommentAnswer> = self.pages_if_changed(&path, etag).await?;
        Ok(super::map_listed(listed, ForgeComment::from))
    }

    async fn issue(&self, issue: &IssueRef) -> Result<IssueFacts, ForgeError> {
        let path = format!("{}/issues/{}", repo_path(issue.repo()), issue.number());
        Ok(self.send::<IssueAnswer>(self.request(Method::GET, &path)).await?.into())
    }

    async fn labeled_since(
        &self,
        repo: &RepoRef,
        label: &str,
        since: &str,
        etag: Option<&str>,
    ) -> Result<Listed<(u64, IssueFacts)>, ForgeError> {
        let query = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let path = format!(
            "{}/issues?labels={}&since={}&state=open&limit={PAGE_LIMIT}",
            repo_path(repo),
            query(label),
            query(since)
        );
        let listed: Listed<IssueAnswer> = self.pages_if_changed(&path, etag).await?;
        Ok(super::map_listed(listed, |i| (i.number, IssueFacts::from(i))))
    }

    async fn label_added_by(&self, issue: &IssueRef, label: &str) -> Result<Option<LabelAddition>, ForgeError> {
        let mut timeline: Vec<TimelineAnswer> = Vec::new();
        // The timeline is paginated; Gitea caps a page at its MAX_RESPONSE_ITEMS (50 by default).
        for page in 1.. {
            let path = format!(
                "{}/issues/{}/timeline?limit={PAGE_LIMIT}&page={page}",
                repo_path(issue.repo()),
                issue.number()
            );
            let batch: Vec<TimelineAnswer> = self.send(self.request(Method::GET, &path)).await?;
            let done = batch.len() < PAGE_LIMIT;
            timeline.extend(batch);
            if done || page >= MAX_TIMELINE_PAGES {
                break;
            }
        }
        let records = timeline.iter().map(|t| {
            let added = t.kind == "label" && t.body.as_deref() == Some("1");
            let by = t.user.as_ref().map(|u| u.login.as_str());
            (added, t.label.as_ref().map(|l| l.name.as_str()), by, t.id, t.created_at.as_deref())
        });
        Ok(last_adder(records, label))
    }

    /// gitea: `CreatePullRequestOption` (modules/structs/pull.go) has no `draft`;
    /// a title starting `WIP:` is what Gitea and Forgejo show as a draft
    /// (`[repository.pull-request] WORK_IN_PROGRESS_PREFIXES`).
    async fn open_pull_request(&self, repo: &RepoRef, new: &NewPullRequest<'_>) -> Result<PullRequest, ForgeError> {
        let marked = new.title.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("wip:"));
        let title = if new.draft && !marked { format!("WIP: {}", new.title) } else { new.title.to_owned() };
        let body = json!({ "title": title, "body": new.body, "head": new.head, "base": new.base });
        let req = self.request(Method::POST, &format!("{}/pulls", repo_path(repo))).json(&body);
        Ok(self.send::<PullAnswer>(req).await?.into())
    }

    async fn pull_request(&self, repo: &RepoRef, number: u64) -> Result<PullRequest, ForgeError> {
        let req = self.request(Method::GET, &format!("{}/pulls/{number}", repo_path(repo)));
        Ok(self.send::<PullAnswer>(req).await?.into())
    }

    /// gitea (1.22 on, go-gitea/gitea#29242): `GET /repos/{o}/{r}/pulls/{base}/{head}`.
    async fn find_pull_request(
        &self,
        repo: &RepoRef,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let segment = |v: &str| super::urlencoding_path(v);
        let path = format!("{}/pulls/{}/{}", repo_path(repo), segment(base), segment(head));
        match self.send::<PullAnswer>(self.request(Method::GET, &path)).await {
            Ok(found) => Ok(Some(found.into())),
            Err(ForgeError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// gitea: `GET …/pulls/{n}/reviews` (ListPullReviews, oldest first) and
    /// `GET …/pulls/{n}/reviews/{id}/comments` (GetPullReviewComments); a review
    /// webhook names no review, so the reviewer's newest submitted one is taken.
    async fn review(
        &self,
        repo: &RepoRef,
        pull: u64,
        id: Option<u64>,
        author: &str,
        text: &str,
    ) -> Result<Option<super::Review>, ForgeError> {
        let base = format!("{}/pulls/{pull}/reviews", repo_path(repo));
        let answer = match id {
            Some(id) => match self.send::<ReviewAnswer>(self.request(Method::GET, &format!("{base}/{id}"))).await {
                Ok(answer) => answer,
                Err(ForgeError::NotFound) => return Ok(None),
                Err(e) => return Err(e),
            },
            None => {
                let mut all: Vec<ReviewAnswer> = Vec::new();
                for page in 1..=MAX_TIMELINE_PAGES {
                    let path = format!("{base}?limit={PAGE_LIMIT}&page={page}");
                    let batch: Vec<ReviewAnswer> = self.send(self.request(Method::GET, &path)).await?;
                    let done = batch.len() < PAGE_LIMIT;
                    all.extend(batch);
                    if done {
                        break;
                    }
                }
                match newest_review_by(all, author, text) {
                    Some(answer) => answer,
                    None => return Ok(None),
                }
            }
        };
        let path = format!("{base}/{}/comments", answer.id);
        let comments: Vec<ReviewCommentAnswer> = self.send(self.request(Method::GET, &path)).await?;
        let comments = comments
            .into_iter()
            .map(|c| {
                let line = c.position.filter(|p| *p > 0).or(c.original_position.filter(|p| *p > 0));
                c.into_comment(line.map(|l| (l, l)))
            })
            .collect();
        Ok(Some(review_of(answer, comments)))
    }

    /// gitea: `GET …/commits/{ref}/status` (GetCombinedCommitStatusByRef); Gitea
    /// Actions report through commit statuses too.
    async fn failed_checks(&self, repo: &RepoRef, sha: &str) -> Result<Vec<FailedCheck>, ForgeError> {
        let path = format!("{}/commits/{sha}/status?limit={PAGE_LIMIT}", repo_path(repo));
        let status: CombinedStatusAnswer = self.send(self.request(Method::GET, &path)).await?;
        Ok(status.statuses.into_iter().filter_map(StatusAnswer::failed).collect())
    }

    async fn current_user(&self) -> Result<String, ForgeError> {
        Ok(self.send::<super::wire::UserAnswer>(self.request(Method::GET, "/user")).await?.login)
    }

    /// gitea: `GET /repos/{o}/{r}/hooks`, `GET /orgs/{org}/hooks` (paged; a
    /// repository has few hooks, so one page of the most is read).
    async fn hooks(&self, target: &HookTarget) -> Result<Vec<InstalledHook>, ForgeError> {
        let path = format!("{}?limit={PAGE_LIMIT}", target.path());
        let answer: Vec<HookAnswer> = self.send(self.request(Method::GET, &path)).await?;
        Ok(answer.into_iter().map(InstalledHook::from).collect())
    }

    /// gitea: `CreateHookOption`: `type` and `config.url`/`config.content_type`
    /// are required; `events` names `HookEventType`s (routers/api/v1/utils/hook.go).
    async fn create_hook(&self, target: &HookTarget, spec: &HookSpec) -> Result<InstalledHook, ForgeError> {
        let body = json!({
            "type": "gitea",
            "config": hook_config(spec),
            "events": spec.events,
            "active": true,
        });
        let answer: HookAnswer = self.send(self.request(Method::POST, &target.path()).json(&body)).await?;
        Ok(answer.into())
    }

    /// gitea: `EditHookOption` (`PATCH …/hooks/{id}`).
    async fn update_hook(&self, target: &HookTarget, id: u64, spec: &HookSpec) -> Result<InstalledHook, ForgeError> {
        let body = json!({ "config": hook_config(spec), "events": spec.events, "active": true });
        let path = format!("{}/{id}", target.path());
        let answer: HookAnswer = self.send(self.request(Method::PATCH, &path).json(&body)).await?;
        Ok(answer.into())
    }
}

fn hook_config(spec: &HookSpec) -> serde_json::Value {
    json!({ "url": spec.url, "content_type": "json", "secret": spec.secret.expose_secret() })
}

/// Gitea caps a page at its MAX_RESPONSE_ITEMS, 50 by default.
const PAGE_LIMIT: usize = 50;
/// An issue with more than 5,000 timeline entries is read only that far.
const MAX_TIMELINE_PAGES: usize = 100;
