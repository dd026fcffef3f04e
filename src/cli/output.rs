//! How the CLI prints results: readable by default, JSON with `--json`.

use std::io::Write;

use crate::engine::{EngineError, Finding, PruneReport};
use crate::result::RunResult;
use crate::store::{IssueSession, format_millis};

fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot encode JSON: {e}"),
    }
}

pub fn print_result(r: &RunResult, json: bool) {
    if json {
        return print_json(r);
    }
    println!("{}", r.answer);
    println!();
    println!("issue:    {}", r.issue);
    println!("session:  {}", r.session_id);
    match &r.pushed_to {
        Some(remote) => println!("branch:   {} (pushed to {remote})", r.branch),
        None => println!("branch:   {} (nothing new to push)", r.branch),
    }
    for c in &r.commits {
        println!("commit:   {} {}", &c.sha[..c.sha.len().min(10)], c.subject);
    }
    if !r.files_changed.is_empty() {
        println!("files:    {}", r.files_changed.join(", "));
    }
    for d in &r.denied {
        println!("denied:   {d}");
    }
    println!(
        "tokens:   {} in, {} out, {} cache read; cost ${:.4}",
        r.tokens.input, r.tokens.output, r.tokens.cache_read, r.cost
    );
    println!("duration: {}", humantime::format_duration(std::time::Duration::from_secs(r.duration.as_secs())));
}

pub fn print_error_json(e: &EngineError) {
    print_json(&serde_json::json!({ "error": { "kind": e.kind(), "message": e.to_string() } }));
}

pub fn print_list(records: &[IssueSession], json: bool) {
    if json {
        return print_json(&records);
    }
    if records.is_empty() {
        println!("no issues tracked yet");
        return;
    }
    // One write for the lot: stdout flushes at every line, which for thousands
    // of issues costs more than reading them.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = write_list(&mut out, records).and_then(|()| out.flush());
    // A reader that stopped early (`| head`) is not an error; anything else is said.
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write the list: {e}");
    }
}

fn write_list(out: &mut impl Write, records: &[IssueSession]) -> std::io::Result<()> {
    for r in records {
        let last_run = r.last_run_at.map_or_else(|| "never".to_owned(), format_millis);
        writeln!(
            out,
            "{}  {}  session {}  branch {}  last run {}\n    worktree {}",
            r.issue,
            r.status.as_str(),
            r.session_id.as_deref().unwrap_or("-"),
            r.branch,
            last_run,
            r.worktree.display()
        )?;
        if let Some(error) = &r.last_error {
            writeln!(out, "    last error: {error}")?;
        }
    }
    Ok(())
}

pub fn print_prune(report: &PruneReport, json: bool) {
    if json {
        return print_json(report);
    }
    let nothing = report.findings.is_empty() && report.history.is_empty() && report.closed.is_empty();
    if nothing {
        println!("nothing to prune");
    }
    let verb = if report.removed { "removed" } else { "found" };
    for issue in &report.closed {
        println!(
            "{verb}: {issue}: closed longer than bot.closed_issue_grace; its working copy goes, its session stays"
        );
    }
    if !report.history.is_empty() {
        let h = report.history;
        println!(
            "{verb}: {} finished jobs, {} deliveries and {} event identities older than bot.retention",
            h.jobs, h.deliveries, h.identities
        );
    }
    for f in &report.findings {
        match f {
            Finding::MissingSession { issue, session_id } => {
                println!("{verb}: {issue}: its session {session_id} no longer exists")
            }
            Finding::MissingWorktree { issue, worktree } => {
                println!("{verb}: {issue}: its worktree {} no longer exists", worktree.display())
            }
            Finding::OrphanWorktree { path } => {
                println!("{verb}: worktree {} has no record", path.display())
            }
            Finding::OrphanSession { session_id, title } => {
                println!("{verb}: session {session_id} ({title}) has no record")
            }
        }
    }
    if !report.removed && !nothing {
        println!("run `kugetsu prune --force` to remove these");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
}
