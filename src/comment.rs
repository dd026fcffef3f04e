//! Every text the bot posts. Each carries a hidden marker, so the bot knows its
//! own comments and never answers itself.

use std::fmt::Write as _;
use std::time::Duration;

mod budget;
mod progress;
mod question;
mod quiet;

use crate::engine::EngineError;
use crate::result::{PullRequestNote, RunResult};

pub use budget::{budget_paused_comment, budget_stopped_comment, issue_total, resumed_comment};
pub use progress::{BranchLink, is_progress_for_job, progress_comment, progress_summary};
pub use question::{answered_line, closed_line, is_question_for_job, question_comment, waiting_line};
pub use quiet::quiet;

const MARKER_PREFIX: &str = "<!-- kugetsu:";

fn marker(job_id: i64) -> String {
    format!("{MARKER_PREFIX}job:{job_id} -->")
}

/// Whether a comment body was written by kugetsu.
pub fn is_bot_comment(body: &str) -> bool {
    body.contains(MARKER_PREFIX)
}

/// Whether a comment for this job was already posted. The marker must end the
/// comment, as kugetsu writes it; quoted text cannot carry one (see [`quiet`]).
pub fn is_comment_for_job(body: &str, job_id: i64) -> bool {
    body.trim_end().ends_with(&marker(job_id))
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(10)]
}

fn rounded(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs().max(1))).to_string()
}

/// The answer to a successful run.
pub fn result_comment(result: &RunResult, pull: &PullRequestNote, total: Option<&str>, job_id: i64) -> String {
    let mut out = String::new();
    // The agent's words, and below its commit subjects and denied requests, may
    // carry text from strangers: they ping nobody and command no bot.
    let answer = quiet(result.answer.trim());
    out.push_str(if answer.is_empty() { "_The agent finished without a written answer._" } else { &answer });
    out.push_str("\n\n---\n");
    let branch = &result.branch;
    let pushed = if result.pushed_to.is_some() { "" } else { " (nothing new to push)" };
    match pull {
        PullRequestNote::Compare(Some(url)) if result.pushed_to.is_some() => {
            let _ = writeln!(out, "**Branch:** `{branch}` ([compare or open a pull request]({url}))");
        }
        PullRequestNote::Compare(_) => {
            let _ = writeln!(out, "**Branch:** `{branch}`{pushed}");
        }
        PullRequestNote::Opened { number, url } => {
            let _ = writeln!(out, "**Branch:** `{branch}` · **Pull request:** [#{number}]({url}) (opened now)");
        }
        PullRequestNote::Open { number, url } => {
            let _ = writeln!(out, "**Branch:** `{branch}`{pushed} · **Pull request:** [#{number}]({url})");
        }
        PullRequestNote::Merged { number, url } => {
            let _ = writeln!(out, "**Branch:** `{branch}`{pushed} · **Pull request:** [#{number}]({url}) (merged)");
        }
        PullRequestNote::Closed { number, url } => {
            let _ = writeln!(
                out,
                "**Branch:** `{branch}`{pushed} · **Pull request:** [#{number}]({url}) was closed; I leave it closed. Reopen it to go on with it there."
            );
        }
        PullRequestNote::NotOpened { why, compare } => {
            let link = compare.as_deref().map(|url| format!(" ([compare or open one]({url}))")).unwrap_or_default();
            let _ =
                writeln!(out, "**Branch:** `{branch}`{link} · I could not open a pull request: {}", what_failed(why));
        }
    }
    if !result.commits.is_empty() {
        out.push_str("**Commits:**\n");
        for c in &result.commits {
            let _ = writeln!(out, "- `{}` {}", short(&c.sha), quiet(&c.subject));
        }
    }
    for d in &result.denied {
        let _ = writeln!(out, "**Denied:** {}", quiet(d));
    }
    let _ = writeln!(
        out,
        "**Run:** {} · {} tokens in, {} out · ${:.4}",
        rounded(result.duration),
        result.tokens.input,
        result.tokens.output,
        result.cost
    );
    if let Some(total) = total {
        let _ = writeln!(out, "**This issue so far:** {total}");
    }
    out.push_str(&marker(job_id));
    out
}

