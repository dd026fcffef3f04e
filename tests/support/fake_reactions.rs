//! The fake forge's reactions: made, and taken back.
//!
//! Sources: GitHub, docs.github.com/en/rest/reactions/reactions (create: 201, or
//! 200 with the one already there, 422 for an unknown content; delete by the
//! reaction's id: 204); gitea, `routers/api/v1/repo/issue_reaction.go`
//! (create: 201 or 200, 403 for a content not in `[ui] REACTIONS`; delete by
//! content in the body, the caller's own, 200 with no body) and
//! `modules/structs/issue_reaction.go` (a reaction has no id).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::fake_forge::{Flavor, State, error, gitea_user, github_user};

/// GitHub's reaction contents; Gitea's default `[ui] REACTIONS` is the same
/// list (modules/setting/ui.go).
const REACTIONS: [&str; 8] = ["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub id: u64,
    pub repo: String,
    /// `comment` or `issue`.
    pub kind: &'static str,
    pub target: u64,
    pub user: String,
    pub content: String,
}

/// What was reacted where, and what was taken back, in order.
#[derive(Debug, Default)]
pub struct Reactions {
    pub current: Vec<Reaction>,
    /// `owner/repo comment|issue <id> +content` or `-content`.
    pub history: Vec<String>,
}

pub(super) fn react(
    state: &mut State,
    flavor: Flavor,
    caller: &str,
    (repo, kind, target): (String, &'static str, u64),
    request: &Value,
) -> Response {
    let content = request["content"].as_str().unwrap_or_default().to_owned();
    if !REACTIONS.contains(&content.as_str()) {
        let status = if flavor == Flavor::Github { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::FORBIDDEN };
        return error(flavor, status, &format!("'{content}' is not an allowed reaction"));
    }
    let same = |r: &Reaction| {
        r.repo == repo && r.kind == kind && r.target == target && r.user == caller && r.content == content
    };
    let (status, id) = match state.reactions.current.iter().find(|r| same(r)) {
        Some(known) => (StatusCode::OK, known.id),
        None => {
            state.next_id += 1;
            let id = state.next_id;
            let made =
                Reaction { id, repo: repo.clone(), kind, target, user: caller.to_owned(), content: content.clone() };
            state.reactions.history.push(format!("{repo} {kind} {target} +{content}"));
            state.reactions.current.push(made);
            (StatusCode::CREATED, id)
        }
    };
    let body = match flavor {
        Flavor::Github => json!({
            "id": id, "node_id": format!("REA_{id}"), "user": github_user(caller),
            "content": content, "created_at": "2026-11-30T00:00:00Z"
        }),
        Flavor::Gitea => {
            json!({ "user": gitea_user(caller), "content": content, "created_at": "2026-11-30T00:00:00Z" })
        }
    };
    (status, axum::Json(body)).into_response()
}

/// GitHub: `DELETE …/reactions/{reaction_id}`, 204, 404 for one not on that target.
pub(super) fn unreact_by_id(state: &mut State, (repo, kind, target): (String, &'static str, u64), id: u64) -> Response {
    let Some(at) = state
        .reactions
        .current
        .iter()
        .position(|r| r.id == id && r.repo == repo && r.kind == kind && r.target == target)
    else {
        return error(Flavor::Github, StatusCode::NOT_FOUND, "Not Found");
    };
    let gone = state.reactions.current.remove(at);
    state.reactions.history.push(format!("{repo} {kind} {target} -{}", gone.content));
    StatusCode::NO_CONTENT.into_response()
}

/// gitea: `DELETE …/reactions` with `{"content"}`: the caller's reaction of that
/// content goes, if there is one; 200 with no body either way.
pub(super) fn unreact_by_content(
    state: &mut State,
    caller: &str,
    (repo, kind, target): (String, &'static str, u64),
    request: &Value,
) -> Response {
    let content = request["content"].as_str().unwrap_or_default();
    if !REACTIONS.contains(&content) {
        return error(Flavor::Gitea, StatusCode::FORBIDDEN, &format!("'{content}' is not an allowed reaction"));
    }
    let mine = |r: &Reaction| {
        r.repo == repo && r.kind == kind && r.target == target && r.user == caller && r.content == content
    };
    if let Some(at) = state.reactions.current.iter().position(mine) {
        state.reactions.current.remove(at);
        state.reactions.history.push(format!("{repo} {kind} {target} -{content}"));
    }
    StatusCode::OK.into_response()
}
