//! Takes jobs off the queue, one per issue at a time and at most
//! `limits.concurrency` at once, and turns each into a run and a comment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::{AbortHandle, JoinSet};

mod admit;
mod ask;
mod attachments;
mod budget;
mod ci_fix;
mod join;
mod replica;
mod review;
mod slot;

use super::progress::{RunFeedback, Showing};
use super::prompt;
use super::pull_request::AfterRun;
use crate::budget::Spend;
use crate::comment;
use crate::config::Config;
use crate::crash;
use crate::engine::{Engine, EngineError, RunOptions};
use crate::forge::{Backoff, Forge, PermissionCache, branch_url, compare_url};
use crate::issue_ref::{InstanceName, IssueRef};
use crate::metrics::{Metrics, RunOutcome};
use crate::queue::{Job, JobTrigger, Queue, QueuedJob};
use crate::result::{Ending, PullRequestNote, RunResult};
use crate::stage::{self, Stage};
use crate::store::{Fence, now_millis};
use crate::trigger::Control;

/// How often the queue is looked at even without a wake-up.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How often runs are checked for a `stop` said on another replica, or a takeover.
const ELSEWHERE_LOOK: Duration = Duration::from_secs(1);
/// Control jobs answered at once, beside the agent runs.
const CONTROL_SLOTS: usize = 2;
/// How long a job waits before it is retried when the disk is nearly full.
const DISK_RETRY: Duration = Duration::from_secs(60);
/// How long a job waits when another run holds its issue.
const BUSY_RETRY: Duration = Duration::from_secs(5);

/// The longest a job put back by forge faults waits before its next try.
const MAX_REQUEUE_DELAY: Duration = Duration::from_secs(30 * 60);

enum Outcome {
    Done,
    Failed(String),
    /// Put back in the queue for later; nothing more to record.
    Deferred,
    /// The forge failed in a way that may pass (or cannot decide yet): try the
    /// job again later, with a growing delay, until its deadline.
    Retry(String),
}

/// What a job has to say, and, for an agent run, how the run went.
struct Ran {
    body: String,
    /// Why the run failed, if it did.
    failure: Option<String>,
    feedback: Option<RunFeedback>,
    /// The follow-ups the run took in; their jobs end with its answer.
    took_in: Vec<join::TakenIn>,
}

impl Ran {
    /// An answer with no run behind it.
    fn said(body: String) -> Self {
        Self { body, failure: None, feedback: None, took_in: Vec::new() }
    }
}

/// A posted answer to a failed run: the comment says why, and the job's record
/// does too, for the status page.
fn failed_if(posted: Outcome, run_error: Option<String>) -> Outcome {
    match (posted, run_error) {
        (Outcome::Done, Some(why)) => Outcome::Failed(format!("the run failed: {why}")),
        (posted, _) => posted,
    }
}

#[derive(Clone)]
pub struct Worker {
    engine: Arc<Engine>,
    queue: Queue,
    forges: Arc<HashMap<InstanceName, Arc<dyn Forge>>>,
    config: Arc<Config>,
    permissions: Arc<PermissionCache>,
    metrics: Arc<Metrics>,
    /// The work job running on each issue, so `@kugetsu stop` can cancel it.
    running: Arc<Mutex<HashMap<IssueRef, (i64, AbortHandle)>>>,
    /// The runs that take follow-ups now, by issue.
    joining: Arc<Mutex<HashMap<IssueRef, Arc<join::Joining>>>>,
    /// Agent runs' slots (`limits.concurrency`); a run waiting for a person gives its slot back.
    work_slots: Arc<Semaphore>,
    /// Told when a person answered a waiting run's question.
    answered: Arc<Notify>,
    /// Runs waiting for a person's answer now.
    waiting_runs: Arc<std::sync::atomic::AtomicUsize>,
}

impl Worker {
    pub fn new(
        engine: Arc<Engine>,
        queue: Queue,
        forges: Arc<HashMap<InstanceName, Arc<dyn Forge>>>,
        config: Arc<Config>,
        permissions: Arc<PermissionCache>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let work_slots = Arc::new(Semaphore::new(config.limits.concurrency));
        Self {
            engine,
            queue,
            forges,
            config,
            permissions,
            metrics,
            running: Arc::default(),
            joining: Arc::default(),
            work_slots,
            answered: Arc::default(),
            waiting_runs: Arc::default(),
        }
    }

