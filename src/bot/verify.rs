//! Confirms a trigger with the forge before anything runs: a signed delivery
//! only says what someone holding the webhook secret claims. The run then uses
//! the forge's version: its author, its text.

use crate::forge::{Forge, ForgeError};
use crate::queue::{Job, JobTrigger};
use crate::trigger;

/// What the forge said about a job's trigger.
pub enum Checked {
    /// The forge agrees; the job now carries the forge's author and text.
    Confirmed(Box<Job>),
    /// The forge does not agree; the reason says where.
    Refuted(String),
    /// The forge could not be asked (a transient fault).
    Unknown(ForgeError),
}

/// Checks `job` with the forge: the comment exists on that issue by that author
/// and still says what triggered; the label is on the issue and the forge
/// records who added it; an issue body's mention is there, by the issue's author.
pub async fn confirm(forge: &dyn Forge, handle: &str, mut job: Job) -> Checked {
    let outcome = match (&job.trigger, job.comment.clone()) {
        (JobTrigger::Label { name }, _) => {
            let name = name.clone();
            confirm_label(forge, &mut job, &name).await
        }
        (_, Some(comment)) => confirm_comment(forge, handle, &mut job, comment.id).await,
        (_, None) => confirm_issue_body(forge, handle, &mut job).await,
    };
    match outcome {
        Ok(None) => Checked::Confirmed(Box::new(job)),
        Ok(Some(why)) => Checked::Refuted(why),
        Err(ForgeError::NotFound) => Checked::Refuted("the forge does not have it".into()),
        Err(e) if e.is_transient() => Checked::Unknown(e),
        Err(e) => Checked::Refuted(format!("the forge would not show it: {e}")),
    }
}

/// `Ok(Some(reason))` when the forge disagrees.
type Verdict = Result<Option<String>, ForgeError>;

async fn confirm_comment(forge: &dyn Forge, handle: &str, job: &mut Job, id: u64) -> Verdict {
    let found = forge.comment(job.issue.repo(), id).await?;
    if found.issue != Some(job.issue.number()) {
        return Ok(Some(format!("comment {id} is not on {}", job.issue)));
    }
    if !found.author.eq_ignore_ascii_case(&job.author) {
        return Ok(Some(format!("comment {id} is by @{}, not @{}", found.author, job.author)));
    }
    let still_says = match &job.trigger {
        JobTrigger::Control { command } => trigger::control_command(&found.body, handle) == Some(*command),
        JobTrigger::Refused { .. } => true,
        JobTrigger::Mention | JobTrigger::Label { .. } => trigger::mentions(&found.body, handle),
    };
    if !still_says {
        return Ok(Some(format!("comment {id} no longer asks for this")));
    }
    if let Some(comment) = job.comment.as_mut() {
        comment.body = found.body;
    }
    Ok(None)
}

async fn confirm_issue_body(forge: &dyn Forge, handle: &str, job: &mut Job) -> Verdict {
    let issue = forge.issue(&job.issue).await?;
    if !trigger::mentions(&issue.body, handle) {
        return Ok(Some(format!("{} does not mention @{handle}", job.issue)));
    }
    // Who edited a body in a mention is not on record; the issue's author is,
    // and it is their permission that counts.
    job.author = issue.author;
    job.issue_body = issue.body;
    Ok(None)
}

async fn confirm_label(forge: &dyn Forge, job: &mut Job, label: &str) -> Verdict {
    let issue = forge.issue(&job.issue).await?;
    if !issue.labels.iter().any(|l| l.eq_ignore_ascii_case(label)) {
        return Ok(Some(format!("{} does not carry the label `{label}`", job.issue)));
    }
    // Labels set when an issue is opened may leave no record: they are the author's.
    job.author = forge.label_added_by(&job.issue, label).await?.unwrap_or(issue.author);
    job.issue_body = issue.body;
    Ok(None)
}
