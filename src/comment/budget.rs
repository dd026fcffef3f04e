//! What people read about budgets: a run stopped by one, a trigger refused
//! while one is reached, `resume`, and the issue's running total.

use super::marker;
use crate::budget::{Reached, Scope, Spend};

/// A run stopped at its next step because it reached a budget.
pub fn budget_stopped_comment(reached: &Reached, handle: &str, job_id: i64) -> String {
    format!(
        "I stopped this run at its next step: {reached}. What the agent did so far stays in this \
         issue's session and working copy (not pushed yet). {}\n{}",
        way_on(reached, handle),
        marker(job_id)
    )
}

/// A trigger refused because the issue has reached a budget.
pub fn budget_paused_comment(reached: &Reached, handle: &str, job_id: i64) -> String {
    format!("I did not start this: {reached}. {}\n{}", way_on(reached, handle), marker(job_id))
}

/// How the issue goes on: a writer's `resume` lifts the issue's own budget and
/// the loop breaker; the day's budgets are the operator's, until the day ends.
fn way_on(reached: &Reached, handle: &str) -> String {
    match reached {
        Reached::Money { scope, .. } | Reached::Tokens { scope, .. } if *scope != Scope::Issue => {
            "It lifts when the day (UTC) rolls over, or when the operator raises it.".to_owned()
        }
        Reached::Runs { .. } => format!("A writer can say `@{handle} resume` to go on, or wait for the hour to pass."),
        _ => format!("A writer can say `@{handle} resume` to go on."),
    }
}

/// The answer to `@kugetsu resume`.
pub fn resumed_comment(job_id: i64) -> String {
    format!(
        "Resumed: this issue's budget and the loop breaker count again from now (the day's budgets hold \
         until the day rolls over).\n{}",
        marker(job_id)
    )
}

/// `3 runs · 1234 tokens · $0.0123`: what an issue's runs spent, all told.
pub fn issue_total(runs: u64, spend: Spend) -> String {
    let plural = if runs == 1 { "" } else { "s" };
    format!("{runs} run{plural} · {} tokens · ${:.4}", spend.tokens, spend.cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_comment_snapshots() {
        let money = Reached::Money { scope: Scope::Issue, limit: 5.0, spent: 5.1234 };
        insta::assert_snapshot!("budget_stopped", budget_stopped_comment(&money, "kugetsu", 4));
        let tokens = Reached::Tokens { scope: Scope::RepoToday, limit: 1000, spent: 1200 };
        insta::assert_snapshot!("budget_paused_repo", budget_paused_comment(&tokens, "kugetsu", 4));
        let runs = Reached::Runs { limit: 10, runs: 10 };
        insta::assert_snapshot!("budget_paused_loop", budget_paused_comment(&runs, "kugetsu", 4));
        insta::assert_snapshot!("resumed", resumed_comment(4));
        assert_eq!(issue_total(1, Spend { tokens: 18, cost: 0.0 }), "1 run · 18 tokens · $0.0000");
    }
}