    /// Works until `stopped` turns true, then abandons runs in progress: their
    /// jobs stay marked running and are taken up again after a restart.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        // Agent runs are capped by `limits.concurrency`; control jobs (stop,
        // status…) have slots of their own, so they are answered while runs go on.
        let control_slots = Arc::new(Semaphore::new(CONTROL_SLOTS));
        let mut tasks = JoinSet::new();
        let mut looked_elsewhere = std::time::Instant::now();
        while !*stopped.borrow() {
            for (lane, slots) in [("work", &self.work_slots), ("control", &control_slots)] {
                // Slots first, then as many jobs: a waiting run taking its slot
                // back meanwhile never leaves a claimed job without one.
                let mut free: Vec<_> = std::iter::from_fn(|| slots.clone().try_acquire_owned().ok()).collect();
                let jobs = match self.queue.claim(lane, free.len()).await {
                    Ok(jobs) => jobs,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot read the job queue");
                        Vec::new()
                    }
                };
                for job in jobs {
                    // With SQLite this process is the only replica: there is nothing to fence off.
                    let fence = match lane == "work" && self.config.database_url.is_some() {
                        true => match self.take_issue(job.id, &job.job.issue).await {
                            Some(fence) => Some(fence),
                            None => continue,
                        },
                        false => None,
                    };
                    let Some(permit) = free.pop() else {
                        // Never left marked running with nobody to run it.
                        self.defer(job.id, Duration::ZERO, "waits for a free worker").await;
                        continue;
                    };
                    let slot = slot::WorkSlot::new(slots.clone(), permit);
                    let (id, issue) = (job.id, job.job.issue.clone());
                    let key = issue.clone();
                    let worker = self.clone();
                    let refill = lane == "work";
                    let handle = tasks.spawn(async move {
                        let (attempts, created_at) = (job.attempts, job.created_at);
                        let outcome = worker.process(job, &slot, fence).await;
                        worker.record(id, attempts, created_at, outcome).await;
                        if let Ok(mut running) = worker.running.lock()
                            && running.get(&issue).is_some_and(|(running_id, _)| *running_id == id)
                        {
                            running.remove(&issue);
                        }
                        drop(slot);
                        // After the comment, so the run never shares the machine with it.
                        if refill {
                            worker.engine.fill_pool(issue.repo()).await;
                        }
                    });
                    if lane == "work"
                        && let Ok(mut running) = self.running.lock()
                    {
                        running.insert(key, (id, handle));
                    }
                }
            }
            // Not at every wake-up: under a burst of deliveries that is a read per delivery.
            if looked_elsewhere.elapsed() >= ELSEWHERE_LOOK {
                looked_elsewhere = std::time::Instant::now();
                self.end_runs_taken_away().await;
            }
            for follow_up in self.claim_follow_ups().await {
                let worker = self.clone();
                tasks.spawn(async move { worker.join(follow_up).await });
            }
            tokio::select! {
                _ = self.queue.changed() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = stopped.changed() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.shutdown().await;
    }

    fn backoff(&self) -> Backoff {
        Backoff { attempts: self.config.bot.api_attempts, base: self.config.bot.api_backoff }
    }

    /// Whether a job that keeps meeting forge faults has run out of time.
    fn past_deadline(&self, created_at: i64) -> bool {
        let deadline = i64::try_from(self.config.bot.retry_deadline.as_millis()).unwrap_or(i64::MAX);
        now_millis().saturating_sub(created_at) > deadline
    }

