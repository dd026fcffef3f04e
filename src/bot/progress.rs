//! What people see while a run goes on: one reaction on the trigger, replaced as
//! the run moves on (👀 taken, 🚀 working, then 👍 or 😕), and, with
//! `bot.progress = "comment"`, one progress comment, edited as the agent works
//! and folded to a line when the run ends.
//!
//! One task per run does all of it, in order, beside the run: the agent never
//! waits for the forge to show its progress.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::comment::{self, BranchLink};
use crate::config::ProgressMode;
use crate::forge::{Forge, Reacted, Reaction, ReactionTarget};
use crate::issue_ref::IssueRef;
use crate::opencode::AgentEvent;
use crate::result::{Ending, Progress};

/// Where and how one run shows its progress.
pub struct Showing {
    pub forge: Arc<dyn Forge>,
    /// Where the progress comment goes: where the trigger was made.
    pub place: IssueRef,
    pub target: ReactionTarget,
    pub job_id: i64,
    pub mode: ProgressMode,
    pub interval: Duration,
    /// kugetsu's login there: a progress comment is looked for among its comments.
    pub bot_login: String,
    pub branch: String,
    pub branch_url: Option<String>,
}

/// The handle of a run's progress task. Dropped without [`RunFeedback::finish`]
/// (the run was stopped or cut short), the task says the run stopped.
pub struct RunFeedback {
    events: mpsc::UnboundedSender<AgentEvent>,
    /// How the run ended; `None`: its answer is not out yet, so nothing is said.
    ending: oneshot::Sender<Option<Ending>>,
}

impl RunFeedback {
    /// Reacts 👀 at once and follows the run from there.
    pub fn start(showing: Showing) -> Self {
        let (events, received) = mpsc::unbounded_channel();
        let (ending, ended) = oneshot::channel();
        tokio::spawn(follow(showing, received, ended));
        Self { events, ending }
    }

    /// Where the agent's events go.
    pub fn events(&self) -> mpsc::UnboundedSender<AgentEvent> {
        self.events.clone()
    }

    /// The run is over and its answer out: the last edit and reaction follow,
    /// in the background.
    pub fn finish(self, ending: Ending) {
        let _ = self.ending.send(Some(ending));
    }

    /// The run is over, but its answer could not be posted yet: the progress
    /// comment is left as it is, for the job's next try to fold.
    pub fn leave(self) {
        let _ = self.ending.send(None);
    }
}

struct Shown {
    showing: Showing,
    reacted: Option<Reacted>,
    comment: Option<u64>,
    progress: Progress,
    started: Instant,
}

async fn follow(
    showing: Showing,
    mut events: mpsc::UnboundedReceiver<AgentEvent>,
    mut ended: oneshot::Receiver<Option<Ending>>,
) {
    let mut shown =
        Shown { showing, reacted: None, comment: None, progress: Progress::default(), started: Instant::now() };
    shown.react(Reaction::Eyes).await;
    let mut open = true;
    let mut dirty = false;
    let mut last_edit = Instant::now();
    let ending = loop {
        // A long run is edited less often: a forge's limits on writes are per hour.
        let gap = shown.showing.interval.max(shown.started.elapsed() / 20);
        let next_edit = last_edit + gap;
        tokio::select! {
            biased;
            ending = &mut ended => match ending {
                Ok(Some(ending)) => break ending,
                Ok(None) => return,
                // Dropped: the run was stopped, or kugetsu is going down.
                Err(_) => break Ending::Stopped,
            },
            event = events.recv(), if open => match event {
                Some(AgentEvent::Started) => {
                    shown.react(Reaction::Rocket).await;
                    if shown.showing.mode == ProgressMode::Comment && shown.comment.is_none() {
                        shown.comment = shown.open_comment().await;
                        last_edit = Instant::now();
                    }
                }
                Some(event) => dirty |= shown.progress.apply(event),
                None => open = false,
            },
            _ = tokio::time::sleep_until(next_edit), if dirty && shown.comment.is_some() => {
                shown.edit_progress().await;
                dirty = false;
                last_edit = Instant::now();
            }
        }
    };
    while let Ok(event) = events.try_recv() {
        shown.progress.apply(event);
    }
    shown.end(ending).await;
}

