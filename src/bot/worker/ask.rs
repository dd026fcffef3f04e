//! Questions through the thread (issue 11): what the agent asks a person is
//! posted on the issue, and its run waits, holding no agent slot, for the next
//! comment by a writer there, or for `bot.question_timeout`. The wait is stored,
//! so a run still waits after a restart.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::admit::Decision;
use super::prompt;
use super::slot::WorkSlot;
use super::{Outcome, Worker};
use crate::comment;
use crate::engine::{EngineError, Mode, RunOptions};
use crate::forge::{Forge, Reaction, ReactionTarget};
use crate::opencode::{AgentEvent, Ask};
use crate::question::{Asked, Reply};
use crate::queue::Job;
use crate::result::RunResult;
use crate::store::{Answer, Wait, now_millis};

/// How often a waiting run looks at its question without a wake-up.
const LOOK_AGAIN: Duration = Duration::from_secs(5);
/// The most questions one run posts. Waiting stops the run's clock, so an agent
/// steered to ask again and again would otherwise keep its run alive for ever,
/// a comment every `question_timeout`; past this, it is answered at once.
const MAX_QUESTIONS_PER_RUN: usize = 10;

/// The run that asks: where its questions go, and the slot it gives back while
/// it waits.
#[derive(Clone, Copy)]
pub(super) struct Asking<'a> {
    pub forge: &'a dyn Forge,
    pub id: i64,
    pub job: &'a Job,
    pub slot: &'a WorkSlot,
    /// The run's progress comment, told while it waits.
    pub progress: &'a mpsc::UnboundedSender<AgentEvent>,
}

/// Counts a run as waiting for a person until dropped.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// Runs waiting, this one included.
    now: usize,
}