/// The body of the pull request kugetsu opens for an issue's branch: it closes
/// the issue when merged, sums up the run that opened it, and carries a marker
/// that says whose it is.
pub fn pull_request_body(issue: u64, result: &RunResult) -> String {
    let mut out = format!("Closes #{issue}.\n\n");
    let answer = no_issue_refs(&quiet(result.answer.trim()));
    let summary: String = answer.chars().take(PULL_REQUEST_SUMMARY_CHARS).collect();
    if !summary.is_empty() {
        out.push_str(&summary);
        if summary.len() < answer.len() {
            out.push('…');
        }
        out.push_str("\n\n");
    }
    if !result.commits.is_empty() {
        out.push_str("**Commits:**\n");
        for c in &result.commits {
            let _ = writeln!(out, "- `{}` {}", short(&c.sha), no_issue_refs(&quiet(&c.subject)));
        }
        out.push('\n');
    }
    let _ = write!(
        out,
        "_Opened by kugetsu for #{issue}. Mention me here to go on in the same session._\n{MARKER_PREFIX}pull-request issue={issue} -->"
    );
    out
}

/// Said once when CI fails again after the last repair an issue may have.
pub fn ci_fix_exhausted_comment(max_attempts: u32, failing: &[&str], job_id: i64) -> String {
    let failing: Vec<String> = failing.iter().map(|name| format!("`{}`", quiet(&name.replace('`', "'")))).collect();
    format!(
        "CI still fails ({}) after {max_attempts} repair attempts, the most this repository allows. \
         I stop here; mention me to go on.\n{}",
        failing.join(", "),
        marker(job_id)
    )
}

/// `#12` with a word joiner after `#`: in a pull request's description, the
/// agent's words must not close issues when it is merged ("Fixes #12").
fn no_issue_refs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '#' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('\u{2060}');
        }
    }
    out
}

/// The most of the agent's answer a pull request's description repeats.
const PULL_REQUEST_SUMMARY_CHARS: usize = 2_000;

/// The answer to a run that failed, in words a user can act on.
pub fn failure_comment(error: &EngineError, job_id: i64) -> String {
    let advice = match error {
        EngineError::BadInput(_) => "This needs a change on your side before a retry.",
        EngineError::Busy(_) => "Mention me again when it ends.",
        EngineError::Agent(_) => "Mention me again to retry; the session keeps what happened so far.",
        EngineError::Infra(_) => "This is a problem on the bot's host; its operator has the details in the logs.",
        EngineError::Interrupted(_) => {
            "The agent's process died twice during this request; the session is kept, so mention me to go on."
        }
        EngineError::LeaseLost(_) => "Another of the bot's replicas took this issue over; it answers here.",
    };
    format!("The run failed: {}.\n\n{advice}\n{}", what_failed(&error.to_string()), marker(job_id))
}

/// What failed, in kugetsu's own words: an error message up to its first detail
/// (`: `, `; `, ` (`), without paths or URLs. Git's stderr, forge answers and
/// internal addresses stay in the log.
fn what_failed(message: &str) -> String {
    let head = [": ", "; ", " ("].iter().filter_map(|sep| message.find(sep)).min().map_or(message, |at| &message[..at]);
    let words: Vec<&str> = head
        .split_whitespace()
        .filter(|w| {
            let w = w.trim_matches(|c| c == '`' || c == '\'' || c == '"');
            !(w.contains("://") || w.starts_with('/') || w.starts_with("~/"))
        })
        .collect();
    quiet(words.join(" ").trim_end_matches('.'))
}

/// The answer to `@kugetsu stop`.
pub fn stopped_comment(stopped: bool, job_id: i64) -> String {
    let text = if stopped {
        "Stopped the running job. The session and branch stay; mention me to go on."
    } else {
        "Nothing was running on this issue."
    };
    format!("{text}\n{}", marker(job_id))
}

/// The answer to `@kugetsu status`; `waiting` says why queued requests wait.
pub fn status_comment(
    record: Option<&crate::store::IssueSession>,
    queued: i64,
    waiting: &[String],
    spending: &Spending,
    job_id: i64,
) -> String {
    let mut out = String::new();
    match record {
        None => out.push_str("No session yet: mention me with a request to start one.\n"),
        Some(r) => {
            let _ = writeln!(out, "**Session:** `{}`", r.session_id.as_deref().unwrap_or("not created yet"));
            let _ = writeln!(out, "**Branch:** `{}`", r.branch);
            let _ = writeln!(out, "**State:** {}", r.status.as_str());
            if let Some(result) = &r.last_result {
                let _ = writeln!(
                    out,
                    "**Last run:** {} commit(s), {}, {} tokens",
                    result.commits.len(),
                    rounded(result.duration),
                    result.tokens.total()
                );
            }
            if let Some(error) = &r.last_error {
                let _ = writeln!(out, "**Last error:** {}", what_failed(error));
            }
        }
    }
    if let Some(total) = &spending.total {
        let _ = writeln!(out, "**Spent:** {total}");
    }
    if let Some(paused) = &spending.paused {
        let _ = writeln!(out, "**Paused:** {paused}; `resume` goes on");
    }
    let _ = writeln!(out, "**Queued:** {queued} request(s)");
    for why in waiting {
        let _ = writeln!(out, "**Waiting:** {}", what_failed(why));
    }
    out.push_str(&marker(job_id));
    out
}

