//! Retries of forge calls that are safe to repeat, with exponential backoff and
//! full jitter, honouring `Retry-After`.
//!
//! Creating a comment is deliberately not retried here: a POST the forge stored
//! but answered with a 502 would be posted twice. The worker retries it itself,
//! looking for the job's marker before every attempt.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use secrecy::SecretString;

use super::{ApiStats, FailedCheck, HookDelivery, Listed, NewPullRequest, PullRequest, Review};
use super::{
    Forge, ForgeComment, ForgeError, HookSpec, HookTarget, InstalledHook, IssueFacts, LabelAddition, Permission,
    Reacted, Reaction, ReactionTarget,
};
use crate::issue_ref::{IssueRef, RepoRef};

/// The longest single wait; a `Retry-After` beyond it ends the attempts, and the
/// job is put back in the queue instead of holding a worker.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// How often and how patiently one forge call is tried.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub attempts: u32,
    /// The first wait's upper bound; it doubles with each attempt.
    pub base: Duration,
}

impl Backoff {
    /// The wait before attempt `attempt + 1` (0-based), or `None` when the budget
    /// is spent or the forge asked for a longer wait than a worker should hold.
    pub fn wait_after(&self, attempt: u32, error: &ForgeError) -> Option<Duration> {
        let ForgeError::Transient { retry_after, .. } = error else { return None };
        if attempt + 1 >= self.attempts {
            return None;
        }
        if let Some(asked) = retry_after {
            return (*asked <= MAX_WAIT).then_some(*asked);
        }
        let ceiling = self.base.saturating_mul(1 << attempt.min(16)).min(MAX_WAIT);
        // Full jitter: many workers that failed together do not retry together.
        Some(ceiling.mul_f64(rand::rng().random_range(0.0..=1.0)))
    }

