//! Forge event normalisation: GitHub and Gitea/Forgejo payloads become one
//! [`ForgeEvent`] at the edge, so nothing past here knows which forge spoke.

mod checks;
mod wire;

pub use checks::ChecksFailed;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::config::ForgeKind;
use crate::issue_ref::{InstanceName, IssueRef, RefError, RepoRef};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    IssueOpened,
    /// Labels changed. GitHub names the added label; Gitea sends only the full set.
    IssueLabeled {
        added: Option<String>,
    },
    IssueEdited,
    IssueClosed,
    CommentCreated,
    CommentEdited,
    /// A pull request review was submitted, or one of its line comments made.
    ReviewSubmitted,
}

/// A review event's part: which review, and the text the delivery carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewInfo {
    /// GitHub's review id; Gitea's payload names none, so the review is found
    /// through its API as the reviewer's newest.
    pub id: Option<u64>,
    /// The line comment the event was about (GitHub's `pull_request_review_comment`).
    pub comment_id: Option<u64>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentInfo {
    pub id: u64,
    pub body: String,
}

/// One issue or comment event, whichever forge sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeEvent {
    pub delivery_id: String,
    pub issue: IssueRef,
    pub kind: EventKind,
    /// Who caused the event.
    pub author: String,
    pub author_is_bot: bool,
    pub title: String,
    pub body: String,
    /// The issue's labels after the event.
    pub labels: Vec<String>,
    pub is_pull_request: bool,
    pub comment: Option<CommentInfo>,
    /// The repository's web page, for compare links.
    pub repo_html_url: Option<String>,
    pub default_branch: Option<String>,
    /// The forge's numeric repository id, stable across renames.
    pub repo_id: Option<u64>,
    /// On an edit, the body before it.
    pub previous_body: Option<String>,
    #[serde(default)]
    pub review: Option<ReviewInfo>,
    /// What makes this event the same event when it is delivered again under a
    /// new delivery id (Gitea's replay): instance, repository, issue or comment,
    /// action and update time.
    pub identity: String,
}

/// What a delivery turned out to be.
#[derive(Debug)]
pub enum Normalized {
    Event(Box<ForgeEvent>),
    /// A delivery kugetsu does not act on (ping, push, pull_request, unknown actions).
    Ignored(String),
    /// CI failed on a commit.
    ChecksFailed(Box<ChecksFailed>),
}

#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error("payload is not the JSON this event should carry: {0}")]
    Json(#[from] serde_json::Error),
    #[error("payload names an invalid repository or issue: {0}")]
    Ref(#[from] RefError),
    #[error("payload names a user login no forge allows")]
    Login,
}

/// Whether `login` is one a forge could have: ASCII letters, digits, `-`, `_`
/// and `.`, not leading with punctuation, at most 64 characters, optionally with
/// GitHub's `[bot]` suffix. Anything else never reaches a URL, a query or a comment.
pub fn is_valid_login(login: &str) -> bool {
    let name = login.strip_suffix("[bot]").unwrap_or(login);
    !name.is_empty()
        && login.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['-', '.', '_'])
}

/// What makes an event the same event however it reaches kugetsu: a delivery,
/// a redelivery under a new id, or the reconciler's look at the forge.
pub fn identity(
    issue: &IssueRef,
    comment: Option<u64>,
    (event, action): (&str, &str),
    updated: Option<&str>,
) -> String {
    let repo = issue.repo();
    format!(
        "{instance}:{owner}/{name}:{number}:{comment}:{event}:{action}:{updated}",
        instance = repo.instance(),
        owner = repo.owner().to_ascii_lowercase(),
        name = repo.name().to_ascii_lowercase(),
        number = issue.number(),
        comment = comment.map_or_else(|| "-".to_owned(), |id| id.to_string()),
        updated = updated.unwrap_or("-"),
    )
}

