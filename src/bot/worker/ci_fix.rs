//! CI repair: a failed check on the head kugetsu pushed continues that issue's
//! session, within the repository's `ci_fix.max_attempts`, until a person asks
//! again. A `kugetsu:no-ci-fix` label, or `@kugetsu stop`, ends it.

use super::{Outcome, Worker};
use crate::comment;
use crate::forge::Forge;
use crate::queue::{Job, JobTrigger};

/// On the issue or its pull request, this label turns CI repair off.
pub const NO_CI_FIX_LABEL: &str = "kugetsu:no-ci-fix";

impl Worker {
    /// The repair job, with the failures the forge confirms, when one is due;
    /// otherwise what to do instead. No permission is asked: the commit is
    /// kugetsu's own, pushed for a request a person made.
    pub(super) async fn admit_repair(&self, forge: &dyn Forge, id: i64, mut job: Job) -> Result<Job, Outcome> {
        let JobTrigger::CiFix { sha, .. } = &job.trigger else { return Ok(job) };
        let sha = sha.clone();
        let repo = job.issue.repo().clone();
        let Some(settings) = self.config.instance(repo.instance()).and_then(|i| i.ci_fix_in(repo.owner(), repo.name()))
        else {
            tracing::info!(%sha, "CI failed on kugetsu's branch; repairs are off in this repository");
            return Err(Outcome::Done);
        };
        // A failure on a commit kugetsu has since pushed past needs nothing.
        let head = self.engine.issue_record(&job.issue).await.ok().flatten().and_then(|r| r.last_pushed_sha);
        if head.as_deref().map(str::to_ascii_lowercase) != Some(sha.clone()) {
            return Err(Outcome::Done);
        }
        for place in [job.place(), job.issue.clone()] {
            let facts = match forge.issue(&place).await {
                Ok(facts) => facts,
                Err(e) if e.is_transient() => return Err(Outcome::Retry(format!("reading the labels: {e}"))),
                Err(e) => return Err(Outcome::Failed(format!("reading the labels: {e}"))),
            };
            if facts.labels.iter().any(|l| l.eq_ignore_ascii_case(NO_CI_FIX_LABEL)) {
                tracing::info!(%place, "CI repair is off here: the {NO_CI_FIX_LABEL} label");
                return Err(Outcome::Done);
            }
            // The issue as the forge has it, for the prompt and the pull request,
            // as a person's request carries it.
            if place == job.issue {
                crate::bot::verify::adopt_issue(&mut job, facts);
            }
        }
        let history = match self.queue.ci_fix_history(&job.issue, id).await {
            Ok(history) => history,
            Err(e) => return Err(Outcome::Failed(format!("cannot count CI repairs: {e:#}"))),
        };
        if history.stopped || history.attempts > settings.max_attempts {
            return Err(Outcome::Done);
        }
        let checks = match forge.failed_checks(&repo, &sha).await {
            Ok(checks) if checks.is_empty() => {
                return Err(Outcome::Failed(format!("not confirmed by the forge: nothing failed on {sha}")));
            }
            Ok(checks) => checks,
            Err(e) if e.is_transient() => return Err(Outcome::Retry(format!("reading the checks: {e}"))),
            Err(e) => return Err(Outcome::Failed(format!("reading the checks: {e}"))),
        };
        // One repair per commit, however many of its checks fail: the first
        // failure admitted takes it, the others need nothing.
        match self.queue.claim_trigger(&format!("{}:ci:{sha}", job.issue), id).await {
            Ok(true) => {}
            Ok(false) => return Err(Outcome::Done),
            Err(e) => return Err(Outcome::Failed(format!("cannot record a handled trigger: {e:#}"))),
        }
        // Counted from here: a repair, or the one notice that there are no more.
        if let Err(e) = self.queue.mark_authorized(id).await {
            tracing::error!(error = %format!("{e:#}"), "cannot record a CI repair");
        }
        if history.attempts == settings.max_attempts {
            let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
            let body = comment::ci_fix_exhausted_comment(settings.max_attempts, &names, id);
            return Err(self.post_once(forge, &job.place(), id, &body).await);
        }
        job.trigger = JobTrigger::CiFix { sha, checks: within_prompt_size(checks) };
        Ok(job)
    }
}

/// The most failed checks, and of each one's report, a prompt carries: CI
/// output can be long, and whoever ran the check wrote it.
const MAX_CHECKS: usize = 20;
const MAX_REPORT_CHARS: usize = 4_000;

fn within_prompt_size(checks: Vec<crate::forge::FailedCheck>) -> Vec<crate::forge::FailedCheck> {
    checks
        .into_iter()
        .take(MAX_CHECKS)
        .map(|mut c| {
            if c.summary.chars().count() > MAX_REPORT_CHARS {
                c.summary = c.summary.chars().take(MAX_REPORT_CHARS).collect::<String>() + "\n[…cut]";
            }
            c
        })
        .collect()
}
