//! The issue's pull request: opened once its branch has commits, found again
//! on later runs, and never reopened once a person closed it.

use crate::comment;
use crate::config::PullRequestMode;
use crate::forge::{Forge, ForgeError, NewPullRequest, PullRequest, PullState};
use crate::queue::{Job, Queue};
use crate::result::{PullRequestNote, RunResult};
use crate::store::{PullRequestRecord, now_millis};

/// What a finished run needs to settle the issue's pull request.
pub struct AfterRun<'a> {
    pub forge: &'a dyn Forge,
    pub queue: &'a Queue,
    pub mode: PullRequestMode,
    pub job: &'a Job,
    pub result: &'a RunResult,
    /// The branch the pull request merges into.
    pub base: &'a str,
    pub compare_url: Option<String>,
}

impl AfterRun<'_> {
    /// Opens the issue's pull request if it has none and this run pushed commits;
    /// otherwise says what became of the one it has.
    pub async fn settle(self) -> PullRequestNote {
        // A pull request someone else opened is worked on as its own issue.
        if self.job.is_pull_request && self.job.on_pull_request.is_none() {
            return PullRequestNote::Compare(self.compare_url);
        }
        let repo = self.job.issue.repo();
        let known = match self.queue.pull_request_of(&self.job.issue).await {
            Ok(known) => known,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read the issue's pull request");
                None
            }
        };
        if let Some(record) = known {
            match self.forge.pull_request(repo, record.number).await {
                Ok(pull) if pull.state == PullState::Merged && !self.result.commits.is_empty() => {}
                Ok(pull) => return note_for(pull),
                // Deleted (Gitea lets admins): a new one may be opened.
                Err(ForgeError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the issue's pull request; linking it as it was");
                    return PullRequestNote::Open { number: record.number, url: record.html_url };
                }
            }
        }
        // A pull request is for commits: GitHub refuses one without, and a run
        // that only answered a question leaves nothing to review.
        let pushed_commits = self.result.pushed_to.is_some() && !self.result.commits.is_empty();
        if self.mode == PullRequestMode::Off || !pushed_commits {
            return PullRequestNote::Compare(self.compare_url);
        }
        self.open().await
    }

    async fn open(self) -> PullRequestNote {
        let repo = self.job.issue.repo();
        let body = comment::pull_request_body(self.job.issue.number(), self.result);
        let new = NewPullRequest {
            title: &self.job.title,
            body: &body,
            head: &self.result.branch,
            base: self.base,
            draft: self.mode == PullRequestMode::Draft,
        };
        let (pull, opened) = match self.forge.open_pull_request(repo, &new).await {
            Ok(pull) => (pull, true),
            // Both forges refuse a second open pull request for one head and base
            // (GitHub 422, Gitea 409): one opened before a crash, or by a person.
            Err(refused) => match self.forge.find_pull_request(repo, &self.result.branch, self.base).await {
                Ok(Some(found)) if found.state != PullState::Merged => (found, false),
                _ => {
                    tracing::warn!(error = %refused, "could not open a pull request");
                    return PullRequestNote::NotOpened { why: refused.to_string(), compare: self.compare_url };
                }
            },
        };
        let record = PullRequestRecord {
            issue: self.job.issue.clone(),
            number: pull.number,
            html_url: pull.html_url.clone(),
            created_at: now_millis(),
        };
        if let Err(e) = self.queue.save_pull_request(&record).await {
            tracing::error!(error = %format!("{e:#}"), "cannot record the issue's pull request");
        }
        if opened {
            tracing::info!(number = pull.number, issue = %self.job.issue, "opened a pull request");
            PullRequestNote::Opened { number: pull.number, url: pull.html_url }
        } else {
            note_for(pull)
        }
    }
}

fn note_for(pull: PullRequest) -> PullRequestNote {
    let (number, url) = (pull.number, pull.html_url);
    match pull.state {
        PullState::Open => PullRequestNote::Open { number, url },
        PullState::Closed => PullRequestNote::Closed { number, url },
        PullState::Merged => PullRequestNote::Merged { number, url },
    }
}