/// Turns a verified delivery into an event. `event` is the event header's value.
pub fn normalize(
    kind: ForgeKind,
    instance: &InstanceName,
    event: &str,
    delivery_id: &str,
    body: &[u8],
) -> Result<Normalized, NormalizeError> {
    let ignored = |why: &str| Ok(Normalized::Ignored(why.to_owned()));
    if checks::is_checks_event(kind, event) {
        return checks::normalize(instance, event, delivery_id, body);
    }
    if review_event(kind, event) {
        let payload: wire::Payload = serde_json::from_slice(body)?;
        return normalize_review(kind, instance, event, delivery_id, &payload);
    }
    if !matches!(event, "issues" | "issue_comment") {
        return ignored(&format!("`{event}` events are not acted on"));
    }
    let payload: wire::Payload = serde_json::from_slice(body)?;
    let (Some(issue), Some(repo)) = (&payload.issue, &payload.repository) else {
        return ignored("no issue or repository in the payload");
    };
    let action = payload.action.as_deref().unwrap_or_default();
    let event_kind = match (event, action) {
        ("issues", "opened") => EventKind::IssueOpened,
        ("issues", "labeled") => EventKind::IssueLabeled { added: payload.label.as_ref().map(|l| l.name.clone()) },
        // Gitea and Forgejo send the whole label set after a change; `label_cleared`
        // (every label removed) must reach the stored set too, or a trigger label
        // put back later would look as if it had been there all along.
        ("issues", "label_updated" | "label_cleared") => EventKind::IssueLabeled { added: None },
        ("issues", "edited") => EventKind::IssueEdited,
        ("issues", "closed") => EventKind::IssueClosed,
        ("issue_comment", "created") => EventKind::CommentCreated,
        ("issue_comment", "edited") => EventKind::CommentEdited,
        (_, action) => return ignored(&format!("`{event}` action `{action}` is not acted on")),
    };
    let repo_ref = RepoRef::new(instance.clone(), &repo.owner.login, &repo.name)?;
    let sender = payload.sender.as_ref().or(payload.comment.as_ref().map(|c| &c.user)).unwrap_or(&issue.user);
    // The owner and name the secret's scope was checked against, not the
    // payload's repository id, which a secret holder could point elsewhere.
    let identity = identity(
        &repo_ref.issue(issue.number)?,
        payload.comment.as_ref().map(|c| c.id),
        (event, action),
        payload.comment.as_ref().and_then(|c| c.updated_at.as_deref()).or(issue.updated_at.as_deref()),
    );
    let comment_author = payload.comment.as_ref().map(|c| c.user.login.as_str());
    if ![Some(sender.login.as_str()), comment_author].into_iter().flatten().all(is_valid_login) {
        return Err(NormalizeError::Login);
    }
    let author_is_bot = sender.is_bot() || kind == ForgeKind::Github && sender.kind.as_deref() == Some("Bot");
    Ok(Normalized::Event(Box::new(ForgeEvent {
        delivery_id: delivery_id.to_owned(),
        issue: repo_ref.issue(issue.number)?,
        kind: event_kind,
        author: sender.login.clone(),
        author_is_bot,
        title: issue.title.clone(),
        body: issue.body.clone().unwrap_or_default(),
        labels: issue.labels.iter().flatten().map(|l| l.name.clone()).collect(),
        is_pull_request: issue.pull_request.as_ref().is_some_and(|v| !v.is_null()),
        comment: payload.comment.as_ref().map(|c| CommentInfo { id: c.id, body: c.body.clone().unwrap_or_default() }),
        repo_html_url: repo.html_url.clone(),
        default_branch: repo.default_branch.clone(),
        repo_id: repo.id,
        previous_body: payload.changes.as_ref().and_then(|c| c.body.as_ref()).and_then(|b| b.from.clone()),
        review: None,
        identity,
    })))
}

