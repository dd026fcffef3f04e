//! The status page: the jobs running and queued, every tracked issue, the
//! recent failures. Server-rendered HTML with no script and no build step.
//! Issue titles, errors and logins come from the forge or the agent, so every
//! text goes through maud, which escapes it.

use maud::{DOCTYPE, Markup, html};

use crate::queue::JobLine;
use crate::store::format_millis;

/// Everything the page shows, gathered before it is written.
#[derive(Debug, Clone, Default)]
pub struct StatusPage {
    pub generated_at: i64,
    pub jobs: Vec<JobRow>,
    pub issues: Vec<IssueRow>,
    pub failures: Vec<JobRow>,
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub line: JobLine,
    /// The issue's page on the forge.
    pub issue_url: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct IssueRow {
    pub issue: String,
    pub issue_url: Option<String>,
    pub branch: String,
    pub branch_url: Option<String>,
    /// The pull request kugetsu opened for the branch, when there is one: its
    /// number and page.
    pub pull_request: Option<(u64, String)>,
    pub state: String,
    pub last_run_at: Option<i64>,
    /// The last run's model cost.
    pub cost: Option<f64>,
    pub last_error: Option<String>,
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}\
th{background:#f4f4f4}.empty{color:#777}.failed{color:#a00}.running{color:#06c}.error{white-space:pre-wrap;max-width:40em}\
code{font-size:.95em}";

pub fn render(page: &StatusPage) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // A plain refresh: the page stays current with no script.
                meta http-equiv="refresh" content="30";
                title { "kugetsu status" }
                style { (STYLE) }
            }
            body {
                h1 { "kugetsu" }
                p { "As of " (format_millis(page.generated_at)) ". Read-only; refreshes every 30 s." }
                section id="jobs" {
                    h2 { "Running and queued jobs (" (page.jobs.len()) ")" }
                    (job_table(&page.jobs, "Nothing is running or queued.", false))
                }
                section id="issues" {
                    h2 { "Tracked issues (" (page.issues.len()) ")" }
                    (issue_table(&page.issues))
                }
                section id="failures" {
                    h2 { "Recent failures (" (page.failures.len()) ")" }
                    (job_table(&page.failures, "No failures.", true))
                }
            }
        }
    }
    .into_string()
}

fn job_table(rows: &[JobRow], empty: &str, failures: bool) -> Markup {
    if rows.is_empty() {
        return html! { p.empty { (empty) } };
    }
    html! {
        table {
            thead { tr {
                th { "Job" } th { "Issue" } th { "Trigger" } th { "By" }
                th { (if failures { "Failed" } else { "State" }) }
                th { (if failures { "Why" } else { "Since" }) }
            } }
            tbody {
                @for row in rows {
                    @let job = &row.line;
                    tr.job {
                        td { (job.id) }
                        td { (issue_link(&job.issue, row.issue_url.as_deref())) }
                        td { (job.kind) }
                        td { (job.author) }
                        @if failures {
                            td { (format_millis(job.updated_at)) }
                            td.error { (job.error.as_deref().unwrap_or("")) }
                        } @else {
                            td class=(job_state(job)) { (job_state(job)) }
                            td { (format_millis(job.created_at))
                                @if let Some(why) = &job.error { br; span.error { (why) } } }
                        }
                    }
                }
            }
        }
    }
}

/// A job put back until later waits; one due now is queued.
fn job_state(job: &JobLine) -> &'static str {
    match job.status.as_str() {
        "running" => "running",
        _ if job.not_before > job.updated_at.max(job.created_at) => "waiting",
        _ => "queued",
    }
}

fn issue_table(rows: &[IssueRow]) -> Markup {
    if rows.is_empty() {
        return html! { p.empty { "No issue has been handed to the bot yet." } };
    }
    html! {
        table {
            thead { tr {
                th { "Issue" } th { "Branch" } th { "Pull request" } th { "State" }
                th { "Last run" } th { "Cost" }
            } }
            tbody {
                @for row in rows {
                    tr.issue {
                        td { (issue_link(&row.issue, row.issue_url.as_deref())) }
                        td { @match &row.branch_url {
                            Some(url) => a href=(url) { code { (row.branch) } },
                            None => code { (row.branch) },
                        } }
                        td { @match &row.pull_request {
                            Some((number, url)) => a href=(url) { "#" (number) },
                            None => span.empty { "none" },
                        } }
                        td class=(row.state) { (row.state)
                            @if let Some(e) = &row.last_error { br; span.error { (e) } } }
                        td { (row.last_run_at.map_or_else(|| "never".to_owned(), format_millis)) }
                        td { (row.cost.map_or_else(String::new, |c| format!("${c:.4}"))) }
                    }
                }
            }
        }
    }
}

fn issue_link(issue: &str, url: Option<&str>) -> Markup {
    match url {
        Some(url) => html! { a href=(url) { (issue) } },
        None => html! { (issue) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64, status: &str, error: Option<&str>) -> JobLine {
        JobLine {
            id,
            issue: "tea/acme/widgets#7".into(),
            kind: "mention".into(),
            status: status.into(),
            author: "alice".into(),
            created_at: 1_000,
            updated_at: 2_000,
            not_before: 0,
            error: error.map(str::to_owned),
            attempts: 0,
        }
    }

    #[test]
    fn text_from_the_forge_or_the_agent_is_escaped() {
        let page = StatusPage {
            issues: vec![IssueRow {
                issue: "tea/acme/widgets#7".into(),
                issue_url: Some("https://git.example.com/acme/widgets/issues/7?a=1&b=\"2\"".into()),
                branch: "kugetsu/7".into(),
                state: "failed".into(),
                last_error: Some("<script>alert(1)</script>".into()),
                ..IssueRow::default()
            }],
            failures: vec![JobRow { line: job(3, "failed", Some("<img src=x onerror=alert(1)>")), issue_url: None }],
            ..StatusPage::default()
        };
        let html = render(&page);
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(
            html.contains(r#"href="https://git.example.com/acme/widgets/issues/7?a=1&amp;b=&quot;2&quot;""#),
            "{html}"
        );
    }

    #[test]
    fn jobs_show_whether_they_run_wait_or_are_queued() {
        let mut waiting = job(2, "pending", Some("the forge answered 502"));
        waiting.not_before = 9_000;
        let page = StatusPage {
            jobs: vec![
                JobRow { line: job(1, "running", None), issue_url: None },
                JobRow { line: waiting, issue_url: None },
                JobRow { line: job(3, "pending", None), issue_url: None },
            ],
            ..StatusPage::default()
        };
        let html = render(&page);
        assert!(html.contains("Running and queued jobs (3)"), "{html}");
        for state in [
            r#"<td class="running">running</td>"#,
            r#"<td class="waiting">waiting</td>"#,
            r#"<td class="queued">queued</td>"#,
        ] {
            assert!(html.contains(state), "{state} in {html}");
        }
        assert!(html.contains("the forge answered 502"), "{html}");
        assert!(html.contains("No issue has been handed to the bot yet."), "{html}");
        assert!(html.contains("No failures."), "{html}");
    }
}
