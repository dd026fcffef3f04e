//! kugetsu: hand forge issues to an opencode agent, one session, worktree and
//! branch per issue.
//!
//! Data flows one way: webhook → event → job → engine → result → comment.

pub mod bot;
pub mod budget;
pub mod cli;
pub mod comment;
pub mod config;
pub mod crash;
pub mod engine;
pub mod event;
pub mod forge;
pub mod git;
pub mod issue_ref;
pub mod layout;
pub mod lock;
pub mod metrics;
pub mod opencode;
pub mod question;
pub mod queue;
pub mod result;
pub mod sandbox;
pub mod stage;
pub mod status;
pub mod store;
pub mod trigger;
pub mod webhook;