/// `body` with `line` added above its marker, which must stay last.
pub fn with_line(body: &str, line: &str) -> String {
    match body.rfind(MARKER_PREFIX) {
        Some(at) => format!("{}{line}\n{}", &body[..at], &body[at..]),
        None => format!("{body}\n{line}"),
    }
}

/// The follow-ups a run took in, for its answer: `**Took in:** comment 5 by alice,
/// …`. Logins are not mentions here: nobody is pinged by an answer.
pub fn took_in_line(authors_and_comments: &[(String, Option<u64>)]) -> String {
    let who: Vec<String> = authors_and_comments
        .iter()
        .map(|(author, comment)| {
            let author = quiet(author.trim_start_matches('@'));
            match comment {
                Some(id) => format!("comment {id} by {author}"),
                None => format!("a request by {author}"),
            }
        })
        .collect();
    format!("**Took in:** {}, while the run went on", who.join(", "))
}

/// What `status` says of an issue's spending.
#[derive(Debug, Default)]
pub struct Spending {
    /// The issue's running total ([`issue_total`]).
    pub total: Option<String>,
    /// The budget the issue has reached, if it has.
    pub paused: Option<String>,
}

/// The answer to `@kugetsu reset`.
pub fn reset_comment(had_session: bool, job_id: i64) -> String {
    let text = if had_session {
        "Reset: the next mention starts a fresh session and worktree. The pushed branch stays."
    } else {
        "There was nothing to reset."
    };
    format!("{text}\n{}", marker(job_id))
}

/// The answer to `@kugetsu help`.
pub fn help_comment(handle: &str, job_id: i64) -> String {
    format!(
        "Mention me with a request and I work on it in this issue's own branch and session.\n\n\
         - `@{handle} <request>`: do the work (a later mention continues the same session)\n\
         - `@{handle} status`: session, branch, queue and last run\n\
         - `@{handle} stop`: stop the running job\n\
         - `@{handle} reset`: start over with a fresh session\n\
         - `@{handle} resume`: go on after a budget or the loop breaker paused this issue\n\
         - `@{handle} help`: this list\n{}",
        marker(job_id)
    )
}

/// The reply to a request that was refused by a limit.
pub fn refused_comment(reason: &str, job_id: i64) -> String {
    format!("I did not start this: {reason}\n{}", marker(job_id))
}

/// Said once when a job must wait for disk space.
pub fn deferred_comment(job_id: i64) -> String {
    format!(
        "The bot's disk is nearly full, so this request waits until space is freed; it has not been dropped.\n\
         {MARKER_PREFIX}job:{job_id}:deferred -->"
    )
}

/// Whether the deferral note for this job was already posted.
pub fn is_deferral_for_job(body: &str, job_id: i64) -> bool {
    body.contains(&format!("{MARKER_PREFIX}job:{job_id}:deferred -->"))
}

const PERMISSION_NOTICE: &str = "<!-- kugetsu:notice:permission -->";

/// `status` while the bot cannot check permissions: only what waits, since the
/// asker may be anyone.
pub fn waiting_status_comment(queued: i64, waiting: &[String], job_id: i64) -> String {
    let mut out = String::from("I cannot check permissions on this repository yet, so this shows only what waits.\n");
    let _ = writeln!(out, "**Queued:** {queued} request(s)");
    for why in waiting {
        let _ = writeln!(out, "**Waiting:** {}", what_failed(why));
    }
    out.push_str(&marker(job_id));
    out
}

/// Why a job that asked the permission API is waiting; shown by `status` too.
pub const NEEDS_ADMIN: &str = "the bot account needs the Administrator role on this repository to read \
     collaborator permissions (Gitea and Forgejo show them to administrators only)";

/// Said once on an issue whose triggers wait because the forge will not tell the
/// bot its users' permissions (Gitea and Forgejo show them to administrators only).
pub fn permission_notice(author: &str) -> String {
    format!(
        "I cannot tell yet whether @{author} may ask me to work here: the forge refused to show me \
         collaborator permissions. On Gitea and Forgejo only a repository administrator may read them, \
         so the bot account needs the **Administrator** role on this repository (as a collaborator, or \
         through an organisation team). The request is not dropped: it runs as soon as that is fixed.\n\
         {PERMISSION_NOTICE}"
    )
}

