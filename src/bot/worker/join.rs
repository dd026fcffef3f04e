//! Follow-ups that join a running turn. A trusted mention on an issue whose run
//! is going on is handed to that run's session, which takes it in at its next
//! step (opencode queues a message sent to a busy session); the run's answer
//! names it. One that comes once the run no longer takes any runs after it.

use std::sync::{Arc, Mutex};

use super::{Outcome, Worker};
use crate::forge::Reaction;
use crate::issue_ref::IssueRef;
use crate::opencode::Door;
use crate::queue::QueuedJob;
use crate::store::now_millis;

/// A run open to follow-ups, and those it took in: their jobs, authors and comments.
#[derive(Default)]
pub(super) struct Joining {
    pub door: Arc<Door>,
    taken: Mutex<Vec<TakenIn>>,
}

/// A follow-up a run took in. Its job stays running until the run's answer is
/// saved, so a crash before then runs it again on its own.
#[derive(Debug, Clone)]
pub(super) struct TakenIn {
    pub job: i64,
    pub author: String,
    pub comment: Option<u64>,
}

impl Worker {
    /// Opens the issue's run to follow-ups; its door goes to the driver, which
    /// closes it once the turn's reply is in.
    pub(super) fn open_to_follow_ups(&self, issue: &IssueRef) -> Arc<Joining> {
        let joining = Arc::new(Joining::default());
        if let Ok(mut open) = self.joining.lock() {
            open.insert(issue.clone(), joining.clone());
        }
        joining
    }

    /// Closes the issue's run to follow-ups, and says which it took in.
    pub(super) async fn close_to_follow_ups(&self, issue: &IssueRef, joining: &Joining) -> Vec<TakenIn> {
        let _ = joining.door.close().await;
        if let Ok(mut open) = self.joining.lock() {
            open.remove(issue);
        }
        joining.taken.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Follow-ups waiting on issues whose runs take them, claimed.
    pub(super) async fn claim_follow_ups(&self) -> Vec<QueuedJob> {
        let issues: Vec<IssueRef> = self
            .joining
            .lock()
            .map(|o| o.iter().filter(|(_, j)| j.door.is_open()).map(|(issue, _)| issue.clone()).collect())
            .unwrap_or_default();
        let mut claimed = Vec::new();
        for issue in issues {
            match self.queue.claim_joiner(&issue).await {
                Ok(Some(job)) => claimed.push(job),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot read the job queue"),
            }
        }
        claimed
    }

    /// Admits one follow-up like any request, then hands it to its issue's
    /// running turn; if that turn no longer takes it, the job waits its turn.
    pub(super) async fn join(&self, queued: QueuedJob) {
        let QueuedJob { id, job, attempts, created_at, .. } = queued;
        let Some(forge) = self.forges.get(job.issue.repo().instance()).cloned() else {
            self.record(id, attempts, created_at, Outcome::Failed("the instance is no longer configured".into())).await;
            return;
        };
        let job = match self.admit(forge.as_ref(), id, job).await {
            Ok(job) => job,
            Err(outcome) => return self.record(id, attempts, created_at, outcome).await,
        };
        let joining = self.joining.lock().ok().and_then(|o| o.get(&job.issue).cloned());
        let entry = match &joining {
            Some(joining) => joining.door.enter().await,
            None => None,
        };
        let joined = match (&joining, entry) {
            (Some(joining), Some(_entry)) => {
                match self.engine.join(&job.issue, &super::prompt::follow_up(&job)).await {
                    Ok(()) => {
                        joining.door.used();
                        if let Ok(mut taken) = joining.taken.lock() {
                            taken.push(TakenIn {
                                job: id,
                                author: job.author.clone(),
                                comment: job.comment.as_ref().map(|c| c.id),
                            });
                        }
                        true
                    }
                    Err(e) => {
                        // Nothing more joins this run (a first run without its session
                        // yet, a driver that cannot): the follow-ups wait for it instead.
                        tracing::info!(error = %e, "a follow-up could not join the running turn");
                        drop(_entry);
                        let _ = joining.door.close().await;
                        false
                    }
                }
            }
            _ => false,
        };
        if !joined {
            if let Err(e) = self.queue.defer(id, now_millis(), "waits for the running job on this issue").await {
                tracing::error!(error = %format!("{e:#}"), "cannot put a follow-up back");
            }
            return;
        }
        tracing::info!(job = id, issue = %job.issue, "a follow-up joined the running turn");
        let target = job.reaction_target();
        if let Err(e) = forge.react(job.place().repo(), target, Reaction::Eyes).await {
            tracing::warn!(error = %e, "could not react to a follow-up");
        }
    }

    /// The issue's run was stopped: the follow-ups it took in end with it.
    pub(super) async fn stop_follow_ups(&self, issue: &IssueRef, why: &str) {
        let joining = self.joining.lock().ok().and_then(|mut open| open.remove(issue));
        let Some(joining) = joining else { return };
        let _ = joining.door.close().await;
        let taken = joining.taken.lock().map(|t| t.clone()).unwrap_or_default();
        // Only those still this replica's: after a takeover they are the other's.
        let ids: Vec<i64> = taken.iter().map(|f| f.job).collect();
        let gone = self.engine.store().jobs_taken_away(&ids).await.unwrap_or_default();
        for follow_up in taken.into_iter().filter(|f| !gone.iter().any(|(job, _)| *job == f.job)) {
            if let Err(e) = self.queue.stop(follow_up.job, why).await {
                tracing::error!(job = follow_up.job, error = %format!("{e:#}"), "cannot record a stopped follow-up");
            }
        }
    }

    /// The run that took follow-ups in could not run after all: they wait their turn.
    pub(super) async fn follow_ups_wait(&self, taken: &[TakenIn]) {
        for follow_up in taken {
            if let Err(e) =
                self.queue.defer(follow_up.job, now_millis(), "waits for the running job on this issue").await
            {
                tracing::error!(job = follow_up.job, error = %format!("{e:#}"), "cannot put a follow-up back");
            }
        }
    }

    /// The run that took follow-ups in has saved its answer: their jobs are done.
    pub(super) async fn follow_ups_answered(&self, taken: &[TakenIn]) {
        for follow_up in taken {
            if let Err(e) = self.queue.finish(follow_up.job, Ok(())).await {
                tracing::error!(job = follow_up.job, error = %format!("{e:#}"), "cannot record an answered follow-up");
            }
        }
    }
}
