//! The fake forge's pull requests, kept as both forges keep them: a pull
//! request is also an issue, numbered with the issues.
//!
//! Each rule names its source:
//! - GitHub: docs.github.com/en/rest/pulls/pulls ("Create a pull request",
//!   "Get a pull request", "List pull requests");
//! - gitea: go-gitea/gitea `routers/api/v1/repo/pull.go` (CreatePullRequest,
//!   GetPullRequest, GetPullRequestByBaseHead) and `modules/structs/pull.go`.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::fake_forge::{Flavor, Issue, Request, State, error, gitea_user, github_user, not_found, query_of};

/// A pull request as the fake holds it, beside its issue.
#[derive(Debug, Clone)]
pub struct Pull {
    pub head: String,
    pub base: String,
    /// GitHub's own flag; on gitea, a `WIP:` title.
    pub draft: bool,
    pub open: bool,
    pub merged: bool,
}

/// A submitted review and its line comments.
#[derive(Debug, Clone)]
pub struct FakeReview {
    pub id: u64,
    pub repo: String,
    pub pull: u64,
    pub author: String,
    pub body: String,
    /// GitHub's `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`; the fake writes
    /// gitea's names for it (`APPROVED`, `REQUEST_CHANGES`, `COMMENT`) there.
    pub state: &'static str,
    pub comments: Vec<LineComment>,
}

#[derive(Debug, Clone)]
pub struct LineComment {
    pub id: u64,
    pub review: u64,
    pub author: String,
    pub body: String,
    pub path: String,
    pub line: u64,
    pub diff_hunk: String,
    pub in_reply_to: Option<u64>,
}

#[derive(Default)]
pub struct Pulls {
    /// `(owner/repo, number)` → its pull request.
    pub all: std::collections::BTreeMap<(String, u64), Pull>,
    pub reviews: Vec<FakeReview>,
    /// Where the bare repositories are (`<owner>/<repo>.git`): a head branch
    /// must exist there, as on the real forges.
    pub remotes: Option<PathBuf>,
}

/// gitea: `[repository.pull-request] WORK_IN_PROGRESS_PREFIXES` defaults to `WIP:` and `[WIP]`.
fn is_work_in_progress(title: &str) -> bool {
    let lower = title.to_ascii_lowercase();
    lower.starts_with("wip:") || lower.starts_with("[wip]")
}

