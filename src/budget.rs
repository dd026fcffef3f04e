//! Budgets and the loop breaker: how much an issue, a repository in a day and an
//! instance in a day may spend, in USD or tokens, and how many runs an issue may
//! have in an hour. A run that crosses one is stopped at its next step; later
//! triggers are refused until a writer says `@kugetsu resume` (the issue's own
//! budget and the loop breaker) or the day rolls over (the daily ones).

use serde::Deserialize;

use crate::result::Tokens;

use crate::store::DAY_MS;

/// What may be spent in one scope; unset is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub usd: Option<f64>,
    /// Input, output, reasoning and cache-write tokens (cache reads are not counted).
    pub tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budgets {
    pub per_issue: Limit,
    pub per_repo_per_day: Limit,
    pub per_instance_per_day: Limit,
    /// More runs than this on one issue in an hour pause it; unset: no limit.
    pub max_runs_per_issue_per_hour: Option<u32>,
}

impl Budgets {
    pub fn validate(&self) -> Result<(), String> {
        for (name, limit) in self.scopes() {
            if limit.usd.is_some_and(|usd| !usd.is_finite() || usd <= 0.0) || limit.tokens == Some(0) {
                return Err(format!("budgets.{name} must be above zero (or unset)"));
            }
        }
        if self.max_runs_per_issue_per_hour == Some(0) {
            return Err("budgets.max_runs_per_issue_per_hour must be at least 1 (or unset)".into());
        }
        Ok(())
    }

    fn scopes(&self) -> [(&'static str, Limit); 3] {
        [
            ("per_issue", self.per_issue),
            ("per_repo_per_day", self.per_repo_per_day),
            ("per_instance_per_day", self.per_instance_per_day),
        ]
    }

    /// The first budget `spent` has reached, if any.
    pub fn reached(&self, spent: &Spent) -> Option<Reached> {
        let scopes = [
            (Scope::Issue, self.per_issue, spent.issue),
            (Scope::RepoToday, self.per_repo_per_day, spent.repo_today),
            (Scope::InstanceToday, self.per_instance_per_day, spent.instance_today),
        ];
        for (scope, limit, spend) in scopes {
            if let Some(usd) = limit.usd
                && spend.cost >= usd
            {
                return Some(Reached::Money { scope, limit: usd, spent: spend.cost });
            }
            if let Some(tokens) = limit.tokens
                && spend.tokens >= tokens
            {
                return Some(Reached::Tokens { scope, limit: tokens, spent: spend.tokens });
            }
        }
        match self.max_runs_per_issue_per_hour {
            Some(most) if spent.issue_runs_last_hour >= u64::from(most) => {
                Some(Reached::Runs { limit: most, runs: spent.issue_runs_last_hour })
            }
            _ => None,
        }
    }

    /// Whether any budget is set: without one, nothing is watched.
    pub fn any(&self) -> bool {
        self.scopes().iter().any(|(_, l)| l.usd.is_some() || l.tokens.is_some())
            || self.max_runs_per_issue_per_hour.is_some()
    }
}

/// Tokens and money, as budgets count them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    pub tokens: u64,
    pub cost: f64,
}

impl Spend {
    /// Cache reads are not counted: they cost a fraction of other input.
    pub fn of(tokens: &Tokens, cost: f64) -> Self {
        let counted = [tokens.input, tokens.output, tokens.reasoning, tokens.cache_write];
        Self { tokens: counted.into_iter().fold(0u64, u64::saturating_add), cost }
    }

    /// The larger of two counts of the same spending, each figure on its own.
    pub fn most(self, other: Spend) -> Self {
        Self { tokens: self.tokens.max(other.tokens), cost: self.cost.max(other.cost) }
    }

    pub fn plus(self, other: Spend) -> Self {
        Self { tokens: self.tokens.saturating_add(other.tokens), cost: self.cost + other.cost }
    }
}

/// What an issue's trigger counts against: each scope's spend within its window
/// (the issue's and its hourly runs from its last `resume` on).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    pub issue: Spend,
    pub repo_today: Spend,
    pub instance_today: Spend,
    pub issue_runs_last_hour: u64,
}

