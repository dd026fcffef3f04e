//! The files a request links to on its forge, fetched for the agent.

use super::Worker;
use crate::forge::Forge;
use crate::forge::attachments::{attachment_links, fetch};
use crate::opencode::FilePart;
use crate::queue::{Job, JobTrigger};

impl Worker {
    /// The attachments the request's text links to on this instance, fetched,
    /// and a line for the prompt saying what was given and what was not.
    pub(super) async fn attachments(&self, forge: &dyn Forge, job: &Job) -> (Vec<FilePart>, Option<String>) {
        let max_mib = self.config.bot.attachment_max_mib;
        let Some(instance) = self.config.instance(job.issue.repo().instance()).filter(|_| max_mib > 0) else {
            return (Vec::new(), None);
        };
        let text = match (&job.trigger, &job.comment) {
            (JobTrigger::Mention, Some(comment)) => comment.body.as_str(),
            (JobTrigger::Mention | JobTrigger::Label { .. }, None) => job.issue_body.as_str(),
            _ => return (Vec::new(), None),
        };
        let repo = job.issue.repo();
        let links = attachment_links(instance.kind, &instance.web_url, (repo.owner(), repo.name()), text);
        if links.is_empty() {
            return (Vec::new(), None);
        }
        let token = match forge.git_token().await {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(error = %e, "no token to fetch attachments with");
                None
            }
        };
        // The note names files by their place in the request only: their names and
        // paths are the requester's words, which stay inside the fences.
        let (mut files, mut given, mut missed) = (Vec::new(), Vec::new(), Vec::new());
        for (n, url) in links.iter().enumerate() {
            match fetch(url, token.as_ref(), max_mib * 1024 * 1024, self.config.bot.api_timeout).await {
                Ok(file) => {
                    given.push(format!("link {} ({}, {} bytes)", n + 1, file.mime, file.bytes.len()));
                    files.push(file);
                }
                Err(why) => {
                    tracing::info!(%url, %why, "an attachment was not fetched");
                    missed.push(format!("link {} ({why})", n + 1));
                }
            }
        }
        let mut note = String::new();
        if !given.is_empty() {
            note.push_str(&format!(
                "\nFiles attached to the request, given with this message: {}.\n",
                given.join(", ")
            ));
        }
        if !missed.is_empty() {
            note.push_str(&format!("\nAttachments that could not be fetched: {}.\n", missed.join(", ")));
        }
        (files, Some(note))
    }
}
