//! The progress comment: made when the agent starts, edited as it works (edits
//! notify nobody), and folded to one line when the run ends, above the answer.

use std::fmt::Write as _;
use std::time::Duration;

use super::{MARKER_PREFIX, quiet};
use crate::opencode::ToolStatus;
use crate::result::{Ending, Progress};

/// The branch a run works on, and its page on the forge if known.
pub struct BranchLink<'a> {
    pub name: &'a str,
    pub url: Option<&'a str>,
}

/// The most todos a progress comment lists; an agent may write thousands.
const MAX_TODOS_SHOWN: usize = 50;
/// The most tools a progress comment names.
const MAX_TOOLS_SHOWN: usize = 20;

fn progress_marker(job_id: i64) -> String {
    format!("{MARKER_PREFIX}progress:{job_id} -->")
}

/// Whether a comment is this job's progress comment, as kugetsu wrote it.
pub fn is_progress_for_job(body: &str, job_id: i64) -> bool {
    body.trim_end().ends_with(&progress_marker(job_id))
}

/// `text` as inline code: the agent's words, shown and never rendered.
pub(super) fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'"))
}

fn seconds(elapsed: Duration) -> String {
    humantime::format_duration(Duration::from_secs(elapsed.as_secs())).to_string()
}

fn branch_line(branch: &BranchLink<'_>) -> String {
    match branch.url {
        Some(url) => format!("[{}]({url})", code(branch.name)),
        None => code(branch.name),
    }
}

fn todo_done(progress: &Progress) -> usize {
    progress.todos.iter().filter(|t| t.status == "completed").count()
}

/// The progress comment while the run goes on.
pub fn progress_comment(
    progress: &Progress,
    elapsed: Duration,
    branch: &BranchLink<'_>,
    interval: Duration,
    job_id: i64,
) -> String {
    let mut out = format!("⏳ **Working on it** · {} so far · branch {}\n\n", seconds(elapsed), branch_line(branch));
    match progress.current() {
        _ if progress.waiting.is_some() => {
            let asked = progress.waiting.as_deref().unwrap_or_default();
            let _ = writeln!(out, "**Now:** ⏸️ waiting for an answer in this thread: {}\n", quiet(asked));
        }
        Some(now) if now.title.is_empty() => {
            let _ = writeln!(out, "**Now:** {}\n", code(&now.tool));
        }
        Some(now) => {
            let _ = writeln!(out, "**Now:** {} · {}\n", code(&now.tool), code(&now.title));
        }
        None => out.push_str("**Now:** thinking\n\n"),
    }
    if !progress.todos.is_empty() {
        let _ = writeln!(out, "**Todo** ({}/{} done)", todo_done(progress), progress.todos.len());
        for todo in progress.todos.iter().take(MAX_TODOS_SHOWN) {
            let (mark, note) = match todo.status.as_str() {
                "completed" => ("x", ""),
                "in_progress" => (" ", " _(in progress)_"),
                "cancelled" => ("x", " _(dropped)_"),
                _ => (" ", ""),
            };
            let _ = writeln!(out, "- [{mark}] {}{note}", quiet(&todo.content));
        }
        if let Some(more) = progress.todos.len().checked_sub(MAX_TODOS_SHOWN).filter(|n| *n > 0) {
            let _ = writeln!(out, "- …and {more} more");
        }
        out.push('\n');
    }
    if let Some(tools) = tool_list(progress) {
        let _ = writeln!(out, "**Tools so far:** {tools}\n");
    }
    let _ = write!(
        out,
        "<sub>Edited as the run goes on (at most every {}); the answer comes as a new comment.</sub>\n{}",
        seconds(interval),
        progress_marker(job_id)
    );
    out
}

/// `bash ×3 · read ×2`, with failed calls counted apart.
fn tool_list(progress: &Progress) -> Option<String> {
    let counts = progress.tool_counts();
    if counts.is_empty() {
        return None;
    }
    let mut list: Vec<String> =
        counts.iter().take(MAX_TOOLS_SHOWN).map(|(tool, n)| format!("{} ×{n}", code(tool))).collect();
    if counts.len() > MAX_TOOLS_SHOWN {
        list.push(format!("{} more tools", counts.len() - MAX_TOOLS_SHOWN));
    }
    let failed = progress.tools.iter().filter(|t| t.status == ToolStatus::Failed).count();
    if failed > 0 {
        list.push(format!("{failed} failed"));
    }
    Some(list.join(" · "))
}

