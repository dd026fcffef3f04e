use std::time::Duration;

use async_trait::async_trait;
use octocrab::models::reactions::ReactionContent;
use octocrab::models::{AppId, CommentId, InstallationId};
use octocrab::{EncodingKey, Octocrab};
use secrecy::{ExposeSecret, SecretString};

use super::{Forge, ForgeComment, ForgeError, Permission, ReactionTarget};
use crate::config::Instance;
use crate::issue_ref::{IssueRef, RepoRef};

pub struct GithubForge {
    octocrab: Octocrab,
    /// Whether `octocrab` authenticates as a GitHub App installation.
    is_app: bool,
    token: Option<SecretString>,
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
            return Ok(Self { octocrab, is_app: true, token: None });
        }
        let builder = match &instance.token {
            Some(token) => builder.personal_token(token.expose_secret().to_owned()),
            None => builder,
        };
        Ok(Self { octocrab: builder.build()?, is_app: false, token: instance.token.clone() })
    }
}

/// GitHub's secondary rate limits answer 403; its docs say to wait at least a minute.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

fn map_error(e: octocrab::Error) -> ForgeError {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            if status == 403 && source.message.to_ascii_lowercase().contains("rate limit") {
                return ForgeError::transient(format!("GitHub rate limit: {}", source.message))
                    .with_retry_after(Some(RATE_LIMIT_WAIT));
            }
            ForgeError::from_status(status, source.message.clone())
        }
        // Connection failures, timeouts and answers cut short: the call may or may
        // not have taken effect, and trying again later may work.
        other => ForgeError::transient(format!("GitHub API call failed ({}): {other}", error_kind(&other))),
    }
}

fn error_kind(e: &octocrab::Error) -> &'static str {
    match e {
        octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. } => "connection failed or timed out",
        octocrab::Error::Serde { .. } | octocrab::Error::Json { .. } => "unexpected answer",
        _ => "request failed",
    }
}

#[async_trait]
impl Forge for GithubForge {
    async fn git_token(&self) -> Result<Option<SecretString>, ForgeError> {
        if !self.is_app {
            return Ok(self.token.clone());
        }
        self.octocrab.installation_token().await.map(Some).map_err(map_error)
    }

    async fn permission(&self, repo: &RepoRef, user: &str) -> Result<Permission, ForgeError> {
        // octocrab's typed call cannot parse `write`/`read`/`none`; use the raw route.
        let route = format!("/repos/{}/{}/collaborators/{user}/permission", repo.owner(), repo.name());
        let answer: serde_json::Value = self.octocrab.get(route, None::<&()>).await.map_err(map_error)?;
        let value = answer["permission"]
            .as_str()
            .ok_or_else(|| ForgeError::Other("permission answer has no `permission`".into()))?;
        Ok(Permission::parse(value))
    }

    async fn react_eyes(&self, repo: &RepoRef, target: ReactionTarget) -> Result<(), ForgeError> {
        let issues = self.octocrab.issues(repo.owner(), repo.name());
        match target {
            ReactionTarget::Issue(n) => issues.create_reaction(n, ReactionContent::Eyes).await.map(drop),
            ReactionTarget::Comment(id) => {
                issues.create_comment_reaction(CommentId(id), ReactionContent::Eyes).await.map(drop)
            }
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
            .map(|c| ForgeComment { id: c.id.0, body: c.body.unwrap_or_default(), author: c.user.login })
            .collect())
    }
}
