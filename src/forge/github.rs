use async_trait::async_trait;
use octocrab::Octocrab;
use octocrab::models::CommentId;
use octocrab::models::reactions::ReactionContent;
use secrecy::ExposeSecret;

use super::{Forge, ForgeComment, ForgeError, Permission, ReactionTarget};
use crate::config::Instance;
use crate::issue_ref::{IssueRef, RepoRef};

pub struct GithubForge {
    octocrab: Octocrab,
}

impl GithubForge {
    pub fn new(instance: &Instance) -> anyhow::Result<Self> {
        let mut builder = Octocrab::builder().base_uri(instance.api_url.as_str())?;
        if let Some(token) = &instance.token {
            builder = builder.personal_token(token.expose_secret().to_owned());
        }
        Ok(Self {
            octocrab: builder.build()?,
        })
    }
}

fn map_error(e: octocrab::Error) -> ForgeError {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            ForgeError::from_status(source.status_code.as_u16(), source.message.clone())
        }
        other => ForgeError::Other(format!("GitHub API call failed: {other}")),
    }
}

#[async_trait]
impl Forge for GithubForge {
    async fn permission(&self, repo: &RepoRef, user: &str) -> Result<Permission, ForgeError> {
        // octocrab's typed call cannot parse `write`/`read`/`none`; use the raw route.
        let route = format!(
            "/repos/{}/{}/collaborators/{user}/permission",
            repo.owner(),
            repo.name()
        );
        let answer: serde_json::Value = self
            .octocrab
            .get(route, None::<&()>)
            .await
            .map_err(map_error)?;
        let value = answer["permission"]
            .as_str()
            .ok_or_else(|| ForgeError::Other("permission answer has no `permission`".into()))?;
        Ok(Permission::parse(value))
    }

    async fn react_eyes(&self, repo: &RepoRef, target: ReactionTarget) -> Result<(), ForgeError> {
        let issues = self.octocrab.issues(repo.owner(), repo.name());
        match target {
            ReactionTarget::Issue(n) => issues
                .create_reaction(n, ReactionContent::Eyes)
                .await
                .map(drop),
            ReactionTarget::Comment(id) => issues
                .create_comment_reaction(CommentId(id), ReactionContent::Eyes)
                .await
                .map(drop),
        }
        .map_err(map_error)
    }

    async fn post_comment(&self, issue: &IssueRef, body: &str) -> Result<u64, ForgeError> {
        let repo = issue.repo();
        let comment = self
            .octocrab
            .issues(repo.owner(), repo.name())
            .create_comment(issue.number(), body)
            .await
            .map_err(map_error)?;
        Ok(comment.id.0)
    }

    async fn comments(&self, issue: &IssueRef) -> Result<Vec<ForgeComment>, ForgeError> {
        let repo = issue.repo();
        let first = self
            .octocrab
            .issues(repo.owner(), repo.name())
            .list_comments(issue.number())
            .per_page(100)
            .send()
            .await
            .map_err(map_error)?;
        let all = self.octocrab.all_pages(first).await.map_err(map_error)?;
        Ok(all
            .into_iter()
            .map(|c| ForgeComment {
                id: c.id.0,
                body: c.body.unwrap_or_default(),
            })
            .collect())
    }
}
