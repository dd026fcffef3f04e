//! The fake forge's commit statuses and check runs.
//!
//! Sources: GitHub, docs.github.com/en/rest/commits/statuses ("Get the combined
//! status for a specific reference") and /rest/checks/runs ("List check runs for
//! a Git reference"); gitea, `routers/api/v1/repo/status.go`
//! (GetCombinedCommitStatusByRef) and `modules/structs/status.go`, whose
//! status objects name their state `status`. Gitea has no check runs.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::fake_forge::{Flavor, Request, State};

#[derive(Debug, Clone)]
pub struct Status {
    pub repo: String,
    pub sha: String,
    pub context: String,
    /// `pending`, `success`, `error` or `failure` (both forges).
    pub state: String,
    pub target_url: String,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct CheckRun {
    pub repo: String,
    pub sha: String,
    pub name: String,
    /// `success`, `failure`, `timed_out`, `neutral`…
    pub conclusion: String,
    pub summary: String,
}

#[derive(Default)]
pub struct Checks {
    pub statuses: Vec<Status>,
    pub runs: Vec<CheckRun>,
}

/// `…/commits/{sha}/…` of a repository that exists.
pub(super) fn call(state: &State, req: &Request, repo: &str, rest: &[&str]) -> Option<Response> {
    match (req.method.as_str(), rest) {
        ("GET", [sha, "status"]) => {
            // Both: the newest status per context.
            let mut latest: Vec<&Status> = Vec::new();
            for s in state.checks.statuses.iter().rev().filter(|s| s.repo == repo && s.sha == *sha) {
                if !latest.iter().any(|l| l.context == s.context) {
                    latest.push(s);
                }
            }
            let overall = if latest.iter().any(|s| matches!(s.state.as_str(), "failure" | "error")) {
                "failure"
            } else if latest.iter().all(|s| s.state == "success") && !latest.is_empty() {
                "success"
            } else {
                "pending"
            };
            let key = if req.flavor == Flavor::Gitea { "status" } else { "state" };
            let statuses: Vec<Value> = latest
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut v = json!({
                        "id": i + 1, "context": s.context, "description": s.description,
                        "target_url": s.target_url, "created_at": "2026-11-30T00:00:00Z"
                    });
                    v[key] = json!(s.state);
                    v
                })
                .collect();
            let body = json!({ "state": overall, "sha": sha, "total_count": statuses.len(), "statuses": statuses });
            Some(axum::Json(body).into_response())
        }
        ("GET", [sha, "check-runs"]) if req.flavor == Flavor::Github => {
            let runs: Vec<Value> = state
                .checks
                .runs
                .iter()
                .filter(|r| r.repo == repo && r.sha == *sha)
                .enumerate()
                .map(|(i, r)| {
                    json!({
                        "id": i + 1, "name": r.name, "head_sha": r.sha, "status": "completed",
                        "conclusion": r.conclusion, "html_url": format!("https://forge.example.com/{repo}/runs/{}", i + 1),
                        "output": { "title": format!("{} report", r.name), "summary": r.summary, "text": null }
                    })
                })
                .collect();
            Some(axum::Json(json!({ "total_count": runs.len(), "check_runs": runs })).into_response())
        }
        _ => None,
    }
}
