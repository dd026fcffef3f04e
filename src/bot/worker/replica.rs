//! The worker among several replicas: it holds the lease of each issue it
//! works on, ends a run whose job was stopped or taken over from another
//! replica, stops a run another replica holds, and acts for an issue only while
//! its lease is its own.

use super::Worker;
use crate::issue_ref::IssueRef;
use crate::queue::Job;
use crate::store::{Fence, issue_lease, now_millis};

impl Worker {
    /// The issue's lease for job `id`, just claimed; `None` when another replica
    /// holds the issue (it took it between the claim's look and now), and the
    /// job was put back for it.
    pub(super) async fn take_issue(&self, id: i64, issue: &IssueRef) -> Option<Fence> {
        let store = self.engine.store();
        let key = issue_lease(issue);
        let ttl = i64::try_from(self.config.bot.lease.as_millis()).unwrap_or(i64::MAX);
        match store.take_lease(&key, now_millis(), ttl).await {
            Ok(Some(token)) => return Some(Fence::new(store.clone(), key, token)),
            Ok(None) => tracing::info!(job = id, %issue, "another replica holds this issue; leaving the job to it"),
            Err(e) => tracing::error!(job = id, error = %format!("{e:#}"), "cannot take the issue's lease"),
        }
        if let Err(e) = self.queue.defer(id, now_millis(), "another replica works on this issue").await {
            tracing::error!(job = id, error = %format!("{e:#}"), "cannot put a job back");
        }
        None
    }

    /// Whether the issue was taken over since its job was claimed; said in the log.
    pub(super) async fn lease_lost(&self, fence: Option<&Fence>) -> bool {
        let Some(fence) = fence else { return false };
        if fence.holds().await {
            return false;
        }
        tracing::warn!(lease = fence.key(), "the issue was taken over by another replica: not commenting");
        true
    }

    /// Ends this replica's runs whose jobs are no longer its own: `stop` said
    /// on another replica, or the issue taken over while this one was thought dead.
    pub(super) async fn end_runs_taken_away(&self) {
        let mine: Vec<(IssueRef, i64)> = match self.running.lock() {
            Ok(running) => running.iter().map(|(issue, (id, _))| (issue.clone(), *id)).collect(),
            Err(_) => return,
        };
        if mine.is_empty() {
            return;
        }
        let ids: Vec<i64> = mine.iter().map(|(_, id)| *id).collect();
        let gone = match self.engine.store().jobs_taken_away(&ids).await {
            Ok(gone) => gone,
            Err(e) => return tracing::warn!(error = %format!("{e:#}"), "cannot look for runs stopped elsewhere"),
        };
        for (issue, id) in mine {
            let Some(&(_, taken_over)) = gone.iter().find(|(gone, _)| *gone == id) else { continue };
            // Another replica's now (this one was thought dead). Its agent is
            // stopped; the run goes on to its fences, which keep it from pushing,
            // recording or commenting, and say so.
            if taken_over {
                tracing::warn!(job = id, %issue, "the issue was taken over by another replica; stopping the agent here");
                self.engine.abort_agent(&issue).await;
                continue;
            }
            let ended = self.running.lock().ok().and_then(|mut running| match running.get(&issue) {
                Some((running_id, _)) if *running_id == id => running.remove(&issue),
                _ => None,
            });
            let Some((_, handle)) = ended else { continue };
            tracing::warn!(job = id, %issue, "the job was stopped on another replica; ending its run here");
            handle.abort();
            self.engine.abort_agent(&issue).await;
            self.stop_follow_ups(&issue, "the run was stopped").await;
        }
    }

    /// `stop` for a run on another replica: its job's row says so, and that
    /// replica ends the run when it next looks ([`Self::end_runs_taken_away`]).
    pub(super) async fn stop_elsewhere(&self, job: &Job) -> bool {
        let store = self.engine.store();
        let Ok(Some(running)) = store.running_work(&job.issue).await else { return false };
        let why = format!("stopped by @{}", job.author);
        let stopped = self.queue.stop(running, &why).await.unwrap_or_else(|e| {
            tracing::error!(error = %format!("{e:#}"), "cannot record a stopped job");
            false
        });
        if stopped && let Err(e) = self.engine.stop(&job.issue, &why).await {
            tracing::warn!(error = %e, "could not mark the stopped run");
        }
        stopped
    }
}
