//! No lost triggers. GitHub does not retry a failed delivery and Gitea cannot
//! redeliver at all, so a mention made or a trigger label put on while kugetsu
//! restarts, or whose delivery was lost, would never run. At start-up and every
//! `bot.reconcile_interval`, kugetsu reads each served repository's comments
//! changed since it last looked, and its open issues carrying a trigger label
//! changed since then, and hands the triggers to the webhook intake as their
//! deliveries would have been: a mention with the same identity, so one that also
//! arrives by webhook is stored once; a label by the forge's record of its
//! addition, which the worker acts on once. The worker confirms each with the
//! forge like any delivery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::verify::repository_page;
use crate::event::{CommentInfo, EventKind, ForgeEvent, identity};
use crate::forge::{Forge, ForgeComment, Listed};
use crate::issue_ref::{InstanceName, IssueRef, RepoRef};
use crate::queue::Queue;
use crate::store::{HOUR_MS, now_millis};
use crate::webhook::{Intake, take_event};

/// Each look starts this far before the last one, so a comment the forge saved
/// just as the last look read (or with a clock a little behind ours) is not
/// missed; what is seen twice is stored once.
const OVERLAP: Duration = Duration::from_secs(60);

pub struct Reconciler {
    /// Where the task's lease is: one replica reconciles at a time.
    pub store: Arc<dyn crate::store::Store>,
    pub lease: Duration,
    pub intake: Arc<Intake>,
    pub forges: Arc<HashMap<InstanceName, Arc<dyn Forge>>>,
    pub queue: Queue,
    pub interval: Duration,
    /// The tag of each list's last answer, with the `since` it was asked with.
    pub etags: std::sync::Mutex<HashMap<String, (String, String)>>,
}

/// What one look at a repository found.
struct Look {
    stored: usize,
    /// When the newest comment seen was changed, by the forge's clock: the next
    /// look starts there, so until a newer one comes it asks the same question,
    /// which the forge can answer "not modified" for free.
    newest_ms: Option<i64>,
    /// The answers' tags, kept once the whole look succeeded: a tag kept for an
    /// answer whose triggers were not all taken would hide them from then on.
    tags: Vec<(String, String, Option<String>)>,
}

