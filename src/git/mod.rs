//! Git as child processes: bare mirrors per repository and one working copy per issue.
//!
//! Every call goes through [`Git`], which hardens git against configuration that a
//! repository or the agent could plant, and hands credentials to git through a helper only that git process can reach.

mod bundle;
mod command;
mod credential;
mod locks;
mod mirror;
mod retry;
mod working_copy;

pub use bundle::Bundle;
pub use command::{Git, GitError};
pub use credential::Credentials;
pub use mirror::{Mirror, Tips};
pub use retry::with_retries;
pub use working_copy::{Commit, Committed, WorkingCopy};
