//! The subset of GitHub's and Gitea's webhook JSON that kugetsu reads. The two
//! forges agree on these field names; where they differ, fields are optional.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct Payload {
    pub action: Option<String>,
    pub issue: Option<Issue>,
    pub comment: Option<Comment>,
    pub repository: Option<Repository>,
    pub sender: Option<User>,
    /// GitHub's `labeled` names the label added; Gitea's `label_updated` does not.
    pub label: Option<Label>,
    /// On edits, the previous values.
    pub changes: Option<Changes>,
    /// Review events carry the pull request here, not in `issue`.
    pub pull_request: Option<PullRequest>,
    /// GitHub: `{id, body, user, state}`; Gitea: `{type, content}`.
    pub review: Option<Review>,
}

#[derive(Debug, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    #[serde(default)]
    pub title: String,
    pub body: Option<String>,
    pub labels: Option<Vec<Label>>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Review {
    pub id: Option<u64>,
    /// GitHub's review text.
    pub body: Option<String>,
    /// Gitea's review text.
    pub content: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Changes {
    pub body: Option<ChangedFrom>,
}

#[derive(Debug, Deserialize)]
pub struct ChangedFrom {
    pub from: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Issue {
    pub number: u64,
    #[serde(default)]
    pub title: String,
    pub body: Option<String>,
    pub user: User,
    pub labels: Option<Vec<Label>>,
    /// Present (GitHub) or non-null (Gitea) on pull requests.
    pub pull_request: Option<Value>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Comment {
    pub id: u64,
    pub body: Option<String>,
    pub user: User,
    pub updated_at: Option<String>,
    /// GitHub's review comments: the review they were submitted with.
    pub pull_request_review_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct Repository {
    pub id: Option<u64>,
    pub name: String,
    pub owner: User,
    pub html_url: Option<String>,
    pub default_branch: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub login: String,
    /// GitHub only: `User`, `Bot` or `Organization`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

impl User {
    pub fn is_bot(&self) -> bool {
        self.login.ends_with("[bot]")
    }
}

#[derive(Debug, Deserialize)]
pub struct Label {
    pub name: String,
}
