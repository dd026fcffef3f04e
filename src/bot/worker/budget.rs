//! Budgets on the worker's side: a trigger is refused while its issue has reached
//! one, a run is watched as it spends and stopped at its next step once it
//! reaches one, and what each run spent is recorded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::Worker;
use crate::budget::{Budgets, Reached, Spend, Spent};
use crate::comment;
use crate::issue_ref::IssueRef;
use crate::opencode::AgentEvent;
use crate::store::now_millis;

/// How long the end of a run waits for the last of its events to be counted.
const LAST_EVENTS: Duration = Duration::from_secs(2);

/// A run's spending as it goes, and the budget that stopped it, if one did.
#[derive(Debug, Default, Clone, Copy)]
struct Watched {
    spent: Spend,
    reached: Option<Reached>,
}

/// Records what a run spent when it ends without [`RunBudget::finish`] (a `stop`).
type OnDrop = Box<dyn FnOnce(Spend) + Send>;

/// Watches one run's events for what it spends; hands every event on.
pub(super) struct RunBudget {
    events: Option<mpsc::UnboundedSender<AgentEvent>>,
    stop: watch::Receiver<Option<String>>,
    watched: Arc<Mutex<Watched>>,
    task: Option<tokio::task::JoinHandle<()>>,
    on_drop: Option<OnDrop>,
}

impl RunBudget {
    /// Starts watching; events are handed on to `onward` (the run's progress).
    fn start(budgets: Budgets, before: Spent, onward: mpsc::UnboundedSender<AgentEvent>, on_drop: OnDrop) -> Self {
        let (events, mut received) = mpsc::unbounded_channel::<AgentEvent>();
        let (stop_tx, stop) = watch::channel(None);
        let watched = Arc::new(Mutex::new(Watched::default()));
        let shared = watched.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = received.recv().await {
                if let AgentEvent::Spent { tokens, cost } = &event {
                    let Ok(mut w) = shared.lock() else { break };
                    w.spent = w.spent.plus(Spend::of(tokens, *cost));
                    if w.reached.is_none()
                        && let Some(reached) = budgets.reached(&before.with_run(w.spent))
                    {
                        w.reached = Some(reached);
                        let _ = stop_tx.send(Some(format!("stopped: {reached}")));
                    }
                }
                let _ = onward.send(event);
            }
        });
        Self { events: Some(events), stop, watched, task: Some(task), on_drop: Some(on_drop) }
    }

    pub(super) fn events(&self) -> mpsc::UnboundedSender<AgentEvent> {
        self.events.clone().unwrap_or_else(|| mpsc::unbounded_channel().0)
    }

    pub(super) fn stop(&self) -> watch::Receiver<Option<String>> {
        self.stop.clone()
    }

    fn watched(&self) -> Watched {
        self.watched.lock().map(|w| *w).unwrap_or_default()
    }

    /// What the run spent, by its events, and the budget that stopped it. Every
    /// other sender must be gone, or the last events wait [`LAST_EVENTS`].
    pub(super) async fn finish(mut self) -> (Spend, Option<Reached>) {
        self.on_drop = None;
        self.events = None;
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(LAST_EVENTS, task).await;
        }
        let w = self.watched();
        (w.spent, w.reached)
    }
}

impl Drop for RunBudget {
    fn drop(&mut self) {
        if let Some(record) = self.on_drop.take() {
            record(self.watched().spent);
        }
    }
}

impl Worker {
    /// What the issue's trigger counts against; `Err` with the comment to post
    /// when a budget (or the loop breaker) is reached and the run must not start.
    pub(super) async fn budget_gate(&self, issue: &IssueRef, id: i64) -> Result<Spent, String> {
        let budgets = &self.config.budgets;
        if !budgets.any() {
            return Ok(Spent::default());
        }
        let spent = match self.engine.store().spent(issue, now_millis()).await {
            Ok(spent) => spent,
            Err(e) => {
                // Without the figures a budget cannot be kept: refuse rather than overspend.
                tracing::error!(error = %format!("{e:#}"), "cannot read what the issue spent");
                return Err(comment::refused_comment(
                    "I could not read what this issue has spent; try again later.",
                    id,
                ));
            }
        };
        match budgets.reached(&spent) {
            Some(reached) => Err(comment::budget_paused_comment(&reached, &self.config.bot.handle, id)),
            None => Ok(spent),
        }
    }

    /// Watches a run's spending. A run stopped midway (its task dropped) still
    /// has what it spent so far recorded, so stopping and asking again is no way
    /// around a budget.
    pub(super) fn watch_budget(
        &self,
        issue: &IssueRef,
        id: i64,
        before: Spent,
        onward: mpsc::UnboundedSender<AgentEvent>,
    ) -> RunBudget {
        let (store, issue) = (self.engine.store().clone(), issue.clone());
        let record: OnDrop = Box::new(move |spent| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
            runtime.spawn(async move {
                if let Err(e) = store.record_spend(&issue, id, spent, now_millis()).await {
                    tracing::error!(error = %format!("{e:#}"), "cannot record what a stopped run spent");
                }
            });
        });
        RunBudget::start(self.config.budgets, before, onward, record)
    }

    /// Records what a run spent; returns the issue's running total, as people read it.
    pub(super) async fn record_spend(&self, issue: &IssueRef, id: i64, spend: Spend) -> Option<String> {
        let store = self.engine.store();
        if let Err(e) = store.record_spend(issue, id, spend, now_millis()).await {
            tracing::error!(error = %format!("{e:#}"), "cannot record what a run spent");
        }
        match store.issue_total(issue).await {
            Ok((runs, total)) => Some(comment::issue_total(runs, total)),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the issue's running total");
                None
            }
        }
    }

    /// What `status` says of the issue's spending.
    pub(super) async fn spending(&self, issue: &IssueRef) -> comment::Spending {
        let store = self.engine.store();
        let total = store.issue_total(issue).await.ok().filter(|(runs, _)| *runs > 0);
        let paused = match store.spent(issue, now_millis()).await {
            Ok(spent) => self.config.budgets.reached(&spent).map(|r| r.to_string()),
            Err(_) => None,
        };
        comment::Spending { total: total.map(|(runs, spend)| comment::issue_total(runs, spend)), paused }
    }
}
