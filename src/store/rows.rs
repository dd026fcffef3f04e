//! Rows as both backends read them, and what they become: the SQL differs
//! between SQLite and PostgreSQL, the columns do not.

use std::path::PathBuf;
use std::str::FromStr;

use super::{Answer, BaseSession, IssueSession, SessionStatus, Wait};
use crate::issue_ref::{IssueRef, RepoRef};
use crate::queue::QueuedJob;

#[derive(sqlx::FromRow)]
pub(super) struct IssueRow {
    issue: String,
    session_id: Option<String>,
    branch: String,
    worktree: String,
    status: String,
    last_pushed_sha: Option<String>,
    last_result: Option<String>,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
    last_run_at: Option<i64>,
}

impl TryFrom<IssueRow> for IssueSession {
    type Error = anyhow::Error;
    fn try_from(row: IssueRow) -> anyhow::Result<Self> {
        Ok(Self {
            issue: IssueRef::from_str(&row.issue)?,
            session_id: row.session_id,
            branch: row.branch,
            worktree: PathBuf::from(row.worktree),
            status: SessionStatus::parse(&row.status)?,
            last_pushed_sha: row.last_pushed_sha,
            last_result: row.last_result.as_deref().map(serde_json::from_str).transpose()?,
            last_error: row.last_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_run_at: row.last_run_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct BaseRow {
    repo: String,
    session_id: String,
    worktree: String,
    created_at: i64,
}

impl TryFrom<BaseRow> for BaseSession {
    type Error = anyhow::Error;
    fn try_from(row: BaseRow) -> anyhow::Result<Self> {
        Ok(Self {
            repo: RepoRef::from_str(&row.repo)?,
            session_id: row.session_id,
            worktree: PathBuf::from(row.worktree),
            created_at: row.created_at,
        })
    }
}

/// A claimed job's columns: id, job, outcome, run_error, attempts, created_at.
pub(super) type ClaimedRow = (i64, String, Option<String>, Option<String>, i64, i64);

pub(super) fn queued_job((id, json, outcome, run_error, attempts, created_at): ClaimedRow) -> Option<QueuedJob> {
    match serde_json::from_str(&json) {
        Ok(job) => {
            Some(QueuedJob { id, job, outcome, run_error, attempts: u32::try_from(attempts).unwrap_or(0), created_at })
        }
        Err(e) => {
            tracing::error!(job = id, error = %e, "unreadable job left in the queue");
            None
        }
    }
}

pub(super) type WaitRow =
    (i64, String, String, i64, i64, Option<i64>, Option<String>, Option<String>, Option<i64>, Option<i64>);

pub(super) fn wait_from(row: WaitRow) -> anyhow::Result<Wait> {
    let (job_id, issue, asked, asked_at, deadline, comment_id, answer, answered_by, answer_comment, answered_at) = row;
    let answer = match (answer, answered_by) {
        (Some(text), Some(author)) => Some(Answer {
            text,
            author,
            comment_id: answer_comment.and_then(|id| u64::try_from(id).ok()),
            at: answered_at.unwrap_or(0),
        }),
        _ => None,
    };
    Ok(Wait {
        job_id,
        issue: issue.parse().map_err(|e| anyhow::anyhow!("a wait names a bad issue `{issue}`: {e}"))?,
        asked: serde_json::from_str(&asked)?,
        asked_at,
        deadline,
        comment_id: comment_id.and_then(|id| u64::try_from(id).ok()),
        answer,
    })
}
