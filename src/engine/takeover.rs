//! An issue's session across replicas: after every run its opencode session is
//! saved to the shared database as `opencode export` writes it, and a replica
//! taking the issue over (the one that held it died) imports it before its first
//! run, so the agent's next turn still sees the whole history. The working copy
//! needs nothing of the kind: it is made again from the pushed branch.

use std::path::Path;

use super::{Engine, EngineError};
use crate::issue_ref::IssueRef;

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

    /// Makes sure this replica's opencode has the issue's session `id`, from
    /// its checkpoint if another replica ran it last. `false` when it has no
    /// session and there is no checkpoint of it: the run starts a new one.
    pub(super) async fn restore_session(&self, issue: &IssueRef, id: &str, dir: &Path) -> Result<bool, EngineError> {
        if self.driver.session_exists(id, dir).await? {
            return Ok(true);
        }
        let checkpoint = self.store.checkpoint(issue).await?;
        let Some(checkpoint) = checkpoint.filter(|c| c.session_id == id) else {
            tracing::warn!(%issue, session = id, "the issue's session is on no replica and has no checkpoint; starting anew");
            return Ok(false);
        };
        self.driver.import_session(dir, &checkpoint.export).await?;
        tracing::info!(%issue, session = id, "took the issue's session over from its checkpoint");
        Ok(true)
    }
}
