//! The moments of one turn, from claim to comment. Each is one debug event on
//! target `kugetsu::stage`, naming the issue, so a log shows where a turn's time
//! went and the benchmark can time every stage of it.

use crate::issue_ref::IssueRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A worker took the job from the queue.
    Claimed,
    /// The forge confirmed the trigger and the author's permission.
    Admitted,
    /// The issue's working copy is at the right commit.
    WorkingCopyReady,
    /// opencode holds the issue's session; the prompt goes next.
    SessionReady,
    /// The agent's turn ended.
    AgentDone,
    /// The agent's commits are in the mirror.
    Committed,
    /// The branch is on the forge.
    Pushed,
    /// The answer is on the forge.
    Commented,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Claimed,
        Stage::Admitted,
        Stage::WorkingCopyReady,
        Stage::SessionReady,
        Stage::AgentDone,
        Stage::Committed,
        Stage::Pushed,
        Stage::Commented,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Claimed => "job claimed",
            Stage::Admitted => "trigger confirmed",
            Stage::WorkingCopyReady => "working copy ready",
            Stage::SessionReady => "session ready",
            Stage::AgentDone => "agent done",
            Stage::Committed => "commits taken",
            Stage::Pushed => "pushed",
            Stage::Commented => "commented",
        }
    }
}

/// Says that `issue`'s turn reached `stage`.
pub fn reached(issue: &IssueRef, stage: Stage) {
    tracing::debug!(target: "kugetsu::stage", issue = %issue, stage = stage.name());
}