impl<'a> Waiting<'a> {
    fn count(count: &'a AtomicUsize) -> Self {
        let now = count.fetch_add(1, Ordering::SeqCst) + 1;
        Self { count, now }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a wait ended.
pub(super) struct Answered {
    pub reply: Reply,
    /// Who answered; `None` when nobody did in time.
    pub author: Option<String>,
}

impl Worker {
    /// One attempt at the run, with its questions taken to the thread. A question
    /// still open when the attempt ends (a budget stopped it, opencode died) is
    /// closed, and the slot is held again whatever happened.
    pub(super) async fn run_with_questions(
        &self,
        asking: Asking<'_>,
        text: &str,
        mut opts: RunOptions,
        granted: Option<Asked>,
    ) -> Result<RunResult, EngineError> {
        let (asks, asked) = mpsc::unbounded_channel();
        opts.asks = Some(asks);
        let questions = self.answer_asks(&asking, asked, granted);
        let run = tokio::select! {
            run = self.engine.run(&asking.job.issue, text, Mode::Auto, opts) => run,
            () = questions => unreachable!("answering questions ends only with the run"),
        };
        let _ = asking.progress.send(AgentEvent::Waiting(None));
        // Another run held the issue, so this one never began: an answer given
        // before a restart is kept for its next try.
        let began = !matches!(run, Err(EngineError::Busy(_)));
        // No question on the issue since start-up: nothing to look at.
        let asked = self.queue.may_wait_on(&asking.job.issue);
        if began
            && asked
            && let Ok(Some(wait)) = self.engine.store().wait_of_job(asking.id).await
        {
            match wait.answer {
                // Answered, and the run ended before the answer reached it.
                Some(_) => self.end_wait(asking.id).await,
                None => self.close_wait(asking.forge, wait, "the run ended before an answer came").await,
            }
        }
        asking.slot.take_again().await;
        run
    }

    /// For a run that waited for a person when kugetsu stopped: it waits again,
    /// and its answer is the message to send, since opencode's pending request
    /// went with its server; with the permission it allows, if it does.
    pub(super) async fn answer_after_restart(&self, asking: &Asking<'_>) -> Option<(String, Option<Asked>)> {
        if !self.queue.may_wait_on(&asking.job.issue) {
            return None;
        }
        let wait = self.engine.store().wait_of_job(asking.id).await.unwrap_or_else(|e| {
            tracing::error!(error = %format!("{e:#}"), "cannot read whether the run waited for an answer");
            None
        })?;
        // An answer written in time while kugetsu was down comes by the
        // reconciler, after the start: the wait lasts until its next look.
        let grace = self.config.bot.reconcile_interval.saturating_add(LOOK_AGAIN);
        let at_least = now_millis().saturating_add(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
        let wait = Wait { deadline: wait.deadline.max(at_least), ..wait };
        let asked = wait.asked.clone();
        let answered = self.wait_in_thread(asking, wait).await;
        // A person's answer is kept until the run has it; nobody's is the same
        // after any restart.
        if answered.author.is_none() {
            self.end_wait(asking.id).await;
        }
        let text = prompt::answered_after_restart(&asked, &answered.reply, answered.author.as_deref());
        let granted = (answered.reply == Reply::Allow).then_some(asked);
        Some((text, granted))
    }

    /// Takes each of the attempt's questions to the thread and its answer back to
    /// the agent. `granted` is a permission a person allowed before a restart:
    /// asked again, it is allowed without asking. Never ends; it goes with the run.
    async fn answer_asks(
        &self,
        asking: &Asking<'_>,
        mut asks: mpsc::UnboundedReceiver<Ask>,
        mut granted: Option<Asked>,
    ) {
        let mut posted = 0;
        while let Some(Ask { asked, reply }) = asks.recv().await {
            if granted.as_ref() == Some(&asked) {
                granted = None;
                let _ = reply.send(Reply::Allow);
                continue;
            }
            if posted == MAX_QUESTIONS_PER_RUN {
                tracing::warn!(asked = %asked.summary(), "the run asked too many questions; answering without asking");
                let _ = reply.send(asked.unanswered());
                continue;
            }
            posted += 1;
            let now = now_millis();
            let timeout = i64::try_from(self.config.bot.question_timeout.as_millis()).unwrap_or(i64::MAX);
            let wait = Wait {
                job_id: asking.id,
                issue: asking.job.issue.clone(),
                asked,
                asked_at: now,
                deadline: now.saturating_add(timeout),
                comment_id: None,
                answer: None,
            };
            let answered = match self.queue.begin_wait(&wait).await {
                Ok(()) => self.wait_in_thread(asking, wait).await,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot record a question; the agent gets no answer");
                    Answered { reply: wait.asked.unanswered(), author: None }
                }
            };
            let _ = reply.send(answered.reply);
            // Only now: a restart before the answer reached opencode still finds it.
            self.end_wait(asking.id).await;
        }
        std::future::pending().await
    }

    /// A recorded wait, asked now or before a restart: posted once, then answered
    /// or timed out; the caller ends it once the answer is with the agent. The
    /// slot is free meanwhile.
    pub(super) async fn wait_in_thread(&self, asking: &Asking<'_>, wait: Wait) -> Answered {
        let waiting = Waiting::count(&self.waiting_runs);
        // Only a new question is turned away: one posted before a restart may hold an answer.
        if waiting.now > self.config.opencode.max_servers && wait.comment_id.is_none() {
            // Each waiting run keeps its opencode server; they are bounded like servers.
            tracing::warn!(asked = %wait.asked.summary(), "too many runs wait for answers; answering without asking");
            return Answered { reply: wait.asked.unanswered(), author: None };
        }
        let Some(comment_id) = self.post_question(asking.forge, asking.job, &wait).await else {
            // Nobody can see it, so nobody can answer it.
            return Answered { reply: wait.asked.unanswered(), author: None };
        };
        tracing::info!(job = wait.job_id, asked = %wait.asked.summary(), "the run waits for an answer in the thread");
        asking.slot.give_back();
        self.queue.nudge();
        let _ = asking.progress.send(AgentEvent::Waiting(Some(wait.asked.summary())));
        let answered = self.await_answer(&wait).await;
        let _ = asking.progress.send(AgentEvent::Waiting(None));
        drop(waiting);
        let line = comment::answered_line(answered.author.as_deref(), &answered.reply.said());
        self.close_question(asking.forge, &Wait { comment_id: Some(comment_id), ..wait }, &line).await;
        asking.slot.take_again().await;
        answered
    }

    /// Ends a wait that no answer will end (its run was stopped, or ended
    /// first), and says so under its question.
    pub(super) async fn close_wait(&self, forge: &dyn Forge, wait: Wait, why: &str) {
        self.end_wait(wait.job_id).await;
        self.close_question(forge, &wait, &comment::closed_line(why)).await;
    }

    /// `stop` ends the issue's waits, and closes its open question.
    pub(super) async fn close_stopped_waits(&self, job: &Job, open: Option<Wait>) {
        let forge = self.forges.get(job.issue.repo().instance());
        if let (Some(forge), Some(wait)) = (forge, open) {
            self.close_wait(forge.as_ref(), wait, &format!("the run was stopped by @{}", job.author)).await;
        }
        if let Err(e) = self.engine.store().end_waits_on(&job.issue).await {
            tracing::error!(error = %format!("{e:#}"), "cannot end a stopped run's waits");
        }
    }

    /// Adds the wait's last line to its question, if it was posted.
    async fn close_question(&self, forge: &dyn Forge, wait: &Wait, line: &str) {
        let Some(comment_id) = wait.comment_id else { return };
        let body = comment::question_comment(&wait.asked, self.config.bot.question_timeout, wait.job_id, wait.asked_at);
        if let Err(e) = forge.edit_comment(wait.issue.repo(), comment_id, &comment::with_line(&body, line)).await {
            tracing::warn!(error = %e, "could not close the question");
        }
    }

    /// The question's comment, posted unless it is there already (a restart
    /// between posting and recording it); `None` if it cannot be posted.
    async fn post_question(&self, forge: &dyn Forge, job: &Job, wait: &Wait) -> Option<u64> {
        if let Some(id) = wait.comment_id {
            return Some(id);
        }
        let place = job.place();
        let bot = self.config.instance(place.repo().instance()).map(|i| i.bot_login.clone()).unwrap_or_default();
        let posted = forge.comments(&place).await.ok().and_then(|all| {
            all.into_iter()
                .find(|c| {
                    c.author.eq_ignore_ascii_case(&bot)
                        && comment::is_question_for_job(&c.body, wait.job_id, wait.asked_at)
                })
                .map(|c| c.id)
        });
        let id = match posted {
            Some(id) => id,
            None => {
                let body = comment::question_comment(
                    &wait.asked,
                    self.config.bot.question_timeout,
                    wait.job_id,
                    wait.asked_at,
                );
                match forge.post_comment(&place, &body).await {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not post the agent's question; it goes unanswered");
                        return None;
                    }
                }
            }
        };
        if let Err(e) = self.engine.store().mark_wait_posted(wait.job_id, id).await {
            tracing::error!(error = %format!("{e:#}"), "cannot record a posted question");
        }
        Some(id)
    }

    /// The wait's answer once a writer gives one, or nobody's at its deadline.
    async fn await_answer(&self, wait: &Wait) -> Answered {
        let left = Duration::from_millis(u64::try_from(wait.deadline.saturating_sub(now_millis())).unwrap_or(0));
        let deadline = tokio::time::Instant::now() + left;
        let nobody = || Answered { reply: wait.asked.unanswered(), author: None };
        loop {
            let notified = self.answered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.engine.store().wait_of_job(wait.job_id).await {
                Ok(Some(Wait { answer: Some(answer), .. })) => {
                    let reply = wait.asked.reply_to(&answer.text, &self.config.bot.handle);
                    return Answered { reply, author: Some(answer.author) };
                }
                // Ended elsewhere (`stop`): the run is going anyway.
                Ok(None) => return nobody(),
                Ok(Some(_)) => {}
                Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot read a question's answer"),
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(LOOK_AGAIN) => {}
                () = tokio::time::sleep_until(deadline) => {
                    // The deadline and an answer at that moment: one of them wins, in the store.
                    match self.engine.store().expire_wait(wait.job_id, wait.asked_at).await {
                        Ok(false) => {}
                        Ok(true) => return nobody(),
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "cannot expire a question");
                            return nobody();
                        }
                    }
                }
            }
        }
    }

    pub(super) async fn end_wait(&self, job_id: i64) {
        if let Err(e) = self.engine.store().end_wait(job_id).await {
            tracing::error!(error = %format!("{e:#}"), "cannot end a question's wait");
        }
    }

    /// A comment while the issue's run waits: the answer, if a writer wrote it.
    /// Anyone else's is left alone, without a word.
    pub(super) async fn take_answer(&self, forge: &dyn Forge, id: i64, job: Job, asker: i64, asked_at: i64) -> Outcome {
        match self.decide(forge, &job).await {
            Decision::Allowed => {}
            Decision::Undecided(outcome) => return outcome,
            Decision::Denied | Decision::NeedsAdmin => {
                tracing::info!(user = job.author, "a comment by someone who may not answer the agent; ignored");
                return Outcome::Done;
            }
        }
        let (job, key) = match self.confirmed(forge, id, job).await {
            Ok(confirmed) => confirmed,
            Err(outcome) => return outcome,
        };
        // A key of its own: the comment may yet become a request (below).
        match self.queue.claim_trigger(&format!("answer:{key}"), id).await {
            Ok(true) => {}
            Ok(false) => return Outcome::Failed(format!("a replay of an answer already taken ({key})")),
            Err(e) => return Outcome::Failed(format!("cannot record a handled trigger: {e:#}")),
        }
        let Some(said) = job.comment.as_ref() else { return Outcome::Failed("an answer with no comment".into()) };
        let answer =
            Answer { text: said.body.clone(), author: job.author.clone(), comment_id: Some(said.id), at: now_millis() };
        match self.engine.store().answer_wait(asker, asked_at, &answer).await {
            Ok(true) => {
                tracing::info!(asker, user = job.author, "a writer answered the agent's question");
                self.answered.notify_waiters();
                let target = ReactionTarget::Comment(said.id);
                if let Err(e) = forge.react(job.issue.repo(), target, Reaction::Eyes).await {
                    tracing::debug!(error = %e, "could not react to an answer");
                }
                Outcome::Done
            }
            // Answered by someone else first, or the wait is over: a comment
            // like any, and a mention in it a request like any.
            Ok(false) if crate::trigger::mentions(&said.body, &self.config.bot.handle) => {
                let identity = format!("{}:comment:{}:not-an-answer", job.place(), said.id);
                let request = Job { trigger: crate::queue::JobTrigger::Mention, ..job.clone() };
                match self.queue.enqueue(job.issue.repo().instance().as_str(), Some(&identity), &request).await {
                    Ok(_) => Outcome::Done,
                    Err(e) => Outcome::Failed(format!("cannot queue a mention that answered nothing: {e:#}")),
                }
            }
            Ok(false) => Outcome::Done,
            Err(e) => Outcome::Failed(format!("cannot record an answer: {e:#}")),
        }
    }
}