/// GitHub: `pull_request_review` and `pull_request_review_comment`. Gitea's
/// `X-Gitea-Event` for its review hooks (modules/webhook/type.go, Event()):
/// `pull_request_comment` (a review with comments), `pull_request_approved`,
/// `pull_request_rejected`; its comments on a pull request's conversation come
/// as `issue_comment`.
fn review_event(kind: ForgeKind, event: &str) -> bool {
    match kind {
        ForgeKind::Github => matches!(event, "pull_request_review" | "pull_request_review_comment"),
        ForgeKind::Gitea | ForgeKind::Forgejo => {
            matches!(event, "pull_request_comment" | "pull_request_approved" | "pull_request_rejected")
        }
    }
}

fn normalize_review(
    kind: ForgeKind,
    instance: &InstanceName,
    event: &str,
    delivery_id: &str,
    payload: &wire::Payload,
) -> Result<Normalized, NormalizeError> {
    let ignored = |why: String| Ok(Normalized::Ignored(why));
    let action = payload.action.as_deref().unwrap_or_default();
    // GitHub: a review `submitted`, a line comment `created`; Gitea: `reviewed`.
    if !matches!(action, "submitted" | "created" | "reviewed") {
        return ignored(format!("`{event}` action `{action}` is not acted on"));
    }
    let (Some(pull), Some(repo), Some(sender)) = (&payload.pull_request, &payload.repository, &payload.sender) else {
        return ignored("no pull request, repository or sender in the payload".to_owned());
    };
    let repo_ref = RepoRef::new(instance.clone(), &repo.owner.login, &repo.name)?;
    let issue = repo_ref.issue(pull.number)?;
    let line_comment = payload.comment.as_ref().filter(|_| event == "pull_request_review_comment");
    let review = payload.review.as_ref();
    let id = line_comment.and_then(|c| c.pull_request_review_id).or(review.and_then(|r| r.id));
    let text = match line_comment {
        Some(c) => c.body.clone(),
        None => review.and_then(|r| r.body.clone().or_else(|| r.content.clone())),
    };
    if !is_valid_login(&sender.login) || line_comment.is_some_and(|c| !is_valid_login(&c.user.login)) {
        return Err(NormalizeError::Login);
    }
    // Every event of one GitHub review (the review and each of its line comments)
    // is one request: they share the review's id. Gitea sends one per review.
    let one_request = match (id, line_comment) {
        (Some(id), _) => format!("review-{id}"),
        (None, Some(c)) => format!("review-comment-{}", c.id),
        // Gitea's review names only its text: with the reviewer and the pull
        // request's update time, that tells one review from the next, and a
        // replayed delivery from a new review.
        (None, None) => {
            let at = pull.updated_at.as_deref().unwrap_or(delivery_id);
            let said = hex::encode(&sha2::Sha256::digest(text.as_deref().unwrap_or_default().as_bytes())[..8]);
            format!("review-{at}-{}-{said}", sender.login.to_ascii_lowercase())
        }
    };
    let author_is_bot = sender.is_bot() || kind == ForgeKind::Github && sender.kind.as_deref() == Some("Bot");
    Ok(Normalized::Event(Box::new(ForgeEvent {
        delivery_id: delivery_id.to_owned(),
        identity: identity(&issue, None, ("pull_request_review", "submitted"), Some(&one_request)),
        issue,
        kind: EventKind::ReviewSubmitted,
        author: sender.login.clone(),
        author_is_bot,
        title: pull.title.clone(),
        body: pull.body.clone().unwrap_or_default(),
        labels: pull.labels.iter().flatten().map(|l| l.name.clone()).collect(),
        is_pull_request: true,
        comment: None,
        repo_html_url: repo.html_url.clone(),
        default_branch: repo.default_branch.clone(),
        repo_id: repo.id,
        previous_body: None,
        review: Some(ReviewInfo { id, comment_id: line_comment.map(|c| c.id), text: text.unwrap_or_default() }),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_what_forges_allow() {
        for ok in ["alice", "a-b", "a_b", "a.b", "kugetsu[bot]", "A1"] {
            assert!(is_valid_login(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "a?b", "a b", "a\nb", "a#b", "@a", "[bot]", &"x".repeat(65)] {
            assert!(!is_valid_login(bad), "{bad:?}");
        }
    }
}
