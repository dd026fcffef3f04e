//! This process as one replica among others on a shared database: it says it
//! is alive, puts back the running jobs of replicas not heard from, and runs
//! the tasks that must run once (reconciliation, housekeeping) only while it
//! holds their lease. With SQLite it is the only replica, and all of this holds
//! trivially.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::queue::Queue;
use crate::store::{Store, now_millis, task_lease};

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Says this replica is alive, once, before it takes any job.
pub(super) async fn announce(store: &dyn Store, lease: Duration) -> anyhow::Result<()> {
    store.heartbeat(now_millis(), millis(lease)).await
}

/// Beats three times a lease until `stopped`; then gives up this replica's
/// leases, so others may take its issues at once.
pub(super) async fn keep_alive(
    store: Arc<dyn Store>,
    queue: Queue,
    lease: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let ttl = millis(lease);
    loop {
        let now = now_millis();
        if let Err(e) = store.heartbeat(now, ttl).await {
            tracing::warn!(error = %format!("{e:#}"), "cannot reach the database to say this replica lives");
        }
        match store.requeue_orphans(now, now.saturating_sub(ttl)).await {
            Ok(0) => {}
            Ok(jobs) => {
                tracing::warn!(jobs, "re-queued the running jobs of a replica not heard from for a lease");
                queue.nudge();
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot look for a dead replica's jobs"),
        }
        tokio::select! {
            _ = tokio::time::sleep(lease / 3) => {}
            _ = stopped.changed() => break,
        }
    }
    if let Err(e) = store.release_leases().await {
        tracing::warn!(error = %format!("{e:#}"), "cannot give up this replica's leases");
    }
}

/// Whether this replica runs `task` now. The first replica to ask takes its
/// lease and keeps it with its heartbeats; the others skip the task until that
/// one is gone.
pub(super) async fn runs_task(store: &dyn Store, task: &str, lease: Duration) -> bool {
    match store.take_lease(&task_lease(task), now_millis(), millis(lease)).await {
        Ok(held) => held.is_some(),
        Err(e) => {
            tracing::warn!(task, error = %format!("{e:#}"), "cannot take the task's lease; skipping it this time");
            false
        }
    }
}
