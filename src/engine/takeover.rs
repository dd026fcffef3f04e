//! An issue's session across replicas: after every run its opencode session is
//! saved to the shared database as `opencode export` writes it, and a replica
//! taking the issue over (the one that held it died) imports it before its first
//! run, so the agent's next turn still sees the whole history. The working copy
//! needs nothing of the kind: it is made again from the pushed branch.

use std::path::Path;

use super::{Engine, EngineError};
use crate::git::{Mirror, WorkingCopy};
use crate::issue_ref::IssueRef;
use crate::store::IssueSession;

impl Engine {
    /// Whether issues' sessions are kept in the database for other replicas:
    /// only a shared database has other replicas to take them.
    pub(super) fn keeps_checkpoints(&self) -> bool {
        self.config.database_url.is_some()
    }

    /// Saves the session after a run. A checkpoint that cannot be made is
    /// said in the log: the run is done, and only a takeover would miss it.
    pub(super) async fn save_checkpoint(&self, issue: &IssueRef, session_id: &str, dir: &Path) {
        let export = match self.driver.export_session(session_id, dir).await {
            Ok(export) => export,
            Err(e) => return tracing::warn!(%issue, error = %e, "cannot export the session for a checkpoint"),
        };
        if let Err(e) = self.store.save_checkpoint(issue, session_id, &export).await {
            tracing::warn!(%issue, error = %format!("{e:#}"), "cannot save the session's checkpoint");
        }
    }

    /// Removes this replica's working copy of the issue, and the mirror's local
    /// branch, when another replica has pushed the issue's branch since this one
    /// last ran it: the copy would build on old work, and a push from it would
    /// replace the other's. `true` when it did: the session is stale too.
    pub(super) async fn drop_stale_copy(
        &self,
        issue: &IssueRef,
        mirror: &Mirror,
        branch: &str,
        record: Option<&IssueSession>,
    ) -> Result<bool, EngineError> {
        let Some(pushed) = record.and_then(|r| r.last_pushed_sha.as_deref()) else { return Ok(false) };
        let worktree = WorkingCopy::at(self.layout.worktree(issue));
        if !worktree.exists() || !mirror.exists() {
            return Ok(false);
        }
        // The mirror's local branch is where this replica's last run left the issue.
        let local = mirror.resolve(&self.git, &format!("refs/heads/{branch}")).await?;
        if let Some(local) = local
            && mirror.has_commit(&self.git, pushed).await
            && mirror.is_ancestor(&self.git, pushed, &local).await
        {
            return Ok(false);
        }
        tracing::info!(%issue, "another replica ran this issue since; its working copy is made again from the pushed branch");
        let _lock = self.lock_mirror(issue.repo()).await?;
        self.driver.release(worktree.path()).await;
        worktree.remove(&self.git, mirror).await?;
        mirror.delete_local_branch(&self.git, branch).await?;
        Ok(true)
    }

    /// Makes sure this replica's opencode has the issue's session `id`, from
    /// its checkpoint if another replica ran it last (`stale`: this replica's
    /// own copy of it misses the other's turns). `false` when it has no session
    /// and there is no checkpoint of it: the run starts a new one.
    pub(super) async fn restore_session(
        &self,
        issue: &IssueRef,
        id: &str,
        dir: &Path,
        stale: bool,
    ) -> Result<bool, EngineError> {
        let checkpoint = self.store.checkpoint(issue).await?.filter(|c| c.session_id == id);
        // Saved after another replica's run: this one's copy, if any, misses that run.
        let elsewhere = checkpoint.as_ref().is_some_and(|c| c.replica != self.store.replica());
        if !stale && !elsewhere && self.driver.session_exists(id, dir).await? {
            return Ok(true);
        }
        let Some(checkpoint) = checkpoint else {
            if self.driver.session_exists(id, dir).await? {
                return Ok(true);
            }
            tracing::warn!(%issue, session = id, "the issue's session is on no replica and has no checkpoint; starting anew");
            return Ok(false);
        };
        // An import adds to a session that exists; the checkpoint is the whole of it.
        if let Err(e) = self.driver.delete_session(id, dir).await {
            tracing::warn!(%issue, error = %e, "cannot remove this replica's old copy of the session");
        }
        self.driver.import_session(dir, &checkpoint.export).await?;
        tracing::info!(%issue, session = id, "took the issue's session over from its checkpoint");
        Ok(true)
    }
}
