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

/// What a run has done so far, folded from the agent's events: what people see
/// in the progress comment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Each tool call once, in the order they began: its tool, title and state.
    pub tools: Vec<ToolCall>,
    pub todos: Vec<crate::opencode::Todo>,
    /// What the run waits for a person's answer to, while it does.
    pub waiting: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub call: String,
    pub tool: String,
    pub title: String,
    pub status: crate::opencode::ToolStatus,
}

/// The most tool calls a progress comment remembers; a run of thousands still
/// shows its counts, from what it kept.
const MAX_TOOL_CALLS: usize = 1000;

impl Progress {
    /// Takes in one event; whether anything people see changed.
    pub fn apply(&mut self, event: crate::opencode::AgentEvent) -> bool {
        use crate::opencode::AgentEvent;
        match event {
            AgentEvent::Started | AgentEvent::Spent { .. } => false,
            AgentEvent::Waiting(waiting) => {
                let changed = self.waiting != waiting;
                self.waiting = waiting;
                changed
            }
            AgentEvent::Todos(todos) => {
                let changed = self.todos != todos;
                self.todos = todos;
                changed
            }
            AgentEvent::Tool { call, tool, title, status } => {
                if let Some(known) = self.tools.iter_mut().find(|t| t.call == call) {
                    let changed = known.status != status || (!title.is_empty() && known.title != title);
                    known.status = status;
                    if !title.is_empty() {
                        known.title = title;
                    }
                    return changed;
                }
                if self.tools.len() >= MAX_TOOL_CALLS {
                    self.tools.remove(0);
                }
                self.tools.push(ToolCall { call, tool, title, status });
                true
            }
        }
    }

    /// The tool call under way, if one is: the newest that has not ended.
    pub fn current(&self) -> Option<&ToolCall> {
        use crate::opencode::ToolStatus;
        self.tools.iter().rev().find(|t| matches!(t.status, ToolStatus::Pending | ToolStatus::Running))
    }

    /// How often each tool was used, most used first (then by name).
    pub fn tool_counts(&self) -> Vec<(&str, usize)> {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for t in &self.tools {
            match counts.iter_mut().find(|(name, _)| *name == t.tool) {
                Some((_, n)) => *n += 1,
                None => counts.push((&t.tool, 1)),
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        counts
    }
}

/// How a run ended, as its progress comment and reaction say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Succeeded,
    Failed,
    /// Cut short: `@kugetsu stop`, or kugetsu going down mid-run.
    Stopped,
}
