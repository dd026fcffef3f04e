//! Takes jobs off the queue, one per issue at a time and at most
//! `limits.concurrency` at once, and turns each into a run and a comment.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::permissions::PermissionCache;
use super::prompt;
use crate::comment;
use crate::config::Config;
use crate::engine::{Engine, Mode, RunOptions};
use crate::forge::{Forge, ReactionTarget, compare_url};
use crate::issue_ref::InstanceName;
use crate::queue::{Queue, QueuedJob};

/// How often the queue is looked at even without a wake-up.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Worker {
    engine: Arc<Engine>,
    queue: Queue,
    forges: Arc<HashMap<InstanceName, Arc<dyn Forge>>>,
    config: Arc<Config>,
    permissions: Arc<PermissionCache>,
}

impl Worker {
    pub fn new(
        engine: Arc<Engine>,
        queue: Queue,
        forges: Arc<HashMap<InstanceName, Arc<dyn Forge>>>,
        config: Arc<Config>,
    ) -> Self {
        let permissions = Arc::new(PermissionCache::new(config.bot.permission_cache));
        Self { engine, queue, forges, config, permissions }
    }

    /// Works until `stopped` turns true, then abandons runs in progress: their
    /// jobs stay marked running and are taken up again after a restart.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.config.limits.concurrency));
        let mut running = JoinSet::new();
        while !*stopped.borrow() {
            let jobs = match self.queue.claim(slots.available_permits()).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot read the job queue");
                    Vec::new()
                }
            };
            for job in jobs {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let worker = self.clone();
                running.spawn(async move {
                    let id = job.id;
                    let outcome = worker.process(job).await;
                    if let Err(e) = worker.queue.finish(id, outcome).await {
                        tracing::error!(job = id, error = %format!("{e:#}"), "cannot record a finished job");
                    }
                    drop(slot);
                });
            }
            tokio::select! {
                _ = self.queue.changed() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = stopped.changed() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        running.shutdown().await;
    }

    #[tracing::instrument(skip_all, fields(job = queued.id, issue = %queued.job.issue))]
    async fn process(&self, queued: QueuedJob) -> Result<(), String> {
        let QueuedJob { id, job } = queued;
        let repo = job.issue.repo();
        let instance = self.config.instance(repo.instance()).ok_or("the instance is no longer configured")?;
        let forge = self.forges.get(repo.instance()).ok_or("no forge client for the instance")?;
        // Fail closed: no answer from the permission API means no run.
        let permission = self
            .permissions
            .permission(forge.as_ref(), repo, &job.author)
            .await
            .map_err(|e| format!("permission check for @{} failed: {e}", job.author))?;
        if !permission.can_trigger() {
            tracing::info!(user = job.author, "ignored a trigger from a user without write access");
            if let Some(text) = &self.config.bot.deny_reply {
                let _ = forge.post_comment(&job.issue, &comment::not_allowed_comment(text, id)).await;
            }
            return Ok(());
        }
        let target =
            job.comment.as_ref().map_or(ReactionTarget::Issue(job.issue.number()), |c| ReactionTarget::Comment(c.id));
        if let Err(e) = forge.react_eyes(repo, target).await {
            tracing::warn!(error = %e, "could not react to the trigger");
        }
        let branch = self.engine.branch_for(&job.issue);
        let text = prompt::build(&job, &branch);
        let body = match self.engine.run(&job.issue, &text, Mode::Auto, RunOptions::default()).await {
            Ok(result) => {
                let base = job.default_branch.as_deref().unwrap_or("main");
                let compare = job.repo_html_url.as_deref().map(|url| compare_url(instance.kind, url, base, &branch));
                comment::result_comment(&result, compare.as_deref(), id)
            }
            Err(e) => {
                tracing::warn!(error = %e, "run failed");
                comment::failure_comment(&e, id)
            }
        };
        forge.post_comment(&job.issue, &body).await.map(drop).map_err(|e| format!("posting the comment failed: {e}"))
    }
}
