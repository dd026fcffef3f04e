use crate::git::GitError;
use crate::opencode::{FailureKind, RunError};

/// Why an engine operation failed, split the way callers must react: fix the
/// input, look at the agent's run, or look at the machine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Agent(String),
    #[error("{0}")]
    Infra(String),
    /// The issue is locked by another run (the CLI, say); retrying later succeeds.
    #[error("{0}")]
    Busy(String),
    /// opencode died (was killed, crashed) while the agent worked in a session
    /// it had started; the session is kept and the run can go on in it.
    #[error("{0}")]
    Interrupted(String),
    /// Another replica took the issue over (this one was thought dead): this
    /// one must not push or comment for it.
    #[error("{0}")]
    LeaseLost(String),
}

impl EngineError {
    /// Process exit codes: 2 bad input (or a busy issue), 3 agent failure, 4 infrastructure failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::BadInput(_) | Self::Busy(_) => 2,
            Self::Agent(_) => 3,
            Self::Infra(_) | Self::Interrupted(_) | Self::LeaseLost(_) => 4,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadInput(_) => "bad_input",
            Self::Agent(_) => "agent",
            Self::Infra(_) => "infrastructure",
            Self::Busy(_) => "busy",
            Self::Interrupted(_) => "interrupted",
            Self::LeaseLost(_) => "lease_lost",
        }
    }
}

impl From<GitError> for EngineError {
    fn from(e: GitError) -> Self {
        Self::Infra(e.to_string())
    }
}

impl From<RunError> for EngineError {
    fn from(e: RunError) -> Self {
        match e.kind {
            FailureKind::Unsupported => Self::BadInput(e.message),
            FailureKind::Agent => Self::Agent(e.message),
            FailureKind::Infra if e.session_id.is_some() => Self::Interrupted(e.message),
            FailureKind::Infra => Self::Infra(e.message),
        }
    }
}

impl From<anyhow::Error> for EngineError {
    fn from(e: anyhow::Error) -> Self {
        Self::Infra(format!("{e:#}"))
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        Self::Infra(e.to_string())
    }
}