    async fn record(&self, id: i64, attempts: u32, created_at: i64, outcome: Outcome) {
        let result = match outcome {
            Outcome::Done => Ok(()),
            Outcome::Failed(e) => Err(e),
            Outcome::Deferred => return,
            Outcome::Retry(why) if self.past_deadline(created_at) => Err(why),
            Outcome::Retry(why) => {
                // crates.io's worker does the same: each failure waits twice as long.
                let wait = self.config.bot.requeue_delay.saturating_mul(1 << attempts.min(16)).min(MAX_REQUEUE_DELAY);
                tracing::warn!(job = id, %why, ?wait, "putting the job back after a forge fault");
                let retry_at = now_millis().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                if let Err(e) = self.queue.retry_later(id, retry_at, &why).await {
                    tracing::error!(error = %format!("{e:#}"), "cannot put a job back");
                }
                return;
            }
        };
        crash::point("before-finish");
        // A job that ends takes no more answers, whatever ended it.
        if self.queue.any_waits() {
            self.end_wait(id).await;
        }
        if let Err(e) = self.queue.finish(id, result).await {
            tracing::error!(job = id, error = %format!("{e:#}"), "cannot record a finished job");
        }
    }

    #[tracing::instrument(skip_all, fields(job = queued.id, issue = %queued.job.issue, delivery = %queued.job.delivery_id))]
    async fn process(&self, queued: QueuedJob, slot: &slot::WorkSlot, fence: Option<Fence>) -> Outcome {
        crash::point("after-claim");
        let QueuedJob { id, job, outcome, run_error, attempts, created_at } = queued;
        stage::reached(&job.issue, Stage::Claimed);
        // A job put back waited on purpose; only a first claim measures the queue.
        if attempts == 0 && outcome.is_none() {
            let waited = u64::try_from(now_millis().saturating_sub(created_at)).unwrap_or(0);
            self.metrics.job_claimed(Duration::from_millis(waited));
        }
        let Some(forge) = self.forges.get(job.issue.repo().instance()).cloned() else {
            return Outcome::Failed("the instance is no longer configured".into());
        };
        // A run that finished before a crash or a forge fault: post its comment,
        // never run the agent again.
        if let Some(body) = outcome {
            if self.lease_lost(fence.as_ref()).await {
                self.defer(id, BUSY_RETRY, "the issue's lease could not be confirmed").await;
                return Outcome::Deferred;
            }
            let posted = self.answer(forge.as_ref(), &job, id, &body).await;
            if matches!(posted, Outcome::Done) {
                let ending = if run_error.is_some() { Ending::Failed } else { Ending::Succeeded };
                self.fold_left_progress(forge.as_ref(), &job, id, created_at, ending).await;
            }
            return failed_if(posted, run_error);
        }
        // An answer ends in silence whatever happens: it was no request.
        if let JobTrigger::Answer { job: asker, asked_at } = job.trigger {
            return self.take_answer(forge.as_ref(), id, job, asker, asked_at).await;
        }
        if attempts > 0 && self.past_deadline(created_at) {
            // A repair nobody asked for just now ends without a word.
            if matches!(job.trigger, JobTrigger::CiFix { .. }) {
                return Outcome::Failed("gave up: the forge kept failing".into());
            }
            return self.give_up(forge.as_ref(), job, id, created_at).await;
        }
        let admitted = match job.trigger {
            JobTrigger::CiFix { .. } => self.admit_repair(forge.as_ref(), id, job).await,
            _ => self.admit(forge.as_ref(), id, job).await,
        };
        let job = match admitted {
            Ok(job) => job,
            Err(outcome) => return outcome,
        };
        stage::reached(&job.issue, Stage::Admitted);
        let Ran { body, failure, feedback, took_in } = match &job.trigger {
            JobTrigger::Mention | JobTrigger::Label { .. } | JobTrigger::Review | JobTrigger::CiFix { .. } => {
                match self.run_agent(&forge, id, &job, slot, fence.clone()).await {
                    Some(ran) => ran,
                    None => return Outcome::Deferred,
                }
            }
            JobTrigger::Control { command } => Ran::said(self.control(*command, id, &job).await),
            JobTrigger::Refused { reason } => Ran::said(comment::refused_comment(reason, id)),
            // Taken before admission, above.
            JobTrigger::Answer { .. } => return Outcome::Done,
        };
        // Saved before posting: after a crash the comment is posted, the agent not rerun.
        if let Err(e) = self.queue.save_outcome(id, &body, failure.as_deref()).await {
            tracing::error!(error = %format!("{e:#}"), "cannot save a job's outcome");
        }
        self.follow_ups_answered(&took_in).await;
        crash::point("before-comment");
        // Just before posting: a replica paused past its lease leaves the comment
        // to the one that took over (or, if none did, posts the saved answer later).
        if self.lease_lost(fence.as_ref()).await {
            self.defer(id, BUSY_RETRY, "the issue's lease could not be confirmed").await;
            if let Some(feedback) = feedback {
                feedback.leave();
            }
            return Outcome::Deferred;
        }
        let posted = self.answer(forge.as_ref(), &job, id, &body).await;
        stage::reached(&job.issue, Stage::Commented);
        if let Some(feedback) = feedback {
            match posted {
                Outcome::Done => feedback.finish(if failure.is_some() { Ending::Failed } else { Ending::Succeeded }),
                _ => feedback.leave(),
            }
        }
        failed_if(posted, failure)
    }