    /// Runs `call` until it succeeds, fails for good, or the budget is spent.
    pub async fn run<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, ForgeError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ForgeError>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(e) => match self.wait_after(attempt, &e) {
                    Some(wait) => {
                        tracing::debug!(error = %e, attempt, ?wait, "{what}: transient forge fault, retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }
}

/// A forge whose idempotent calls are retried on transient faults.
pub struct RetryingForge {
    inner: Arc<dyn Forge>,
    backoff: Backoff,
}

impl RetryingForge {
    pub fn new(inner: Arc<dyn Forge>, backoff: Backoff) -> Self {
        Self { inner, backoff }
    }
}

#[async_trait]
impl Forge for RetryingForge {
    async fn git_token(&self) -> Result<Option<SecretString>, ForgeError> {
        self.backoff.run("git token", || self.inner.git_token()).await
    }

    async fn permission(&self, repo: &RepoRef, user: &str) -> Result<Permission, ForgeError> {
        self.backoff.run("permission", || self.inner.permission(repo, user)).await
    }

    /// Both forges answer 200 for a reaction that is already there.
    async fn react(&self, repo: &RepoRef, target: ReactionTarget, reaction: Reaction) -> Result<Reacted, ForgeError> {
        self.backoff.run("reaction", || self.inner.react(repo, target, reaction)).await
    }

    /// Taking back a reaction twice takes it back once.
    async fn unreact(&self, repo: &RepoRef, target: ReactionTarget, reacted: Reacted) -> Result<(), ForgeError> {
        self.backoff.run("reaction", || self.inner.unreact(repo, target, reacted)).await
    }

    /// An edit sets the whole text: sending it twice leaves it the same.
    async fn edit_comment(&self, repo: &RepoRef, id: u64, body: &str) -> Result<(), ForgeError> {
        self.backoff.run("comment edit", || self.inner.edit_comment(repo, id, body)).await
    }

    async fn post_comment(&self, issue: &IssueRef, body: &str) -> Result<u64, ForgeError> {
        self.inner.post_comment(issue, body).await
    }

    async fn comments(&self, issue: &IssueRef) -> Result<Vec<ForgeComment>, ForgeError> {
        self.backoff.run("comments", || self.inner.comments(issue)).await
    }

    async fn comment(&self, repo: &RepoRef, id: u64) -> Result<ForgeComment, ForgeError> {
        self.backoff.run("comment", || self.inner.comment(repo, id)).await
    }

    async fn comments_since(
        &self,
        repo: &RepoRef,
        since: &str,
        etag: Option<&str>,
    ) -> Result<Listed<ForgeComment>, ForgeError> {
        self.backoff.run("recent comments", || self.inner.comments_since(repo, since, etag)).await
    }

    async fn issue(&self, issue: &IssueRef) -> Result<IssueFacts, ForgeError> {
        self.backoff.run("issue", || self.inner.issue(issue)).await
    }

    async fn labeled_since(
        &self,
        repo: &RepoRef,
        label: &str,
        since: &str,
        etag: Option<&str>,
    ) -> Result<Listed<(u64, IssueFacts)>, ForgeError> {
        self.backoff.run("labeled issues", || self.inner.labeled_since(repo, label, since, etag)).await
    }

    async fn label_added_by(&self, issue: &IssueRef, label: &str) -> Result<Option<LabelAddition>, ForgeError> {
        self.backoff.run("label events", || self.inner.label_added_by(issue, label)).await
    }

    /// Retried: a create that took effect before its answer was lost is refused
    /// the second time (both forges allow one open pull request per head and
    /// base), and the caller then finds the first.
    async fn open_pull_request(&self, repo: &RepoRef, new: &NewPullRequest<'_>) -> Result<PullRequest, ForgeError> {
        self.backoff.run("pull request creation", || self.inner.open_pull_request(repo, new)).await
    }

    async fn pull_request(&self, repo: &RepoRef, number: u64) -> Result<PullRequest, ForgeError> {
        self.backoff.run("pull request", || self.inner.pull_request(repo, number)).await
    }

    async fn find_pull_request(
        &self,
        repo: &RepoRef,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        self.backoff.run("pull request lookup", || self.inner.find_pull_request(repo, head, base)).await
    }

    async fn review(
        &self,
        repo: &RepoRef,
        pull: u64,
        id: Option<u64>,
        author: &str,
        text: &str,
    ) -> Result<Option<Review>, ForgeError> {
        self.backoff.run("review", || self.inner.review(repo, pull, id, author, text)).await
    }

    /// Not retried, as comments are not: the worker looks for its marker first.
    async fn reply_in_thread(
        &self,
        repo: &RepoRef,
        pull: u64,
        comment: u64,
        body: &str,
    ) -> Result<Option<u64>, ForgeError> {
        self.inner.reply_in_thread(repo, pull, comment, body).await
    }

    async fn thread_comments(&self, repo: &RepoRef, pull: u64) -> Result<Vec<ForgeComment>, ForgeError> {
        self.backoff.run("review comments", || self.inner.thread_comments(repo, pull)).await
    }

    async fn failed_checks(&self, repo: &RepoRef, sha: &str) -> Result<Vec<FailedCheck>, ForgeError> {
        self.backoff.run("commit checks", || self.inner.failed_checks(repo, sha)).await
    }

    async fn current_user(&self) -> Result<String, ForgeError> {
        self.backoff.run("current user", || self.inner.current_user()).await
    }

    async fn hook_deliveries(&self, target: &HookTarget, id: u64) -> Result<Option<Vec<HookDelivery>>, ForgeError> {
        self.backoff.run("hook deliveries", || self.inner.hook_deliveries(target, id)).await
    }

    fn api_stats(&self) -> Option<&ApiStats> {
        self.inner.api_stats()
    }

    async fn hooks(&self, target: &HookTarget) -> Result<Vec<InstalledHook>, ForgeError> {
        self.backoff.run("hooks", || self.inner.hooks(target)).await
    }

    /// Not retried: a create that took effect before its answer was lost would
    /// make a second hook.
    async fn create_hook(&self, target: &HookTarget, spec: &HookSpec) -> Result<InstalledHook, ForgeError> {
        self.inner.create_hook(target, spec).await
    }

    async fn update_hook(&self, target: &HookTarget, id: u64, spec: &HookSpec) -> Result<InstalledHook, ForgeError> {
        self.backoff.run("hook update", || self.inner.update_hook(target, id, spec)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fast() -> Backoff {
        Backoff { attempts: 3, base: Duration::from_millis(1) }
    }

    #[tokio::test]
    async fn transient_faults_are_retried_within_the_budget() {
        let calls = AtomicU32::new(0);
        let result = fast()
            .run("t", || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(ForgeError::transient("502")),
                    _ => Ok(7),
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast()
            .run("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ForgeError::transient("500"))
            })
            .await;
        assert!(result.unwrap_err().is_transient());
        assert_eq!(calls.load(Ordering::SeqCst), 3, "the budget is three attempts");
    }

    #[tokio::test]
    async fn lasting_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast()
            .run("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ForgeError::NotFound)
            })
            .await;
        assert!(matches!(result, Err(ForgeError::NotFound)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn retry_after_is_honoured_and_a_long_one_ends_the_attempts() {
        let b = Backoff { attempts: 5, base: Duration::from_secs(1) };
        let asked = ForgeError::transient("429").with_retry_after(Some(Duration::from_secs(3)));
        assert_eq!(b.wait_after(0, &asked), Some(Duration::from_secs(3)));
        let too_long = ForgeError::transient("429").with_retry_after(Some(Duration::from_secs(3600)));
        assert_eq!(b.wait_after(0, &too_long), None);
        for attempt in 0..4 {
            let wait = b.wait_after(attempt, &ForgeError::transient("500")).unwrap();
            assert!(wait <= Duration::from_secs(1 << attempt), "{attempt}: {wait:?}");
        }
        assert_eq!(b.wait_after(4, &ForgeError::transient("500")), None);
    }
}
