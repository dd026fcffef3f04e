//! The JSON both forges answer with, as far as kugetsu reads it. GitHub and
//! Gitea agree on these fields (`id`, `body`, `user.login`, `permission`).

use serde::Deserialize;

use super::{CommentPlace, ForgeComment, IssueFacts, LabelAddition};

#[derive(Deserialize)]
pub struct PermissionAnswer {
    pub permission: String,
}

/// GitHub's `Reaction`; Gitea's has no id, and is not read.
#[derive(Deserialize)]
pub struct ReactionAnswer {
    pub id: u64,
}

#[derive(Deserialize)]
pub struct CommentAnswer {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    pub user: Option<UserAnswer>,
    /// GitHub: the API URL of the issue (also for pull requests); Gitea: the
    /// issue's page, empty on pull requests, which fill `pull_request_url`.
    #[serde(default)]
    pub issue_url: Option<String>,
    #[serde(default)]
    pub pull_request_url: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// Both forges' pull request: GitHub's `merged` is only in a single pull
/// request's answer, `merged_at` in every one; Gitea has both everywhere.
#[derive(Deserialize)]
pub struct PullAnswer {
    pub number: u64,
    #[serde(default)]
    pub html_url: String,
    pub state: String,
    #[serde(default)]
    pub merged: Option<bool>,
    #[serde(default)]
    pub merged_at: Option<String>,
    pub head: BranchAnswer,
}

#[derive(Deserialize)]
pub struct BranchAnswer {
    #[serde(rename = "ref")]
    pub name: String,
}

impl From<PullAnswer> for super::PullRequest {
    fn from(p: PullAnswer) -> Self {
        let state = if p.merged == Some(true) || p.merged_at.is_some() {
            super::PullState::Merged
        } else if p.state == "open" {
            super::PullState::Open
        } else {
            super::PullState::Closed
        };
        Self { number: p.number, html_url: p.html_url, state, head: p.head.name }
    }
}

/// Both forges' review: GitHub's `state` is `APPROVED`, `CHANGES_REQUESTED`,
/// `COMMENTED`, `DISMISSED` or `PENDING`; Gitea's `APPROVED`, `REQUEST_CHANGES`,
/// `COMMENT`, `PENDING`, `REQUEST_REVIEW`.
#[derive(Deserialize)]
pub struct ReviewAnswer {
    pub id: u64,
    pub user: Option<UserAnswer>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

impl ReviewAnswer {
    /// Submitted, not a draft of its author's or a request for a review.
    pub fn is_submitted(&self) -> bool {
        !matches!(self.state.as_deref(), Some("PENDING" | "REQUEST_REVIEW"))
    }
}

/// A review comment: GitHub names its lines (`start_line`, `line`, or
/// `original_line` once outdated); Gitea gives the new file's line as
/// `position`, or the old file's as `original_position`.
#[derive(Deserialize)]
pub struct ReviewCommentAnswer {
    pub id: u64,
    pub user: Option<UserAnswer>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub start_line: Option<u64>,
    #[serde(default)]
    pub original_line: Option<u64>,
    #[serde(default)]
    pub position: Option<u64>,
    #[serde(default)]
    pub original_position: Option<u64>,
    #[serde(default)]
    pub diff_hunk: Option<String>,
    #[serde(default)]
    pub in_reply_to_id: Option<u64>,
}

impl ReviewCommentAnswer {
    pub fn into_comment(self, lines: Option<(u64, u64)>) -> super::ReviewComment {
        super::ReviewComment {
            id: self.id,
            author: self.user.map(|u| u.login).unwrap_or_default(),
            body: self.body.unwrap_or_default(),
            path: self.path.unwrap_or_default(),
            lines,
            diff_hunk: self.diff_hunk.unwrap_or_default(),
            in_reply_to: self.in_reply_to_id,
        }
    }
}

/// `author`'s newest submitted review of a list that runs oldest first: the
/// newest whose text is `text`, when one is, else the newest.
pub fn newest_review_by(reviews: Vec<ReviewAnswer>, author: &str, text: &str) -> Option<ReviewAnswer> {
    let mut theirs: Vec<ReviewAnswer> = reviews
        .into_iter()
        .filter(|r| r.is_submitted() && r.user.as_ref().is_some_and(|u| u.login.eq_ignore_ascii_case(author)))
        .collect();
    match theirs.iter().rposition(|r| review_says(r, text)) {
        Some(at) => Some(theirs.swap_remove(at)),
        None => theirs.pop(),
    }
}

/// Whether the review's text is `text` (an empty one matches none).
fn review_says(review: &ReviewAnswer, text: &str) -> bool {
    !text.trim().is_empty() && review.body.as_deref().map(str::trim) == Some(text.trim())
}

pub fn review_of(answer: ReviewAnswer, comments: Vec<super::ReviewComment>) -> super::Review {
    super::Review {
        id: answer.id,
        author: answer.user.map(|u| u.login).unwrap_or_default(),
        body: answer.body.unwrap_or_default(),
        comments,
    }
}

/// Both forges' combined status (`GET …/commits/{ref}/status`): GitHub names
/// each status's state `state`, Gitea `status` (modules/structs/status.go).
#[derive(Deserialize)]
pub struct CombinedStatusAnswer {
    #[serde(default)]
    pub statuses: Vec<StatusAnswer>,
}

#[derive(Deserialize)]
pub struct StatusAnswer {
    #[serde(default, alias = "status")]
    pub state: String,
    #[serde(default)]
    pub context: String,
    #[serde(default)]
    pub target_url: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

impl StatusAnswer {
    pub fn failed(self) -> Option<super::FailedCheck> {
        matches!(self.state.as_str(), "failure" | "error").then(|| super::FailedCheck {
            name: self.context,
            url: self.target_url.filter(|u| !u.is_empty()),
            summary: self.description.unwrap_or_default(),
        })
    }
}

/// GitHub's check runs of a commit (`GET …/commits/{ref}/check-runs`).
#[derive(Deserialize)]
pub struct CheckRunsAnswer {
    #[serde(default)]
    pub check_runs: Vec<CheckRunAnswer>,
}

#[derive(Deserialize)]
pub struct CheckRunAnswer {
    pub name: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub output: Option<CheckOutput>,
}

#[derive(Deserialize)]
pub struct CheckOutput {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

impl CheckRunAnswer {
    pub fn failed(self) -> Option<super::FailedCheck> {
        if !matches!(self.conclusion.as_deref(), Some("failure" | "timed_out")) {
            return None;
        }
        let output = self.output.map(|o| [o.title, o.summary, o.text].into_iter().flatten().collect::<Vec<_>>());
        Some(super::FailedCheck {
            name: self.name,
            url: self.html_url,
            summary: output.map(|parts| parts.join("\n")).unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
pub struct UserAnswer {
    pub login: String,
}

#[derive(Deserialize)]
pub struct LabelAnswer {
    pub name: String,
}

#[derive(Deserialize)]
pub struct IssueAnswer {
    #[serde(default)]
    pub number: u64,
    pub user: Option<UserAnswer>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub labels: Option<Vec<LabelAnswer>>,
    /// GitHub: present on pull requests; Gitea: non-null on pull requests.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
    #[serde(default)]
    pub html_url: Option<String>,
}

impl From<IssueAnswer> for IssueFacts {
    fn from(i: IssueAnswer) -> Self {
        Self {
            author: i.user.map(|u| u.login).unwrap_or_default(),
            title: i.title.unwrap_or_default(),
            body: i.body.unwrap_or_default(),
            labels: i.labels.into_iter().flatten().map(|l| l.name).collect(),
            is_pull_request: i.pull_request.is_some_and(|v| !v.is_null()),
            html_url: i.html_url,
        }
    }
}

/// One of GitHub's issue events (`GET /repos/{o}/{r}/issues/{n}/events`).
#[derive(Deserialize)]
pub struct EventAnswer {
    #[serde(default)]
    pub id: u64,
    pub event: String,
    pub actor: Option<UserAnswer>,
    pub label: Option<LabelAnswer>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// One entry of Gitea's issue timeline (`GET /repos/{o}/{r}/issues/{n}/timeline`);
/// a `label` entry's body is `1` when the label was added, empty when removed
/// (`modules/structs/issue_comment.go`, TimelineComment).
#[derive(Deserialize)]
pub struct TimelineAnswer {
    #[serde(default)]
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub user: Option<UserAnswer>,
    pub label: Option<LabelAnswer>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// One label record: `(added, label, login, record id, when)`.
pub type LabelRecord<'a> = (bool, Option<&'a str>, Option<&'a str>, u64, Option<&'a str>);

/// The last "added `label`" record, oldest records first.
pub fn last_adder<'a>(records: impl Iterator<Item = LabelRecord<'a>>, label: &str) -> Option<LabelAddition> {
    records
        .filter(|(added, name, _, _, _)| *added && name.is_some_and(|n| n.eq_ignore_ascii_case(label)))
        .filter_map(|(_, _, login, record, at)| {
            login.map(|by| LabelAddition { by: by.to_owned(), record, at: at.map(str::to_owned) })
        })
        .last()
}

/// Owner, repository and number at the end of a comment's `issue_url` or
/// `pull_request_url`: `…/{owner}/{repo}/{issues|pulls|pull}/{n}`.
fn place_in(url: Option<&str>) -> Option<CommentPlace> {
    let mut parts = url?.trim_end_matches('/').rsplit('/');
    let number = parts.next()?.parse().ok()?;
    if !matches!(parts.next()?, "issues" | "pulls" | "pull") {
        return None;
    }
    let repo = parts.next()?.to_owned();
    let owner = parts.next()?.to_owned();
    Some(CommentPlace { owner, repo, number })
}

impl From<CommentAnswer> for ForgeComment {
    fn from(c: CommentAnswer) -> Self {
        let issue = place_in(c.issue_url.as_deref()).or_else(|| place_in(c.pull_request_url.as_deref()));
        Self {
            id: c.id,
            body: c.body.unwrap_or_default(),
            author: c.user.map(|u| u.login).unwrap_or_default(),
            issue,
            updated_at: c.updated_at,
        }
    }
}

/// The `message` of an error body, when there is one.
pub fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reviewers_review_is_found_by_its_text_before_its_age() {
        let review = |id: u64, by: &str, body: &str, state: &str| ReviewAnswer {
            id,
            user: Some(UserAnswer { login: by.into() }),
            body: Some(body.into()),
            state: Some(state.into()),
        };
        let all = || {
            vec![
                review(1, "alice", "@kugetsu rename it", "COMMENT"),
                review(2, "bob", "@kugetsu rename it", "COMMENT"),
                review(3, "Alice", "looks good", "APPROVED"),
                review(4, "alice", "draft", "PENDING"),
            ]
        };
        let found = |text: &str| newest_review_by(all(), "alice", text).map(|r| r.id);
        assert_eq!(found("@kugetsu rename it"), Some(1), "two quick reviews: the one the event named");
        assert_eq!(found(""), Some(3), "no text: the newest submitted, a pending one is not");
        assert_eq!(found("something else"), Some(3));
        assert!(newest_review_by(all(), "carol", "").is_none());
    }

    #[test]
    fn comment_urls_name_their_issue_on_both_forges() {
        let at =
            |owner: &str, repo: &str, number| Some(CommentPlace { owner: owner.into(), repo: repo.into(), number });
        assert_eq!(place_in(Some("https://api.github.com/repos/o/r/issues/12")), at("o", "r", 12));
        assert_eq!(place_in(Some("https://git.example.com/o/r/issues/7")), at("o", "r", 7));
        assert_eq!(place_in(Some("https://git.example.com/sub/o/r/pulls/9/")), at("o", "r", 9));
        assert_eq!(place_in(Some("https://git.example.com/o/r/commits/9")), None);
        assert_eq!(place_in(Some("9")), None);
        assert_eq!(place_in(Some("")), None);
        assert_eq!(place_in(None), None);
    }
}

/// A webhook as both forges list it. GitHub's `config` holds `url`,
/// `content_type`, `insecure_ssl` and a masked `secret`; Gitea's holds `url` and
/// `content_type` (strings), and never the secret.
#[derive(Deserialize)]
pub struct HookAnswer {
    pub id: u64,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub config: std::collections::HashMap<String, serde_json::Value>,
}

/// One of a GitHub hook's deliveries ("List deliveries for a repository
/// webhook": `delivered_at`, `status`, `status_code`, `event`, among others).
#[derive(Deserialize)]
pub struct DeliveryAnswer {
    #[serde(default)]
    pub delivered_at: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub event: String,
}

impl From<DeliveryAnswer> for super::HookDelivery {
    fn from(a: DeliveryAnswer) -> Self {
        Self { delivered_at: a.delivered_at, status: a.status, status_code: a.status_code, event: a.event }
    }
}

impl From<HookAnswer> for super::InstalledHook {
    fn from(a: HookAnswer) -> Self {
        let text = |key: &str| a.config.get(key).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        Self { id: a.id, url: text("url"), content_type: text("content_type"), events: a.events, active: a.active }
    }
}