pub fn is_permission_notice(body: &str) -> bool {
    body.contains(PERMISSION_NOTICE)
}

/// The one comment for a job that kept failing until its deadline.
pub fn gave_up_comment(why: &str, tried_for: Duration, job_id: i64) -> String {
    format!(
        "I gave up on this request after trying for {}: {why}. Mention me again to retry.\n{}",
        rounded(tried_for),
        marker(job_id)
    )
}

/// GitHub refuses comment bodies over 65,536 characters; Gitea sets no limit.
/// Keep well under it, counted in characters as GitHub counts.
pub const MAX_COMMENT_CHARS: usize = 65_000;

/// Cuts a comment that is too long for the forge, keeping its marker, with a note.
pub fn within_limit(body: &str) -> std::borrow::Cow<'_, str> {
    if body.chars().count() <= MAX_COMMENT_CHARS {
        return body.into();
    }
    let (text, marker) = body.rfind(MARKER_PREFIX).map_or((body, ""), |at| body.split_at(at));
    let note = "\n\n_(Cut here: the rest was longer than the forge accepts in one comment.)_\n";
    let keep = MAX_COMMENT_CHARS.saturating_sub(note.len() + marker.chars().count());
    let cut: String = text.chars().take(keep).collect();
    format!("{cut}{note}{marker}").into()
}