    /// Folds the progress comment of a run whose answer was posted from what it saved.
    async fn fold_left_progress(&self, forge: &dyn Forge, job: &Job, id: i64, created_at: i64, ending: Ending) {
        let bot = self.config.instance(job.issue.repo().instance()).map(|i| i.bot_login.clone()).unwrap_or_default();
        let elapsed = Duration::from_millis(u64::try_from(now_millis().saturating_sub(created_at)).unwrap_or(0));
        super::progress::fold_left(forge, &job.place(), &bot, id, elapsed, ending).await;
    }

    /// Reacts to the trigger, and follows the run's progress from there.
    fn show_progress(&self, forge: &Arc<dyn Forge>, id: i64, job: &Job) -> RunFeedback {
        let target = job.reaction_target();
        let instance = self.config.instance(job.issue.repo().instance());
        let branch = self.engine.branch_for(&job.issue);
        let branch_url = instance.map(|i| branch_url(i.kind, &i.web_url, job.issue.repo(), &branch));
        RunFeedback::start(Showing {
            forge: forge.clone(),
            place: job.place(),
            target,
            job_id: id,
            mode: self.config.bot.progress,
            interval: self.config.bot.progress_interval,
            bot_login: instance.map(|i| i.bot_login.clone()).unwrap_or_default(),
            branch,
            branch_url,
        })
    }

