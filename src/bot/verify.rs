//! Confirms a trigger with the forge before anything runs: a signed delivery
//! only says what someone holding the webhook secret claims. The run then uses
//! the forge's version of everything the prompt and the answer show: the
//! author, the comment, the issue's title and body, the repository's page.

use sha2::{Digest, Sha256};

use crate::forge::{Forge, ForgeError, IssueFacts};
use crate::queue::{Job, JobTrigger};
use crate::trigger;

/// What the forge said about a job's trigger.
pub enum Checked {
    /// The forge agrees; the job now carries the forge's author and text, and
    /// `key` names the trigger itself, the same however often it is delivered.
    Confirmed { job: Box<Job>, key: String },
    /// The forge does not agree; the reason says where.
    Refuted(String),
    /// The forge could not be asked (a transient fault).
    Unknown(ForgeError),
}

/// Checks `job` with the forge: the comment exists on that issue by that author
/// and still says what triggered; the label is on the issue and the forge
/// records who added it; an issue body's mention is there, by the issue's author.
pub async fn confirm(forge: &dyn Forge, handle: &str, mut job: Job) -> Checked {
    let outcome = async {
        let issue = forge.issue(&job.place()).await?;
        let key = match (&job.trigger, job.comment.clone()) {
            (JobTrigger::Review, _) => confirm_review(forge, &mut job).await?,
            (JobTrigger::Label { name }, _) => {
                let name = name.clone();
                confirm_label(forge, &mut job, &issue, &name).await?
            }
            (_, Some(comment)) => confirm_comment(forge, handle, &mut job, comment.id).await?,
            // A refusal of a label request carries no comment: the issue is enough.
            (JobTrigger::Refused { .. }, None) => Ok(format!("refused:{}", job.delivery_id)),
            (_, None) => confirm_issue_body(handle, &mut job, &issue),
        };
        adopt_issue(&mut job, issue);
        Ok::<_, ForgeError>(key)
    }
    .await;
    match outcome {
        Ok(Ok(key)) => Checked::Confirmed { key: format!("{}:{key}", job.place()), job: Box::new(job) },
        Ok(Err(why)) => Checked::Refuted(why),
        Err(ForgeError::NotFound) => Checked::Refuted("the forge does not have it".into()),
        Err(e) if e.is_transient() => Checked::Unknown(e),
        Err(e) => Checked::Refuted(format!("the forge would not show it: {e}")),
    }
}

/// `Ok(key)` when the forge agrees, `Err(reason)` when it does not.
type Verdict = Result<String, String>;

/// What the prompt and the answer show comes from the forge, not the payload.
pub(super) fn adopt_issue(job: &mut Job, issue: IssueFacts) {
    job.title = issue.title;
    job.issue_body = issue.body;
    job.is_pull_request = issue.is_pull_request;
    job.repo_html_url = issue.html_url.as_deref().and_then(repository_page);
}

/// `https://host/owner/repo` from an issue's or pull request's page.
pub(super) fn repository_page(issue_url: &str) -> Option<String> {
    let trimmed = issue_url.trim_end_matches('/');
    let (rest, number) = trimmed.rsplit_once('/')?;
    let (repo, kind) = rest.rsplit_once('/')?;
    (number.parse::<u64>().is_ok() && matches!(kind, "issues" | "pull" | "pulls")).then(|| repo.to_owned())
}

fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

async fn confirm_comment(forge: &dyn Forge, handle: &str, job: &mut Job, id: u64) -> Result<Verdict, ForgeError> {
    let found = forge.comment(job.issue.repo(), id).await?;
    if !found.issue.as_ref().is_some_and(|place| place.is(&job.place())) {
        return Ok(Err(format!("comment {id} is not on {}", job.place())));
    }
    if !found.author.eq_ignore_ascii_case(&job.author) {
        return Ok(Err(format!("comment {id} is by @{}, not @{}", found.author, job.author)));
    }
    let still_says = match &job.trigger {
        JobTrigger::Control { command } => trigger::control_command(&found.body, handle) == Some(*command),
        // Any words by its author answer; the comment need only exist.
        JobTrigger::Refused { .. } | JobTrigger::Answer { .. } => true,
        JobTrigger::Mention | JobTrigger::Label { .. } | JobTrigger::Review => trigger::mentions(&found.body, handle),
        // Confirmed by its own checks (worker/ci_fix.rs), never by a comment.
        JobTrigger::CiFix { .. } => false,
    };
    if !still_says {
        return Ok(Err(format!("comment {id} no longer asks for this")));
    }
    // The same comment with the same text is one request, however often it arrives.
    let key = format!("comment:{id}:{}", digest(&found.body));
    if let Some(comment) = job.comment.as_mut() {
        comment.body = found.body;
    }
    Ok(Ok(key))
}

/// The review, as the forge has it, is by the job's author; its comments are
/// what the prompt shows.
async fn confirm_review(forge: &dyn Forge, job: &mut Job) -> Result<Verdict, ForgeError> {
    let place = job.place();
    let Some(request) = job.review.as_mut() else { return Ok(Err("the job names no review".to_owned())) };
    let review = match request.review.take() {
        Some(review) => review,
        None => {
            match forge.review(place.repo(), place.number(), request.event.id, &job.author, &request.event.text).await?
            {
                Some(review) => review,
                None => return Ok(Err(format!("{place} has no such review by @{}", job.author))),
            }
        }
    };
    if !review.author.eq_ignore_ascii_case(&job.author) {
        return Ok(Err(format!("review {} is by @{}, not @{}", review.id, review.author, job.author)));
    }
    let key = format!("review:{}", review.id);
    request.review = Some(review);
    Ok(Ok(key))
}

fn confirm_issue_body(handle: &str, job: &mut Job, issue: &IssueFacts) -> Verdict {
    if !trigger::mentions(&issue.body, handle) {
        return Err(format!("{} does not mention @{handle}", job.place()));
    }
    // Who edited a mention into a body is not on record; the issue's author is,
    // and it is their permission that counts.
    job.author = issue.author.clone();
    Ok(format!("body:{}", digest(&issue.body)))
}

async fn confirm_label(
    forge: &dyn Forge,
    job: &mut Job,
    issue: &IssueFacts,
    label: &str,
) -> Result<Verdict, ForgeError> {
    if !issue.labels.iter().any(|l| l.eq_ignore_ascii_case(label)) {
        return Ok(Err(format!("{} does not carry the label `{label}`", job.place())));
    }
    let key = match forge.label_added_by(&job.place(), label).await? {
        Some(added) => {
            job.author = added.by;
            format!("label:{}:{}", label.to_ascii_lowercase(), added.record)
        }
        // Labels set when an issue is opened may leave no record: they are the author's.
        None => {
            job.author = issue.author.clone();
            format!("label:{}:opened", label.to_ascii_lowercase())
        }
    };
    Ok(Ok(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_page_comes_from_the_issue_page() {
        assert_eq!(
            repository_page("https://github.com/acme/widget/issues/5").as_deref(),
            Some("https://github.com/acme/widget")
        );
        assert_eq!(
            repository_page("https://git.example.com/acme/widget/pulls/7/").as_deref(),
            Some("https://git.example.com/acme/widget")
        );
        assert_eq!(repository_page("https://evil.example.com/x"), None);
        assert_eq!(repository_page(""), None);
    }
}