/// The polite one-line reply to someone without write access.
pub fn not_allowed_comment(text: &str, job_id: i64) -> String {
    format!("{text}\n{}", marker(job_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::Commit;
    use crate::result::Tokens;

    fn sample() -> RunResult {
        RunResult {
            issue: "gitea/acme/widget#7".parse().unwrap(),
            session_id: "ses_1".into(),
            answer: "Fixed the flaky test by seeding the RNG.".into(),
            commits: vec![Commit { sha: "0123456789abcdef".into(), subject: "Seed the RNG in parser tests".into() }],
            files_changed: vec!["src/parser.rs".into()],
            branch: "kugetsu/7".into(),
            pushed_to: Some("http://gitea:3000/acme/widget.git".into()),
            tokens: Tokens { input: 1200, output: 340, ..Tokens::default() },
            cost: 0.0123,
            duration: Duration::from_secs(75),
            denied: vec![],
        }
    }

    #[test]
    fn result_comment_snapshot() {
        let compare =
            PullRequestNote::Compare(Some("https://git.example.com/acme/widget/compare/main...kugetsu/7".into()));
        let text = result_comment(&sample(), &compare, Some("2 runs · 60 tokens · $0.0100"), 42);
        insta::assert_snapshot!(text);
        assert!(is_bot_comment(&text) && is_comment_for_job(&text, 42) && !is_comment_for_job(&text, 4));
    }

    #[test]
    fn result_without_push_or_answer_snapshot() {
        let mut r = sample();
        r.pushed_to = None;
        r.commits.clear();
        r.answer = "  ".into();
        r.denied = vec!["permission: bash `rm -rf /`".into()];
        insta::assert_snapshot!(result_comment(&r, &PullRequestNote::Compare(None), None, 1));
    }

    #[test]
    fn pull_request_lines_name_the_pull_request_and_what_became_of_it() {
        let url = "https://git.example.com/acme/widget/pulls/9".to_owned();
        let note = |n: PullRequestNote| {
            let text = result_comment(&sample(), &n, None, 3);
            text.lines().find(|l| l.starts_with("**Branch:**")).unwrap_or_default().to_owned()
        };
        insta::assert_snapshot!(
            "pull_request_lines",
            [
                note(PullRequestNote::Opened { number: 9, url: url.clone() }),
                note(PullRequestNote::Open { number: 9, url: url.clone() }),
                note(PullRequestNote::Merged { number: 9, url: url.clone() }),
                note(PullRequestNote::Closed { number: 9, url }),
                note(PullRequestNote::NotOpened {
                    why: "the forge answered 422: Validation Failed".into(),
                    compare: Some("https://git.example.com/acme/widget/compare/main...kugetsu/7".into()),
                }),
            ]
            .join("\n")
        );
    }

    #[test]
    fn a_pull_request_body_closes_the_issue_and_is_marked_as_kugetsus() {
        let mut r = sample();
        r.answer = format!("Fixes #12. {} <!-- kugetsu:job:1 -->", "word ".repeat(1_000));
        let body = pull_request_body(7, &r);
        assert!(!body.contains("#12") && body.contains("Fixes #\u{2060}12"), "the agent closes nothing: {body}");
        assert!(body.starts_with("Closes #7.\n"), "{body}");
        assert!(body.contains("<!-- kugetsu:pull-request issue=7 -->") && is_bot_comment(&body), "{body}");
        assert!(!is_comment_for_job(&body, 1), "a job marker in the agent's words does not survive: {body}");
        assert!(body.contains('…') && body.chars().count() < 2_600, "the summary is cut: {}", body.chars().count());
    }

    #[test]
    fn control_comment_snapshots() {
        insta::assert_snapshot!("help", help_comment("kugetsu", 8));
        insta::assert_snapshot!("stopped", stopped_comment(true, 8));
        insta::assert_snapshot!("reset", reset_comment(true, 8));
        insta::assert_snapshot!("refused", refused_comment("5 requests on this issue are already queued.", 8));
        insta::assert_snapshot!("deferred", deferred_comment(8));
        assert!(is_deferral_for_job(&deferred_comment(8), 8) && !is_comment_for_job(&deferred_comment(8), 8));
        insta::assert_snapshot!("status_empty", status_comment(None, 0, &[], &Spending::default(), 8));
        let waiting = status_comment(None, 1, &[NEEDS_ADMIN.to_owned()], &Spending::default(), 8);
        assert!(waiting.contains("**Waiting:**") && waiting.contains("Administrator"), "{waiting}");
        insta::assert_snapshot!("permission_notice", permission_notice("alice"));
        assert!(
            is_permission_notice(&permission_notice("alice")) && !is_bot_comment_for_a_job(&permission_notice("a"))
        );
        insta::assert_snapshot!("gave_up", gave_up_comment("the forge kept failing", Duration::from_secs(86_400), 8));
    }

    fn is_bot_comment_for_a_job(body: &str) -> bool {
        (0..100).any(|id| is_comment_for_job(body, id))
    }

    #[test]
    fn a_line_added_to_an_answer_keeps_its_marker_last() {
        let body =
            with_line(&refused_comment("busy", 5), &took_in_line(&[("@bob".into(), Some(9)), ("eve".into(), None)]));
        assert!(is_comment_for_job(&body, 5), "{body}");
        assert!(body.contains("**Took in:** comment 9 by bob, a request by eve, while the run went on"), "{body}");
        assert!(!body.contains("@bob"), "nobody is pinged: {body}");
    }

    #[test]
    fn overlong_comments_are_cut_with_a_note_and_keep_their_marker() {
        let mut r = sample();
        r.answer = "ü".repeat(70_000);
        let text = result_comment(&r, &PullRequestNote::Compare(None), None, 9);
        let cut = within_limit(&text);
        assert!(cut.chars().count() <= MAX_COMMENT_CHARS, "{}", cut.chars().count());
        assert!(cut.contains("Cut here") && is_comment_for_job(&cut, 9));
        assert!(cut.starts_with("üüü"));
        assert_eq!(within_limit("short <!-- kugetsu:job:1 -->"), "short <!-- kugetsu:job:1 -->");
    }

    #[test]
    fn failure_comments_keep_details_out() {
        let cases = [
            EngineError::Infra("cannot fetch gh/acme/widget (from https://git.internal:3000/acme/widget.git): fatal: unable to access 'https://git.internal:3000/': Could not resolve host".into()),
            EngineError::Infra("cannot start opencode `/opt/kugetsu/bin/opencode`: No such file or directory".into()),
            EngineError::Interrupted("opencode serve exited before it was ready; see /var/lib/kugetsu/opencode/serve.log".into()),
            EngineError::Agent("the model keeps failing (4 attempts): upstream 502 from https://api.example.com".into()),
            EngineError::Infra("pushing `kugetsu/4` failed: remote: @everyone /deploy now".into()),
        ];
        for error in cases {
            let text = failure_comment(&error, 1);
            for leak in ["://", "/opt", "/var", "fatal", "No such file", "502", "@everyone", "/deploy", "Could not"] {
                assert!(!text.contains(leak), "{leak} in {text}");
            }
        }
        assert!(
            failure_comment(&EngineError::Agent("the run took longer than 30m and was aborted".into()), 1)
                .starts_with("The run failed: the run took longer than 30m and was aborted.")
        );
    }

    #[test]
    fn failure_comment_snapshots() {
        insta::assert_snapshot!(
            "failure_agent",
            failure_comment(&EngineError::Agent("the run took longer than 30m and was aborted".into()), 3)
        );
        insta::assert_snapshot!(
            "failure_infra",
            failure_comment(&EngineError::Infra("cannot start opencode".into()), 3)
        );
        insta::assert_snapshot!(
            "not_allowed",
            not_allowed_comment("Sorry, only people with write access can ask me to work.", 5)
        );
    }
}
