//! Git as child processes: bare mirrors per repository and one worktree per issue.
//!
//! Every call goes through [`Git`], which hardens git against configuration that a
//! repository or the agent could plant, and keeps credentials out of argv and files.

mod command;
mod locks;
mod mirror;
mod worktree;

pub use command::{Credentials, Git, GitError};
pub use mirror::Mirror;
pub use worktree::{Commit, Worktree};