impl Reconciler {
    /// Looks now, then every interval, until `stopped` turns true.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        loop {
            if super::replica::runs_task(self.store.as_ref(), "reconcile", self.lease).await {
                self.look().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stopped.changed() => return,
            }
        }
    }

    /// One look at every served repository. Returns how many jobs it stored.
    pub async fn look(&self) -> usize {
        let repos = match self.queue.served_repos().await {
            Ok(repos) => repos,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot list the repositories to reconcile");
                return 0;
            }
        };
        let mut stored = 0;
        for (repo, last_ms) in repos {
            let Ok(repo) = repo.parse::<RepoRef>() else { continue };
            let started = now_millis();
            // A repository seen for the first time (a session the CLI started) is
            // looked at from now on: older mentions were never kugetsu's to run.
            let last_ms = if last_ms > 0 { last_ms } else { started };
            match self.look_at(&repo, last_ms, started).await {
                Ok(Look { stored: found, newest_ms, tags }) => {
                    stored += found;
                    self.keep_tags(tags);
                    if let Some(newest) = newest_ms.filter(|n| *n > last_ms)
                        && let Err(e) = self.queue.set_reconciled(&repo.to_string(), newest).await
                    {
                        tracing::warn!(%repo, error = %format!("{e:#}"), "cannot record a reconciliation");
                    }
                }
                Err(e) => tracing::warn!(%repo, error = %e, "cannot read recent comments; trying again later"),
            }
        }
        if stored > 0 {
            tracing::info!(jobs = stored, "reconciliation found triggers that never arrived as deliveries");
        }
        stored
    }

    async fn look_at(&self, repo: &RepoRef, last_ms: i64, now_ms: i64) -> anyhow::Result<Look> {
        let mut look = Look { stored: 0, newest_ms: None, tags: Vec::new() };
        let Some(forge) = self.forges.get(repo.instance()) else { return Ok(look) };
        // A mention older than the retry deadline would have been given up by
        // now; running it after so long would surprise whoever wrote it. On the
        // hour, so a quiet repository is asked the same question for an hour.
        let deadline = i64::try_from(self.intake.bot.retry_deadline.as_millis()).unwrap_or(i64::MAX);
        let oldest = now_ms.saturating_sub(deadline) / HOUR_MS * HOUR_MS;
        let from_ms = last_ms.max(oldest);
        let from = UNIX_EPOCH + Duration::from_millis(u64::try_from(from_ms).unwrap_or(0)).saturating_sub(OVERLAP);
        let since = humantime::format_rfc3339_seconds(from).to_string();
        let key = format!("{repo} comments");
        let listed = forge.comments_since(repo, &since, self.etag(&key, &since).as_deref()).await?;
        let Listed::Changed { items: comments, etag } = listed else {
            return self.look_at_labels(forge.as_ref(), repo, &since, from, look).await;
        };
        look.tags.push((key, since.clone(), etag));
        look.newest_ms = comments.iter().filter_map(|c| c.updated_at.as_deref().and_then(parse_time)).max().map(millis);
        for comment in comments {
            let Some(issue) = issue_of(repo, &comment)? else { continue };
            // Plain words count only as the answer to a question a run waits on.
            if !crate::trigger::mentions(&comment.body, &self.intake.bot.handle)
                && !self.may_answer(&issue, &comment).await?
            {
                continue;
            }
            let identity = comment_identity(&issue, &comment);
            // Most mentions came by webhook: their issue need not be read again.
            if self.queue.knows_event(&identity).await? {
                continue;
            }
            let event = self.event_of(forge.as_ref(), issue, identity, comment).await?;
            if take_event(&self.intake, &event).await? {
                tracing::info!(issue = %event.issue, comment = ?event.comment.as_ref().map(|c| c.id), "queued a mention no delivery brought");
                look.stored += 1;
            }
        }
        self.look_at_labels(forge.as_ref(), repo, &since, from, look).await
    }

    async fn look_at_labels(
        &self,
        forge: &dyn Forge,
        repo: &RepoRef,
        since: &str,
        from: SystemTime,
        mut look: Look,
    ) -> anyhow::Result<Look> {
        for label in &self.intake.bot.trigger_labels {
            let key = format!("{repo} label {label}");
            let listed = forge.labeled_since(repo, label, since, self.etag(&key, since).as_deref()).await?;
            let Listed::Changed { items: issues, etag } = listed else { continue };
            look.tags.push((key, since.to_owned(), etag));
            look.stored += self.labels_at(forge, repo, label, issues, from).await?;
        }
        Ok(look)
    }

    /// The tag of the last answer to the same question, if there was one.
    fn etag(&self, key: &str, since: &str) -> Option<String> {
        let etags = self.etags.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        etags.get(key).filter(|(asked, _)| asked == since).map(|(_, tag)| tag.clone())
    }

    /// Keeps each answer's tag (or forgets the old one), with its question's `since`.
    fn keep_tags(&self, tags: Vec<(String, String, Option<String>)>) {
        let mut etags = self.etags.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (key, since, tag) in tags {
            match tag {
                Some(tag) => etags.insert(key, (since, tag)),
                None => etags.remove(&key),
            };
        }
    }

    /// Trigger labels put on since `from` that no job acted on: each runs once,
    /// as its delivery would have. The forge's record of the addition must be
    /// that recent too: an issue labelled long ago and changed since is not
    /// asked again.
    async fn labels_at(
        &self,
        forge: &dyn Forge,
        repo: &RepoRef,
        label: &str,
        issues: Vec<(u64, crate::forge::IssueFacts)>,
        from: SystemTime,
    ) -> anyhow::Result<usize> {
        let mut stored = 0;
        for (number, facts) in issues {
            // One issue the forge describes oddly does not stop the others.
            let Ok(issue) = repo.issue(number) else { continue };
            let added = match forge.label_added_by(&issue, label).await {
                Ok(Some(added)) => added,
                Ok(None) => continue,
                // The whole look is tried again, from where the last one began.
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(%issue, error = %e, "cannot read who put a trigger label on; trying again later");
                    continue;
                }
            };
            // An addition with no readable time is not known to be recent.
            let Some(at) = added.at.as_deref().and_then(parse_time).filter(|at| *at >= from) else { continue };
            // Its delivery may have come and be waiting, or been refused: that job
            // was stored after the addition (give or take the clocks' difference).
            let skew = i64::try_from(OVERLAP.as_millis()).unwrap_or(0);
            if self.queue.label_job_since(&issue, label, millis(at).saturating_sub(skew)).await? {
                continue;
            }
            // The key the worker records once it acts on this addition.
            let key = format!("{issue}:label:{}:{}", label.to_ascii_lowercase(), added.record);
            let identity = identity(&issue, None, ("issues", "labeled"), Some(&format!("label-{}", added.record)));
            if self.queue.trigger_handled(&key).await? || self.queue.knows_event(&identity).await? {
                continue;
            }
            let event = ForgeEvent {
                delivery_id: format!("reconciled-label-{}", added.record),
                identity,
                kind: EventKind::IssueLabeled { added: Some(label.to_owned()) },
                author_is_bot: added.by.ends_with("[bot]"),
                author: added.by,
                title: facts.title,
                body: facts.body,
                labels: facts.labels,
                is_pull_request: facts.is_pull_request,
                comment: None,
                repo_html_url: facts.html_url.as_deref().and_then(repository_page),
                default_branch: None,
                repo_id: None,
                previous_body: None,
                review: None,
                issue,
            };
            if take_event(&self.intake, &event).await? {
                tracing::info!(issue = %event.issue, label, "queued a trigger label no delivery brought");
                stored += 1;
            }
        }
        Ok(stored)
    }

    /// The event a delivery of the comment's creation would have made.
    /// Whether a comment without a mention may answer a run's question: it is
    /// on an issue (or its kugetsu pull request) whose run waits, and no bot's.
    async fn may_answer(&self, place: &IssueRef, comment: &ForgeComment) -> anyhow::Result<bool> {
        if !self.queue.any_waits() || crate::comment::is_bot_comment(&comment.body) {
            return Ok(false);
        }
        let issue = self.queue.issue_of_pull_request(place).await?.unwrap_or_else(|| place.clone());
        Ok(self.queue.open_wait(&issue).await?.is_some())
    }

    async fn event_of(
        &self,
        forge: &dyn Forge,
        issue: IssueRef,
        identity: String,
        comment: ForgeComment,
    ) -> anyhow::Result<ForgeEvent> {
        let facts = forge.issue(&issue).await?;
        let repo_html_url = facts.html_url.as_deref().and_then(repository_page);
        Ok(ForgeEvent {
            delivery_id: format!("reconciled-comment-{}", comment.id),
            identity,
            issue,
            kind: EventKind::CommentCreated,
            author_is_bot: comment.author.ends_with("[bot]"),
            author: comment.author,
            title: facts.title,
            body: facts.body,
            labels: facts.labels,
            is_pull_request: facts.is_pull_request,
            comment: Some(CommentInfo { id: comment.id, body: comment.body }),
            repo_html_url,
            default_branch: None,
            repo_id: None,
            previous_body: None,
            review: None,
        })
    }
}

/// Milliseconds since the Unix epoch, the store's unit.
fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A forge's RFC 3339 time (GitHub writes `Z`; Gitea its server's offset).
fn parse_time(text: &str) -> Option<SystemTime> {
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    let secs = u64::try_from(at.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(u64::from(at.timestamp_subsec_nanos())))
}

/// The issue a comment is on, if it is one of `repo`'s and by a valid login.
fn issue_of(repo: &RepoRef, comment: &ForgeComment) -> anyhow::Result<Option<IssueRef>> {
    let Some(place) = comment.issue.as_ref() else { return Ok(None) };
    let issue = repo.issue(place.number)?;
    Ok((place.is(&issue) && crate::event::is_valid_login(&comment.author)).then_some(issue))
}

/// The identity a delivery of the comment's creation would have had.
fn comment_identity(issue: &IssueRef, comment: &ForgeComment) -> String {
    identity(issue, Some(comment.id), ("issue_comment", "created"), comment.updated_at.as_deref())
}
