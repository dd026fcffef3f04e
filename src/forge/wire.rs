//! The JSON both forges answer with, as far as kugetsu reads it. GitHub and
//! Gitea agree on these fields (`id`, `body`, `user.login`, `permission`).

use serde::Deserialize;

use super::ForgeComment;

#[derive(Deserialize)]
pub struct PermissionAnswer {
    pub permission: String,
}

#[derive(Deserialize)]
pub struct CommentAnswer {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    pub user: Option<UserAnswer>,
}

#[derive(Deserialize)]
pub struct UserAnswer {
    pub login: String,
}

impl From<CommentAnswer> for ForgeComment {
    fn from(c: CommentAnswer) -> Self {
        Self { id: c.id, body: c.body.unwrap_or_default(), author: c.user.map(|u| u.login).unwrap_or_default() }
    }
}

/// The `message` of an error body, when there is one.
pub fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default()
}
