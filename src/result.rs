//! The structured outcome of one agent run, as stored, printed and commented.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::git::Commit;
use crate::issue_ref::IssueRef;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub reasoning: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Tokens {
    pub fn total(&self) -> u64 {
        self.input + self.output + self.reasoning + self.cache_read + self.cache_write
    }

    /// Tokens used between two cumulative readings of a session's counters.
    pub fn since(&self, earlier: &Tokens) -> Tokens {
        Tokens {
            input: self.input.saturating_sub(earlier.input),
            output: self.output.saturating_sub(earlier.output),
            reasoning: self.reasoning.saturating_sub(earlier.reasoning),
            cache_read: self.cache_read.saturating_sub(earlier.cache_read),
            cache_write: self.cache_write.saturating_sub(earlier.cache_write),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub issue: IssueRef,
    pub session_id: String,
    /// The agent's final answer, as it wrote it.
    pub answer: String,
    pub commits: Vec<Commit>,
    pub files_changed: Vec<String>,
    pub branch: String,
    /// Where the branch was pushed; `None` when there was nothing new to push.
    pub pushed_to: Option<String>,
    pub tokens: Tokens,
    pub cost: f64,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Permission requests and questions that were denied so the run could not hang.
    pub denied: Vec<String>,
}

/// What became of the issue's pull request after a run, as its answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullRequestNote {
    /// No pull request (turned off, nothing pushed yet, or a pull request
    /// kugetsu did not open): a link to compare the branch, where known.
    Compare(Option<String>),
    /// Opened by this run.
    Opened {
        number: u64,
        url: String,
    },
    /// Open already; the push updated it.
    Open {
        number: u64,
        url: String,
    },
    Merged {
        number: u64,
        url: String,
    },
    /// Closed by a person; kugetsu does not reopen it.
    Closed {
        number: u64,
        url: String,
    },
    /// The forge would not open one: why, and the compare link.
    NotOpened {
        why: String,
        compare: Option<String>,
    },
}
