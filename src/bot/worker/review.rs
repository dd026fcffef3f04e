//! Reviews: whether one asks the bot, and answering where it was made.

use super::{Outcome, Worker};
use crate::comment;
use crate::config::ReviewComments;
use crate::forge::{Forge, Review, ReviewComment};
use crate::queue::Job;
use crate::trigger::mentions;

impl Worker {
    /// The job with its review as the forge has it, if the review asks the bot:
    /// it or one of its comments mentions the bot, or it is on kugetsu's own
    /// pull request where every review counts. Otherwise nothing is done, and
    /// nothing said: a reviewer talking to people is not refused.
    pub(super) async fn review_for_the_bot(&self, forge: &dyn Forge, mut job: Job) -> Result<Job, Outcome> {
        let place = job.place();
        let Some(request) = job.review.as_mut() else { return Ok(job) };
        // Someone the forge said may not ask costs no further call.
        if self.permissions.is_known_stranger(place.repo(), &job.author) {
            return Err(Outcome::Done);
        }
        let event = &request.event;
        let review = match forge.review(place.repo(), place.number(), event.id, &job.author, &event.text).await {
            Ok(Some(review)) => review,
            Ok(None) => return Err(Outcome::Failed(format!("not confirmed by the forge: no such review on {place}"))),
            Err(e) if e.is_transient() => return Err(Outcome::Retry(format!("reading the review: {e}"))),
            Err(e) => return Err(Outcome::Failed(format!("reading the review: {e}"))),
        };
        let repo = job.issue.repo();
        let all = job.on_pull_request.is_some()
            && self
                .config
                .instance(repo.instance())
                .is_some_and(|i| i.review_comments_in(repo.owner(), repo.name()) == ReviewComments::All);
        // A bare approval says nothing to work on, whatever the mode.
        let says_something = !review.body.trim().is_empty() || !review.comments.is_empty();
        if !says_something || !all && !asks(&review, &self.config.bot.handle) {
            tracing::info!(review = review.id, "a review that does not ask the bot; nothing to do");
            return Err(Outcome::Done);
        }
        request.review = Some(review);
        Ok(job)
    }

    /// Posts the answer where the request was made: in the review thread of the
    /// first line comment on a forge that has threads (GitHub); otherwise in the
    /// conversation, quoting the line comment it answers.
    pub(super) async fn answer(&self, forge: &dyn Forge, job: &Job, id: i64, body: &str) -> Outcome {
        let place = job.place();
        if job.review.is_none() {
            return self.post_once(forge, &place, id, body).await;
        }
        // A reply that landed before a fault, or before a crash (when the
        // review, read at admission, is not known any more), is not sent twice.
        let bot = self.config.instance(place.repo().instance()).map(|i| i.bot_login.clone()).unwrap_or_default();
        let already = match forge.thread_comments(place.repo(), place.number()).await {
            Ok(all) => {
                all.iter().any(|c| c.author.eq_ignore_ascii_case(&bot) && comment::is_comment_for_job(&c.body, id))
            }
            Err(e) if e.is_transient() => return Outcome::Retry(format!("reading the review threads: {e}")),
            Err(_) => false,
        };
        if already {
            return Outcome::Done;
        }
        let Some(first) = job.review.as_ref().and_then(|r| r.review.as_ref()).and_then(|r| r.comments.first()) else {
            return self.post_once(forge, &place, id, body).await;
        };
        let body = comment::within_limit(body);
        let quoted = || format!("{}{body}", quote(first));
        match forge.reply_in_thread(place.repo(), place.number(), first.thread(), &body).await {
            Ok(Some(_)) => Outcome::Done,
            Ok(None) => self.post_once(forge, &place, id, &quoted()).await,
            Err(e) if e.is_transient() => Outcome::Retry(format!("replying in the review thread: {e}")),
            // The thread is gone (its comment deleted, say): the conversation still is there.
            Err(e) => {
                tracing::warn!(error = %e, "cannot reply in the review thread; answering in the conversation");
                self.post_once(forge, &place, id, &quoted()).await
            }
        }
    }
}

fn asks(review: &Review, handle: &str) -> bool {
    mentions(&review.body, handle) || review.comments.iter().any(|c| mentions(&c.body, handle))
}

/// Which line comment an answer in the conversation is about.
fn quote(c: &ReviewComment) -> String {
    let lines = match c.lines {
        Some((a, b)) if a == b => format!(" line {a}"),
        Some((a, b)) => format!(" lines {a}–{b}"),
        None => String::new(),
    };
    let said = comment::quiet(c.body.lines().next().unwrap_or_default());
    // A path is the repository's to name: any character but `/` and NUL.
    let path: String = c.path.chars().map(|ch| if ch.is_control() || ch == '`' { '?' } else { ch }).collect();
    format!("> On `{}`{lines}: {said}\n\n", comment::quiet(&path))
}