/// The one line a progress comment becomes once the run is over.
pub fn progress_summary(progress: &Progress, elapsed: Duration, ending: Ending, job_id: i64) -> String {
    let head = match ending {
        Ending::Succeeded => format!("✅ Done in {}", seconds(elapsed)),
        Ending::Failed => format!("😕 The run failed after {}", seconds(elapsed)),
        Ending::Stopped => format!("⏹️ Stopped after {}", seconds(elapsed)),
    };
    let mut parts = vec![head];
    let calls = progress.tools.len();
    if calls > 0 {
        let tools = tool_list(progress).unwrap_or_default();
        parts.push(format!("{calls} tool call{} ({tools})", if calls == 1 { "" } else { "s" }));
    }
    if !progress.todos.is_empty() {
        parts.push(format!("todo {}/{} done", todo_done(progress), progress.todos.len()));
    }
    let tail = match ending {
        Ending::Succeeded => ". The answer is below.",
        Ending::Failed => ". Why is below.",
        Ending::Stopped => ".",
    };
    format!("{}{tail}\n{}", parts.join(" · "), progress_marker(job_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opencode::{AgentEvent, Todo};

    fn busy() -> Progress {
        let mut p = Progress::default();
        let tool = |call: &str, tool: &str, title: &str, status| AgentEvent::Tool {
            call: call.into(),
            tool: tool.into(),
            title: title.into(),
            status,
        };
        p.apply(tool("1", "read", "src/parser.rs", ToolStatus::Completed));
        p.apply(tool("2", "bash", "cargo test", ToolStatus::Failed));
        p.apply(tool("3", "bash", "cargo test -p `parser` @alice", ToolStatus::Running));
        p.apply(AgentEvent::Todos(vec![
            Todo { content: "Read the parser".into(), status: "completed".into() },
            Todo { content: "Fix the flaky test, ask @bob".into(), status: "in_progress".into() },
            Todo { content: "Run the suite".into(), status: "pending".into() },
        ]));
        p
    }

    #[test]
    fn progress_comment_snapshot() {
        let branch =
            BranchLink { name: "kugetsu/12", url: Some("https://git.example/acme/widget/src/branch/kugetsu/12") };
        let text = progress_comment(&busy(), Duration::from_millis(42_700), &branch, Duration::from_secs(10), 7);
        assert!(is_progress_for_job(&text, 7) && !is_progress_for_job(&text, 70));
        assert!(!super::super::is_comment_for_job(&text, 7), "never mistaken for the job's answer");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_run_waiting_for_an_answer_says_so_until_it_has_one() {
        let branch = BranchLink { name: "kugetsu/12", url: None };
        let mut p = busy();
        assert!(p.apply(AgentEvent::Waiting(Some("Which colour, @alice?".into()))));
        let text = progress_comment(&p, Duration::from_secs(75), &branch, Duration::from_secs(10), 7);
        let now = text.lines().find(|l| l.starts_with("**Now:**")).expect("a now line");
        assert_eq!(now, "**Now:** ⏸️ waiting for an answer in this thread: Which colour, @\u{200d}alice?");
        assert!(p.apply(AgentEvent::Waiting(None)));
        let text = progress_comment(&p, Duration::from_secs(80), &branch, Duration::from_secs(10), 7);
        assert!(text.contains("**Now:** `bash`"), "back at work: {text}");
    }

    #[test]
    fn a_run_that_has_done_nothing_yet_is_thinking() {
        let branch = BranchLink { name: "kugetsu/3", url: None };
        let text = progress_comment(&Progress::default(), Duration::ZERO, &branch, Duration::from_secs(10), 1);
        assert!(text.contains("**Now:** thinking"), "{text}");
        assert!(!text.contains("Todo") && !text.contains("Tools so far"), "{text}");
    }

    #[test]
    fn progress_summary_snapshots() {
        let p = busy();
        insta::assert_snapshot!("summary_done", progress_summary(&p, Duration::from_secs(95), Ending::Succeeded, 7));
        insta::assert_snapshot!("summary_failed", progress_summary(&p, Duration::from_secs(5), Ending::Failed, 7));
        let idle = Progress::default();
        insta::assert_snapshot!("summary_stopped", progress_summary(&idle, Duration::from_secs(5), Ending::Stopped, 7));
    }

    #[test]
    fn a_long_todo_list_is_cut() {
        let mut p = Progress::default();
        let todos = (0..500).map(|i| Todo { content: format!("step {i}"), status: "pending".into() }).collect();
        p.apply(AgentEvent::Todos(todos));
        let branch = BranchLink { name: "kugetsu/1", url: None };
        let text = progress_comment(&p, Duration::ZERO, &branch, Duration::from_secs(10), 1);
        assert!(text.contains("step 49") && !text.contains("step 50") && text.contains("…and 450 more"), "{text}");
    }

    #[test]
    fn a_tool_call_is_counted_once_and_keeps_its_newest_state() {
        let mut p = Progress::default();
        let tool = |status, title: &str| AgentEvent::Tool {
            call: "c".into(),
            tool: "bash".into(),
            title: title.into(),
            status,
        };
        assert!(p.apply(tool(ToolStatus::Pending, "")));
        assert!(p.apply(tool(ToolStatus::Running, "ls")));
        assert!(!p.apply(tool(ToolStatus::Running, "ls")), "nothing new");
        assert!(p.apply(tool(ToolStatus::Completed, "")));
        assert_eq!(p.tools.len(), 1);
        assert_eq!(p.tools[0].title, "ls", "an empty title keeps the known one");
        assert!(p.current().is_none());
    }
}