    /// Runs the agent and returns the comment to post, and why the run failed if
    /// it did; `None` when the job was deferred, for lack of disk space or
    /// because another run holds the issue.
    async fn run_agent(
        &self,
        forge: &Arc<dyn Forge>,
        id: i64,
        job: &Job,
        slot: &slot::WorkSlot,
        fence: Option<Fence>,
    ) -> Option<Ran> {
        if self.engine.free_disk_mib().is_some_and(|free| free < self.config.limits.min_free_disk_mib) {
            tracing::warn!("deferring a job: the disk is nearly full");
            let already_said = forge
                .comments(&job.place())
                .await
                .map(|all| all.iter().any(|c| comment::is_deferral_for_job(&c.body, id)))
                .unwrap_or(false);
            if !already_said {
                let _ = forge.post_comment(&job.place(), &comment::deferred_comment(id)).await;
            }
            self.defer(id, DISK_RETRY, "the bot's disk is nearly full").await;
            self.metrics.run_finished(RunOutcome::Deferred, Duration::ZERO, None);
            return None;
        }
        let before = match self.budget_gate(&job.issue, id).await {
            Ok(spent) => spent,
            Err(refusal) => return Some(Ran::said(refusal)),
        };
        let feedback = self.show_progress(forge, id, job);
        let budget = self.watch_budget(&job.issue, id, before, feedback.events());
        let branch = self.engine.branch_for(&job.issue);
        let progress = feedback.events();
        let asking = ask::Asking { forge: forge.as_ref(), id, job, slot, progress: &progress };
        let (text, files, granted) = match self.answer_after_restart(&asking).await {
            Some((text, granted)) => (text, Vec::new(), granted),
            None => {
                let (files, note) = self.attachments(forge.as_ref(), job).await;
                (prompt::build(job, &branch) + note.as_deref().unwrap_or_default(), files, None)
            }
        };
        let started = std::time::Instant::now();
        let joining = self.open_to_follow_ups(&job.issue);
        let run = {
            // Dropped with this block: the budget's count ends with the run's events.
            let opts = RunOptions {
                debug: false,
                progress: Some(budget.events()),
                stop: Some(budget.stop()),
                files,
                door: Some(joining.door.clone()),
                asks: None,
                fence,
            };
            let mut run = self.run_with_questions(asking, &text, opts.clone(), granted).await;
            if let Err(EngineError::Interrupted(why)) = &run {
                // opencode was killed or crashed under the agent: one more try, in the
                // same session, telling the agent what happened. A second death fails.
                tracing::warn!(%why, "opencode died during the run; retrying once in the same session");
                let again = prompt::after_interruption(&text);
                run = self.run_with_questions(asking, &again, opts, None).await;
            }
            run
        };
        let took_in = self.close_to_follow_ups(&job.issue, &joining).await;
        let (by_events, reached) = budget.finish().await;
        let outcome = match &run {
            Ok(_) => RunOutcome::Succeeded,
            Err(EngineError::Busy(_)) => RunOutcome::Deferred,
            Err(_) => RunOutcome::Failed,
        };
        let used = run.as_ref().ok().map(|r| (&r.tokens, r.cost));
        self.metrics.run_finished(outcome, started.elapsed(), used);
        if let Err(EngineError::LeaseLost(why)) = &run {
            // The job is the other replica's now, and its run answers; if nobody
            // took it after all (the lease could not be read), it runs again.
            tracing::warn!(%why, "ending a run whose issue another replica took over");
            self.defer(id, BUSY_RETRY, "the issue's lease could not be confirmed").await;
            self.follow_ups_wait(&took_in).await;
            feedback.leave();
            return None;
        }
        if let Err(EngineError::Busy(why)) = &run {
            // Another run (a CLI one) holds the issue: wait for it rather than fail.
            tracing::info!(%why, "deferring a job: the issue is busy");
            self.defer(id, BUSY_RETRY, "another run holds this issue").await;
            self.follow_ups_wait(&took_in).await;
            feedback.finish(Ending::Stopped);
            return None;
        }
        // The reply's counters, where there is one; a failed run's steps otherwise.
        let spend = match &run {
            Ok(r) => Spend::of(&r.tokens, r.cost).most(by_events),
            Err(_) => by_events,
        };
        let total = self.record_spend(&job.issue, id, spend).await;
        let ran = match (run, reached) {
            (Ok(result), _) => {
                let pull = self.settle_pull_request(forge.as_ref(), job, &result).await;
                let body = comment::result_comment(&result, &pull, total.as_deref(), id);
                Ran { body, failure: None, feedback: Some(feedback), took_in: Vec::new() }
            }
            (Err(e), Some(reached)) => {
                tracing::info!(%reached, "a budget stopped the run");
                let body = comment::budget_stopped_comment(&reached, &self.config.bot.handle, id);
                Ran { body, failure: Some(e.to_string()), feedback: Some(feedback), took_in: Vec::new() }
            }
            (Err(e), None) => {
                tracing::warn!(error = %e, "run failed");
                let body = comment::failure_comment(&e, id);
                Ran { body, failure: Some(e.to_string()), feedback: Some(feedback), took_in: Vec::new() }
            }
        };
        if took_in.is_empty() {
            return Some(ran);
        }
        let named: Vec<(String, Option<u64>)> = took_in.iter().map(|f| (f.author.clone(), f.comment)).collect();
        Some(Ran { body: comment::with_line(&ran.body, &comment::took_in_line(&named)), took_in, ..ran })
    }

    /// Opens the issue's pull request, or says what became of it.
    async fn settle_pull_request(&self, forge: &dyn Forge, job: &Job, result: &RunResult) -> PullRequestNote {
        let repo = job.issue.repo();
        let Some(instance) = self.config.instance(repo.instance()) else {
            return PullRequestNote::Compare(None);
        };
        let base = match &job.default_branch {
            Some(base) => base.clone(),
            None => self.engine.default_branch(repo).await.unwrap_or_else(|_| "main".to_owned()),
        };
        let compare = job.repo_html_url.as_deref().map(|url| compare_url(instance.kind, url, &base, &result.branch));
        let after = AfterRun {
            forge,
            queue: &self.queue,
            mode: instance.pull_requests_in(repo.owner(), repo.name()),
            job,
            result,
            base: &base,
            compare_url: compare,
        };
        after.settle().await
    }