impl Shown {
    /// Puts `reaction` up, then takes the earlier one down, so one always shows.
    async fn react(&mut self, reaction: Reaction) {
        if self.reacted.is_some_and(|r| r.reaction == reaction) {
            return;
        }
        let (forge, repo, target) = (&self.showing.forge, self.showing.place.repo(), self.showing.target);
        match forge.react(repo, target, reaction).await {
            Ok(made) => {
                if let Some(earlier) = self.reacted.replace(made) {
                    self.take_down(earlier).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, reaction = reaction.content(), "could not react to the trigger"),
        }
    }

    async fn take_down(&self, reacted: Reacted) {
        let (forge, repo, target) = (&self.showing.forge, self.showing.place.repo(), self.showing.target);
        if let Err(e) = forge.unreact(repo, target, reacted).await {
            tracing::warn!(error = %e, reaction = reacted.reaction.content(), "could not take a reaction back");
        }
    }

    fn text(&self) -> String {
        let branch = BranchLink { name: &self.showing.branch, url: self.showing.branch_url.as_deref() };
        let elapsed = self.started.elapsed();
        let text =
            comment::progress_comment(&self.progress, elapsed, &branch, self.showing.interval, self.showing.job_id);
        comment::within_limit(&text).into_owned()
    }

    /// The job's progress comment: the one an earlier try of the job made (it
    /// was cut short by a crash or a restart), or a new one.
    async fn open_comment(&self) -> Option<u64> {
        let Showing { forge, place, job_id, bot_login, .. } = &self.showing;
        let earlier = match progress_comment_of(forge.as_ref(), place, bot_login, *job_id).await {
            Ok(found) => found,
            Err(e) => {
                // Without the list, a second comment beats a run nobody can follow.
                tracing::warn!(error = %e, "could not look for an earlier progress comment");
                None
            }
        };
        if let Some(earlier) = earlier {
            if let Err(e) = forge.edit_comment(place.repo(), earlier.id, &self.text()).await {
                tracing::warn!(error = %e, "could not take up the earlier progress comment");
            }
            return Some(earlier.id);
        }
        match forge.post_comment(place, &self.text()).await {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(error = %e, "could not post the progress comment");
                None
            }
        }
    }

    async fn edit_progress(&self) {
        let Some(id) = self.comment else { return };
        if let Err(e) = self.showing.forge.edit_comment(self.showing.place.repo(), id, &self.text()).await {
            tracing::warn!(error = %e, "could not edit the progress comment");
        }
    }

    async fn end(mut self, ending: Ending) {
        match ending {
            Ending::Succeeded => self.react(Reaction::ThumbsUp).await,
            Ending::Failed => self.react(Reaction::Confused).await,
            // A person stopped it, or kugetsu went down: no verdict on the work.
            Ending::Stopped => {
                if let Some(shown) = self.reacted.take() {
                    self.take_down(shown).await;
                }
            }
        }
        if let Some(id) = self.comment {
            let Showing { forge, place, job_id, .. } = &self.showing;
            let line = comment::progress_summary(&self.progress, self.started.elapsed(), ending, *job_id);
            if let Err(e) = forge.edit_comment(place.repo(), id, &line).await {
                tracing::warn!(error = %e, "could not fold the progress comment");
            }
        }
    }
}

/// Job `job_id`'s progress comment at `place`, among the bot's own comments.
async fn progress_comment_of(
    forge: &dyn Forge,
    place: &IssueRef,
    bot_login: &str,
    job_id: i64,
) -> Result<Option<crate::forge::ForgeComment>, crate::forge::ForgeError> {
    let all = forge.comments(place).await?;
    Ok(all
        .into_iter()
        .find(|c| c.author.eq_ignore_ascii_case(bot_login) && comment::is_progress_for_job(&c.body, job_id)))
}

/// Folds the progress comment a run left when kugetsu stopped between its end
/// and its answer: the answer is out now, posted from what the run saved.
pub async fn fold_left(
    forge: &dyn Forge,
    place: &IssueRef,
    bot_login: &str,
    job_id: i64,
    elapsed: Duration,
    ending: Ending,
) {
    let Ok(Some(left)) = progress_comment_of(forge, place, bot_login, job_id).await else { return };
    if !left.body.starts_with("⏳") {
        return;
    }
    let line = comment::progress_summary(&Progress::default(), elapsed, ending, job_id);
    if let Err(e) = forge.edit_comment(place.repo(), left.id, &line).await {
        tracing::warn!(error = %e, "could not fold a progress comment left by a restart");
    }
}