/// `…/pulls…` of a repository that exists; `rest` follows `pulls`.
pub(super) fn call(
    state: &mut State,
    req: &Request,
    caller: &str,
    repo: &str,
    rest: &[&str],
    body: &Value,
) -> Option<Response> {
    match (req.method.as_str(), rest) {
        ("POST", []) => Some(create(state, req, caller, repo, body)),
        ("GET", [n]) => {
            let n: u64 = n.parse().ok()?;
            let pull = state.pulls.all.get(&(repo.to_owned(), n))?;
            let issue = &state.repos[repo][&n];
            Some(axum::Json(pull_json(req.flavor, repo, n, issue, pull, true)).into_response())
        }
        // Both: "List reviews for a pull request" / ListPullReviews, oldest first.
        ("GET", [n, "reviews"]) => {
            let n: u64 = n.parse().ok()?;
            state.pulls.all.get(&(repo.to_owned(), n))?;
            let all: Vec<Value> = reviews_of(state, repo, n).map(|r| review_json(req.flavor, r)).collect();
            Some(axum::Json(all).into_response())
        }
        ("GET", [n, "reviews", id]) => {
            let review = find_review(state, repo, n, id)?;
            Some(axum::Json(review_json(req.flavor, review)).into_response())
        }
        // GitHub: "List comments for a pull request review"; gitea: GetPullReviewComments.
        ("GET", [n, "reviews", id, "comments"]) => {
            let review = find_review(state, repo, n, id)?;
            let all: Vec<Value> =
                review.comments.iter().map(|c| line_comment_json(req.flavor, repo, review.pull, c)).collect();
            Some(axum::Json(all).into_response())
        }
        // GitHub: "List review comments on a pull request" (gitea has no such list).
        ("GET", [n, "comments"]) if req.flavor == Flavor::Github => {
            let n: u64 = n.parse().ok()?;
            state.pulls.all.get(&(repo.to_owned(), n))?;
            let all: Vec<Value> = reviews_of(state, repo, n)
                .flat_map(|r| r.comments.iter())
                .map(|c| line_comment_json(req.flavor, repo, n, c))
                .collect();
            Some(axum::Json(all).into_response())
        }
        // GitHub: "Create a reply for a review comment": 201; "replies to replies
        // are not supported" (422 here); 404 for a comment not on this pull request.
        // gitea has no such route.
        ("POST", [n, "comments", id, "replies"]) if req.flavor == Flavor::Github => {
            let n: u64 = n.parse().ok()?;
            let id: u64 = id.parse().ok()?;
            let text = body.get("body").and_then(Value::as_str).unwrap_or_default().to_owned();
            if text.is_empty() {
                return Some(error(req.flavor, StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed"));
            }
            let Some(parent) = reviews_of(state, repo, n).flat_map(|r| r.comments.iter()).find(|c| c.id == id).cloned()
            else {
                return Some(not_found(req.flavor));
            };
            if parent.in_reply_to.is_some() {
                return Some(validation_failed("in_reply_to", "invalid", "Replies to replies are not supported"));
            }
            let (review_id, comment_id) = (next_id(state), next_id(state));
            let reply = LineComment {
                id: comment_id,
                review: review_id,
                author: caller.to_owned(),
                body: text,
                in_reply_to: Some(id),
                ..parent
            };
            let answer = line_comment_json(req.flavor, repo, n, &reply);
            state.pulls.reviews.push(FakeReview {
                id: review_id,
                repo: repo.to_owned(),
                pull: n,
                author: caller.to_owned(),
                body: String::new(),
                state: "COMMENTED",
                comments: vec![reply],
            });
            Some((StatusCode::CREATED, axum::Json(answer)).into_response())
        }
        // GitHub: `head` is `owner:branch`; `state` open (default), closed or all.
        ("GET", []) if req.flavor == Flavor::Github => {
            let query = query_of(req);
            let head = query.get("head").map(|h| h.split_once(':').map_or(h.as_str(), |(_, b)| b).to_owned());
            let wanted_state = query.get("state").map_or("open", String::as_str).to_owned();
            let mut found: Vec<Value> = state
                .pulls
                .all
                .iter()
                .filter(|((r, _), p)| r == repo && head.as_ref().is_none_or(|h| *h == p.head))
                .filter(|(_, p)| query.get("base").is_none_or(|b| *b == p.base))
                .filter(|(_, p)| match wanted_state.as_str() {
                    "all" => true,
                    "closed" => !p.open,
                    _ => p.open,
                })
                .map(|((r, n), p)| pull_json(req.flavor, r, *n, &state.repos[r][n], p, false))
                .collect();
            found.reverse();
            Some(axum::Json(found).into_response())
        }
        // gitea: GET /repos/{o}/{r}/pulls/{base}/{head}, the newest from head to base; 404 when none.
        ("GET", [base, head @ ..]) if req.flavor == Flavor::Gitea && !head.is_empty() => {
            let head = head.join("/");
            let base = percent_decoded(base);
            let found = state.pulls.all.iter().rev().find(|((r, _), p)| r == repo && p.head == head && p.base == base);
            let Some(((r, n), p)) = found else { return Some(not_found(req.flavor)) };
            Some(axum::Json(pull_json(req.flavor, r, *n, &state.repos[r][n], p, true)).into_response())
        }
        _ => None,
    }
}

fn create(state: &mut State, req: &Request, caller: &str, repo: &str, body: &Value) -> Response {
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (title, head, base) = (text("title"), text("head"), text("base"));
    // Both: title, head and base are required (GitHub 422 "Validation Failed";
    // gitea `binding:"Required"` on CreatePullRequestOption is 422).
    if title.trim().is_empty() || head.is_empty() || base.is_empty() {
        return error(req.flavor, StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    if head == base {
        // gitea: CreatePullRequest, "BaseHeadSame"; GitHub: 422 as well.
        let text = "Invalid PullRequest: There are no changes between the head and the base";
        return error(req.flavor, StatusCode::UNPROCESSABLE_ENTITY, text);
    }
    if !branch_exists(state, repo, &head) || !branch_exists(state, repo, &base) {
        return match req.flavor {
            // GitHub: 422 with errors [{resource: PullRequest, field: head, code: invalid}].
            Flavor::Github => validation_failed("head", "invalid", "Validation Failed"),
            // gitea: parseCompareInfo answers 404 for a branch that does not exist.
            Flavor::Gitea => error(req.flavor, StatusCode::NOT_FOUND, "The target couldn't be found."),
        };
    }
    // GitHub refuses a pull request whose head has nothing the base lacks; gitea
    // checks only that the two names differ (above).
    if req.flavor == Flavor::Github && commits_ahead(state, repo, &base, &head) == Some(0) {
        return validation_failed("", "custom", &format!("No commits between {base} and {head}"));
    }
    let duplicate = state.pulls.all.iter().any(|((r, _), p)| r == repo && p.open && p.head == head && p.base == base);
    if duplicate {
        let owner = repo.split('/').next().unwrap_or_default();
        return match req.flavor {
            Flavor::Github => {
                validation_failed("", "custom", &format!("A pull request already exists for {owner}:{head}."))
            }
            // gitea: ErrPullRequestAlreadyExists → 409.
            Flavor::Gitea => error(req.flavor, StatusCode::CONFLICT, "pull request already exists for these targets"),
        };
    }
    let issues = state.repos.entry(repo.to_owned()).or_default();
    let number = issues.keys().max().copied().unwrap_or(0) + 1;
    let draft = match req.flavor {
        Flavor::Github => body.get("draft").and_then(Value::as_bool).unwrap_or(false),
        // gitea's CreatePullRequestOption has no `draft`: it is dropped when decoded.
        Flavor::Gitea => is_work_in_progress(&title),
    };
    let issue = Issue { author: caller.to_owned(), title, body: text("body"), is_pull: true, ..Issue::default() };
    issues.insert(number, issue.clone());
    let pull = Pull { head, base, draft, open: true, merged: false };
    state.pulls.all.insert((repo.to_owned(), number), pull.clone());
    (StatusCode::CREATED, axum::Json(pull_json(req.flavor, repo, number, &issue, &pull, true))).into_response()
}

pub(super) fn next_id(state: &mut State) -> u64 {
    state.next_id += 1;
    state.next_id
}

fn reviews_of<'a>(state: &'a State, repo: &'a str, pull: u64) -> impl Iterator<Item = &'a FakeReview> + 'a {
    state.pulls.reviews.iter().filter(move |r| r.repo == repo && r.pull == pull)
}

fn find_review<'a>(state: &'a State, repo: &str, pull: &str, id: &str) -> Option<&'a FakeReview> {
    let (pull, id): (u64, u64) = (pull.parse().ok()?, id.parse().ok()?);
    state.pulls.reviews.iter().find(|r| r.repo == repo && r.pull == pull && r.id == id)
}

/// GitHub: "Get a review for a pull request"; gitea: modules/structs/pull_review.go, PullReview.
fn review_json(flavor: Flavor, r: &FakeReview) -> Value {
    let base_url = "https://forge.example.com";
    match flavor {
        Flavor::Github => json!({
            "id": r.id, "node_id": format!("PRR_{}", r.id), "user": github_user(&r.author), "body": r.body,
            "state": r.state, "html_url": format!("{base_url}/{}/pull/{}#pullrequestreview-{}", r.repo, r.pull, r.id),
            "pull_request_url": format!("{base_url}/repos/{}/pulls/{}", r.repo, r.pull),
            "submitted_at": "2026-11-30T00:00:00Z", "commit_id": "0".repeat(40)
        }),
        Flavor::Gitea => {
            let state = match r.state {
                "CHANGES_REQUESTED" => "REQUEST_CHANGES",
                "COMMENTED" => "COMMENT",
                other => other,
            };
            json!({
                "id": r.id, "user": gitea_user(&r.author), "body": r.body, "state": state,
                "comments_count": r.comments.len(), "official": false, "stale": false, "dismissed": false,
                "html_url": format!("{base_url}/{}/pulls/{}#issuecomment-{}", r.repo, r.pull, r.id),
                "pull_request_url": format!("{base_url}/{}/pulls/{}", r.repo, r.pull),
                "submitted_at": "2026-11-30T00:00:00Z", "commit_id": "0".repeat(40)
            })
        }
    }
}

/// GitHub's review comment (`line`, `start_line`, `original_line`, `position`
/// in the diff); gitea's PullReviewComment, whose `position` is the new file's line.
fn line_comment_json(flavor: Flavor, repo: &str, pull: u64, c: &LineComment) -> Value {
    let base_url = "https://forge.example.com";
    match flavor {
        Flavor::Github => {
            let mut v = json!({
                "id": c.id, "node_id": format!("PRRC_{}", c.id), "pull_request_review_id": c.review,
                "user": github_user(&c.author), "body": c.body, "path": c.path, "diff_hunk": c.diff_hunk,
                "line": c.line, "original_line": c.line, "start_line": null, "side": "RIGHT", "position": 1,
                "commit_id": "0".repeat(40), "html_url": format!("{base_url}/{repo}/pull/{pull}#discussion_r{}", c.id),
                "pull_request_url": format!("{base_url}/repos/{repo}/pulls/{pull}"),
                "created_at": "2026-11-30T00:00:00Z", "updated_at": "2026-11-30T00:00:00Z"
            });
            if let Some(parent) = c.in_reply_to {
                v["in_reply_to_id"] = json!(parent);
            }
            v
        }
        Flavor::Gitea => json!({
            "id": c.id, "body": c.body, "user": gitea_user(&c.author), "resolver": null,
            "pull_request_review_id": c.review, "path": c.path, "commit_id": "0".repeat(40),
            "original_commit_id": "0".repeat(40), "diff_hunk": c.diff_hunk, "position": c.line,
            "original_position": 0, "html_url": format!("{base_url}/{repo}/pulls/{pull}/files#issuecomment-{}", c.id),
            "pull_request_url": format!("{base_url}/{repo}/pulls/{pull}"),
            "created_at": "2026-11-30T00:00:00Z", "updated_at": "2026-11-30T00:00:00Z"
        }),
    }
}

fn validation_failed(field: &str, code: &str, message: &str) -> Response {
    let body = json!({
        "message": "Validation Failed",
        "errors": [{ "resource": "PullRequest", "field": field, "code": code, "message": message }],
        "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
        "status": "422"
    });
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

fn branch_exists(state: &State, repo: &str, branch: &str) -> bool {
    let Some(remotes) = &state.pulls.remotes else { return true };
    let bare = remotes.join(format!("{repo}.git"));
    std::process::Command::new("git")
        .args(["--git-dir", &bare.to_string_lossy(), "rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}"))
        .output()
        .is_ok_and(|out| out.status.success())
}

fn commits_ahead(state: &State, repo: &str, base: &str, head: &str) -> Option<u64> {
    let bare = state.pulls.remotes.as_ref()?.join(format!("{repo}.git"));
    let out = std::process::Command::new("git")
        .args(["--git-dir", &bare.to_string_lossy(), "rev-list", "--count"])
        .arg(format!("refs/heads/{base}..refs/heads/{head}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn percent_decoded(segment: &str) -> String {
    percent_decode(segment.as_bytes())
}

fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(Some(hi)), Some(Some(lo))) =
                (bytes.get(i + 1).map(|b| hex(*b)), bytes.get(i + 2).map(|b| hex(*b)))
        {
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Each forge's pull request. GitHub sends `merged` only for a single pull
/// request ("Get a pull request"), not in lists; gitea always.
fn pull_json(flavor: Flavor, repo: &str, n: u64, issue: &Issue, pull: &Pull, single: bool) -> Value {
    let base_url = "https://forge.example.com";
    let state = if pull.open { "open" } else { "closed" };
    let merged_at = if pull.merged { json!("2026-11-30T00:00:00Z") } else { Value::Null };
    let owner = repo.split('/').next().unwrap_or_default();
    let branch = |name: &str| json!({ "ref": name, "sha": "0".repeat(40), "label": format!("{owner}:{name}") });
    match flavor {
        Flavor::Github => {
            let mut v = json!({
                "id": n, "node_id": format!("PR_{n}"), "number": n, "url": format!("{base_url}/repos/{repo}/pulls/{n}"),
                "html_url": format!("{base_url}/{repo}/pull/{n}"), "state": state, "locked": false,
                "title": issue.title, "body": issue.body, "user": github_user(&issue.author), "draft": pull.draft,
                "merged_at": merged_at, "head": branch(&pull.head), "base": branch(&pull.base)
            });
            if single {
                v["merged"] = json!(pull.merged);
            }
            v
        }
        Flavor::Gitea => json!({
            "id": n, "number": n, "url": format!("{base_url}/{repo}/pulls/{n}"),
            "html_url": format!("{base_url}/{repo}/pulls/{n}"), "state": state, "is_locked": false,
            "title": issue.title, "body": issue.body, "user": gitea_user(&issue.author), "draft": pull.draft,
            "merged": pull.merged, "merged_at": merged_at, "mergeable": true,
            "head": branch(&pull.head), "base": branch(&pull.base)
        }),
    }
}
