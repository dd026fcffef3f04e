//! kugetsu: hand forge issues to an opencode agent, one session, worktree and
//! branch per issue.
//!
//! Data flows one way: webhook → event → job → engine → result → comment.

pub mod cli;
pub mod config;
pub mod engine;
pub mod git;
pub mod issue_ref;
pub mod lock;
pub mod opencode;
pub mod result;
pub mod store;