impl Spent {
    /// The same, with a run's spend so far added to every scope.
    pub fn with_run(self, run: Spend) -> Self {
        Self {
            issue: self.issue.plus(run),
            repo_today: self.repo_today.plus(run),
            instance_today: self.instance_today.plus(run),
            issue_runs_last_hour: self.issue_runs_last_hour,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Issue,
    RepoToday,
    InstanceToday,
}

impl Scope {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Issue => "this issue's budget",
            Self::RepoToday => "this repository's budget for today (UTC)",
            Self::InstanceToday => "this forge's budget for today (UTC)",
        }
    }
}

/// Which budget was reached, and by how much.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reached {
    Money { scope: Scope, limit: f64, spent: f64 },
    Tokens { scope: Scope, limit: u64, spent: u64 },
    Runs { limit: u32, runs: u64 },
}

impl std::fmt::Display for Reached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Money { scope, limit, spent } => {
                write!(f, "{} of ${limit:.2} is spent (${spent:.4} so far)", scope.describe())
            }
            Self::Tokens { scope, limit, spent } => {
                write!(f, "{} of {limit} tokens is spent ({spent} so far)", scope.describe())
            }
            Self::Runs { limit, runs } => write!(
                f,
                "this issue had {runs} runs in the last hour, and {limit} is the most allowed (the loop breaker)"
            ),
        }
    }
}

/// The start of the UTC day `now_ms` is in: budgets' days are UTC days.
pub fn start_of_day(now_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(tokens: u64, cost: f64) -> Spend {
        Spend { tokens, cost }
    }

    #[test]
    fn the_first_budget_reached_is_named_and_unset_ones_never_are() {
        let budgets = Budgets {
            per_issue: Limit { usd: Some(5.0), tokens: None },
            per_repo_per_day: Limit { usd: None, tokens: Some(1000) },
            per_instance_per_day: Limit::default(),
            max_runs_per_issue_per_hour: Some(3),
        };
        let under = Spent {
            issue: spend(900, 4.99),
            repo_today: spend(999, 9.0),
            instance_today: spend(1 << 40, 1e9),
            issue_runs_last_hour: 2,
        };
        assert_eq!(budgets.reached(&under), None, "the instance has no budget");
        let money = Spent { issue: spend(0, 5.0), ..under };
        assert!(matches!(budgets.reached(&money), Some(Reached::Money { scope: Scope::Issue, .. })));
        let tokens = under.with_run(spend(1, 0.0));
        assert!(matches!(
            budgets.reached(&tokens),
            Some(Reached::Tokens { scope: Scope::RepoToday, limit: 1000, spent: 1000 })
        ));
        let loops = Spent { issue_runs_last_hour: 3, ..under };
        assert_eq!(budgets.reached(&loops), Some(Reached::Runs { limit: 3, runs: 3 }));
        assert!(Budgets::default().reached(&loops).is_none() && !Budgets::default().any());
        let text = budgets.reached(&money).unwrap().to_string();
        assert!(text.contains("this issue's budget of $5.00"), "{text}");
    }

    #[test]
    fn budgets_must_be_above_zero() {
        let zero = Budgets { per_issue: Limit { usd: Some(0.0), tokens: None }, ..Budgets::default() };
        assert!(zero.validate().is_err());
        let nan = Budgets { per_repo_per_day: Limit { usd: Some(f64::NAN), tokens: None }, ..Budgets::default() };
        assert!(nan.validate().is_err());
        let none = Budgets { max_runs_per_issue_per_hour: Some(0), ..Budgets::default() };
        assert!(none.validate().is_err());
        let fine = Budgets { per_issue: Limit { usd: Some(0.5), tokens: Some(10) }, ..Budgets::default() };
        assert!(fine.validate().is_ok());
    }

    #[test]
    fn a_day_starts_at_utc_midnight() {
        assert_eq!(start_of_day(DAY_MS * 3 + 5), DAY_MS * 3);
        assert_eq!(start_of_day(DAY_MS * 3), DAY_MS * 3);
    }
}