    async fn defer(&self, id: i64, wait: Duration, why: &str) {
        let retry_at = now_millis().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        if let Err(e) = self.queue.defer(id, retry_at, why).await {
            tracing::error!(error = %format!("{e:#}"), "cannot defer a job");
        }
    }

    async fn control(&self, command: Control, id: i64, job: &Job) -> String {
        match command {
            Control::Help => comment::help_comment(&self.config.bot.handle, id),
            Control::Resume => match self.engine.store().resume_budgets(&job.issue, now_millis()).await {
                Ok(()) => comment::resumed_comment(id),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot record a resume");
                    comment::refused_comment("I could not record the resume; try again later.", id)
                }
            },
            Control::Status => {
                let record = self.engine.issue_record(&job.issue).await.ok().flatten();
                let queued = self.queue.waiting_for(&job.issue).await.unwrap_or(0);
                let waiting = self.queue.waiting_reasons(&job.issue).await.unwrap_or_default();
                let spending = self.spending(&job.issue).await;
                let status = comment::status_comment(record.as_ref(), queued, &waiting, &spending, id);
                match self.queue.open_wait(&job.issue).await.ok().flatten() {
                    Some(wait) => comment::with_line(&status, &comment::waiting_line(&wait.asked, wait.deadline)),
                    None => status,
                }
            }
            Control::Stop => {
                // Read first: once its job is stopped, a wait is no longer open.
                let open = self.queue.open_wait(&job.issue).await.ok().flatten();
                let running = self.running.lock().ok().and_then(|mut r| r.remove(&job.issue));
                let stopped = match running {
                    Some((running_id, handle)) => {
                        handle.abort();
                        let why = format!("stopped by @{}", job.author);
                        // Only a job still running counts: it may have just finished.
                        let stopped = self.queue.stop(running_id, &why).await.unwrap_or_else(|e| {
                            tracing::error!(error = %format!("{e:#}"), "cannot record a stopped job");
                            false
                        });
                        if stopped && let Err(e) = self.engine.stop(&job.issue, &why).await {
                            tracing::warn!(error = %e, "could not mark the stopped run");
                        }
                        self.stop_follow_ups(&job.issue, &why).await;
                        stopped
                    }
                    None => self.stop_elsewhere(job).await,
                };
                self.close_stopped_waits(job, open).await;
                comment::stopped_comment(stopped, id)
            }
            Control::Reset => {
                let had_session = matches!(self.engine.issue_record(&job.issue).await, Ok(Some(_)));
                if had_session && let Err(e) = self.engine.destroy(&job.issue).await {
                    return comment::failure_comment(&e, id);
                }
                comment::reset_comment(had_session, id)
            }
        }
    }

    /// Posts the job's comment unless an earlier attempt already did. The marker
    /// is looked for before every attempt, in the bot's own comments only: a POST
    /// the forge stored but answered with an error is not posted twice.
    async fn post_once(&self, forge: &dyn Forge, issue: &IssueRef, id: i64, body: &str) -> Outcome {
        let body = comment::within_limit(body);
        let bot = self.config.instance(issue.repo().instance()).map(|i| i.bot_login.as_str()).unwrap_or_default();
        let backoff = self.backoff();
        let mut attempt = 0;
        loop {
            let error = match forge.comments(issue).await {
                Ok(existing)
                    if existing
                        .iter()
                        .any(|c| c.author.eq_ignore_ascii_case(bot) && comment::is_comment_for_job(&c.body, id)) =>
                {
                    return Outcome::Done;
                }
                Ok(_) => match forge.post_comment(issue, &body).await {
                    Ok(_) => {
                        crash::point("after-comment");
                        return Outcome::Done;
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            match backoff.wait_after(attempt, &error) {
                Some(wait) => {
                    tracing::debug!(%error, attempt, "posting the comment met a forge fault; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None if error.is_transient() => return Outcome::Retry(format!("posting the comment: {error}")),
                None => return Outcome::Failed(format!("posting the comment failed: {error}")),
            }
        }
    }
}
