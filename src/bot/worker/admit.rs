//! Admission of a claimed job: the author's permission, the trigger confirmed
//! with the forge, and the limits that apply to people allowed to ask.
//!
//! The claimed author's permission is asked first, from the cache when it can
//! be: a stranger's mention costs at most one forge call and starts nothing.

use std::time::Duration;

use super::{Outcome, Worker};
use crate::bot::verify::{self, Checked};
use crate::comment;
use crate::forge::{Forge, ForgeError};
use crate::queue::{Job, JobTrigger};
use crate::store::{HOUR_MS, now_millis};
use crate::trigger::Control;

/// A permission answer, or why there is none yet.
pub(super) enum Decision {
    Allowed,
    Denied,
    /// The forge will not show permissions to the bot (Gitea and Forgejo need
    /// the bot to be a repository administrator).
    NeedsAdmin,
    Undecided(Outcome),
}

impl Worker {
    /// The job as the forge confirms it, when its author may ask for it now;
    /// otherwise what to do with it instead. Nothing is posted for a trigger the
    /// forge has not confirmed.
    pub(super) async fn admit(&self, forge: &dyn Forge, id: i64, job: Job) -> Result<Job, Outcome> {
        // Whether a review asks the bot at all comes first: a reader's review
        // that talks to people gets no refusal.
        let job = self.review_for_the_bot(forge, job).await?;
        match self.decide(forge, &job).await {
            Decision::Allowed => {}
            Decision::Denied => return Err(self.deny(forge, id, job).await),
            Decision::NeedsAdmin => return Err(self.wait_for_admin(forge, id, job).await),
            Decision::Undecided(outcome) => return Err(outcome),
        }
        let claimed = job.author.clone();
        let (job, key) = self.confirmed(forge, id, job).await?;
        if !job.author.eq_ignore_ascii_case(&claimed) {
            match self.decide(forge, &job).await {
                Decision::Allowed => {}
                Decision::Denied => return Err(self.deny_confirmed(forge, id, &job).await),
                Decision::NeedsAdmin => return Err(Outcome::Retry(comment::NEEDS_ADMIN.to_owned())),
                Decision::Undecided(outcome) => return Err(outcome),
            }
        }
        // A trigger the forge confirms is acted on once, whatever a replay changes
        // in the payload around it.
        match self.queue.claim_trigger(&key, id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = id, %key, delivery = job.delivery_id, "refused a replay of a handled trigger");
                return Err(Outcome::Failed(format!("a replay of a trigger already handled ({key})")));
            }
            Err(e) => return Err(Outcome::Failed(format!("cannot record a handled trigger: {e:#}"))),
        }
        if job.trigger == (JobTrigger::Control { command: Control::Stop }) {
            // Recorded as a person's word, which ends CI repairs (worker/ci_fix.rs).
            if let Err(e) = self.queue.mark_authorized(id).await {
                tracing::error!(error = %format!("{e:#}"), "cannot record an admitted stop");
            }
        }
        if !matches!(job.trigger, JobTrigger::Mention | JobTrigger::Label { .. } | JobTrigger::Review) {
            return Ok(job);
        }
        if let Some(reason) = self.over_hourly_limits(&job).await {
            let body = comment::refused_comment(&reason, id);
            return Err(self.post_once(forge, &job.place(), id, &body).await);
        }
        // Only runs that were let through count toward the limits.
        if let Err(e) = self.queue.mark_authorized(id).await {
            tracing::error!(error = %format!("{e:#}"), "cannot record an admitted job");
        }
        Ok(job)
    }

    /// The job as the forge has it, with the key that names its trigger.
    pub(super) async fn confirmed(&self, forge: &dyn Forge, id: i64, job: Job) -> Result<(Job, String), Outcome> {
        match verify::confirm(forge, &self.config.bot.handle, job).await {
            Checked::Confirmed { job, key } => Ok((*job, key)),
            Checked::Refuted(why) => {
                tracing::warn!(job = id, %why, "refused a delivery that the forge does not confirm");
                Err(Outcome::Failed(format!("not confirmed by the forge: {why}")))
            }
            Checked::Unknown(e) => Err(Outcome::Retry(format!("confirming the trigger with the forge: {e}"))),
        }
    }

    /// Ends a job that kept meeting forge faults. It says so once, if the forge
    /// lets it and confirms the trigger: a forged request, or one from someone
    /// the forge said may not ask, ends in silence.
    pub(super) async fn give_up(&self, forge: &dyn Forge, job: Job, id: i64, created_at: i64) -> Outcome {
        let tried_for = Duration::from_millis(u64::try_from(now_millis().saturating_sub(created_at)).unwrap_or(0));
        if let Checked::Confirmed { job, .. } = verify::confirm(forge, &self.config.bot.handle, job).await
            && !self.permissions.is_known_stranger(job.issue.repo(), &job.author)
        {
            let why = "the forge kept failing or refusing what I needed from it";
            let _ = self.post_once(forge, &job.place(), id, &comment::gave_up_comment(why, tried_for, id)).await;
        }
        Outcome::Failed(format!("gave up after {}", humantime::format_duration(tried_for)))
    }

    /// The forge will not show permissions to the bot: once the trigger is
    /// confirmed, say so once on the issue and wait. `status` answers with what
    /// waits, and nothing else, since its asker's permission is unknown.
    async fn wait_for_admin(&self, forge: &dyn Forge, id: i64, job: Job) -> Outcome {
        let (job, _) = match self.confirmed(forge, id, job).await {
            Ok(confirmed) => confirmed,
            Err(outcome) => return outcome,
        };
        self.notify_needs_admin(forge, &job).await;
        if job.trigger != (JobTrigger::Control { command: Control::Status }) {
            return Outcome::Retry(comment::NEEDS_ADMIN.to_owned());
        }
        let queued = self.queue.waiting_for(&job.issue).await.unwrap_or(0);
        let waiting = self.queue.waiting_reasons(&job.issue).await.unwrap_or_default();
        self.post_once(forge, &job.place(), id, &comment::waiting_status_comment(queued, &waiting, id)).await
    }

    /// Asks the forge (or the cache) whether the job's author may trigger runs here.
    pub(super) async fn decide(&self, forge: &dyn Forge, job: &Job) -> Decision {
        let repo = job.issue.repo();
        match self.permissions.permission(forge, repo, &job.author).await {
            Ok(p) if p.can_trigger() => Decision::Allowed,
            Ok(_) | Err(ForgeError::NotFound) => Decision::Denied,
            Err(ForgeError::Forbidden(message)) => {
                tracing::error!(
                    repo = %repo, %message,
                    "the forge refused to show collaborator permissions: on Gitea and Forgejo the bot \
                     account must be an administrator of the repository"
                );
                self.notify_needs_admin(forge, job).await;
                Decision::NeedsAdmin
            }
            Err(e) => Decision::Undecided(Outcome::Retry(format!("checking @{}'s permission: {e}", job.author))),
        }
    }

    /// Says once per issue why its triggers wait for the bot's role to be fixed.
    async fn notify_needs_admin(&self, forge: &dyn Forge, job: &Job) {
        let said =
            forge.comments(&job.place()).await.map(|all| all.iter().any(|c| comment::is_permission_notice(&c.body)));
        if let Ok(false) = said
            && let Err(e) = forge.post_comment(&job.place(), &comment::permission_notice(&job.author)).await
        {
            tracing::warn!(error = %e, "could not post the permission notice");
        }
    }

    /// Someone without write access: silence, or the configured reply at most
    /// once per issue and hour, and only to a trigger the forge confirms, so
    /// strangers and forged deliveries cannot make the bot talk.
    async fn deny(&self, forge: &dyn Forge, id: i64, job: Job) -> Outcome {
        if self.config.bot.deny_reply.is_none() {
            tracing::info!(user = job.author, "ignored a trigger from a user without write access");
            return Outcome::Done;
        }
        match self.queue.deny_reply_due(&job.issue, now_millis() - HOUR_MS).await {
            Ok(true) => {}
            Ok(false) => return Outcome::Done,
            Err(e) => return Outcome::Failed(format!("cannot read the deny replies: {e:#}")),
        }
        match self.confirmed(forge, id, job).await {
            Ok((job, _)) => self.deny_confirmed(forge, id, &job).await,
            Err(outcome) => outcome,
        }
    }

    /// The deny reply for a confirmed trigger, at most once per issue and hour.
    async fn deny_confirmed(&self, forge: &dyn Forge, id: i64, job: &Job) -> Outcome {
        tracing::info!(user = job.author, "ignored a trigger from a user without write access");
        let Some(text) = &self.config.bot.deny_reply else { return Outcome::Done };
        match self.queue.claim_deny_reply(&job.issue, now_millis() - HOUR_MS).await {
            Ok(true) => {
                let posted = self.post_once(forge, &job.place(), id, &comment::not_allowed_comment(text, id)).await;
                // Not said after all (a forge fault): the next try may say it.
                if !matches!(posted, Outcome::Done)
                    && let Err(e) = self.queue.release_deny_reply(&job.issue).await
                {
                    tracing::error!(error = %format!("{e:#}"), "cannot release a deny reply");
                }
                posted
            }
            Ok(false) => Outcome::Done,
            Err(e) => Outcome::Failed(format!("cannot record a deny reply: {e:#}")),
        }
    }

    /// Why an allowed request must still be refused: its author or repository
    /// asked for too many runs in the last hour. Only admitted runs count.
    async fn over_hourly_limits(&self, job: &Job) -> Option<String> {
        let limits = &self.config.limits;
        let since = now_millis() - HOUR_MS;
        let repo = job.issue.repo().to_string();
        let (by_author, by_repo) = match self.queue.recent_jobs(&job.author, &repo, since).await {
            Ok(counts) => counts,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot count recent runs; not limiting");
                return None;
            }
        };
        if by_author >= i64::from(limits.per_user_per_hour) {
            return Some(format!(
                "@{} asked for {by_author} runs in the last hour, the most allowed; please try again later.",
                job.author
            ));
        }
        (by_repo >= i64::from(limits.per_repo_per_hour)).then(|| {
            format!("This repository had {by_repo} runs in the last hour, the most allowed; please try again later.")
        })
    }
}
