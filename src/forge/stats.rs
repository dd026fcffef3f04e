//! What one forge client saw of its API, for `/metrics`: failed calls by kind,
//! and the rate limit the forge says is left. Counted where the answer is read,
//! so every call counts, retried or not.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::ForgeError;

/// The kinds of failed call, as `/metrics` labels them.
pub const ERROR_KINDS: [&str; 5] = ["unauthorized", "forbidden", "not_found", "transient", "other"];

#[derive(Debug)]
pub struct ApiStats {
    errors: [AtomicU64; ERROR_KINDS.len()],
    /// `x-ratelimit-remaining` of the last answer that had one; -1 before any did.
    /// GitHub sends it on every answer; Gitea and Forgejo have no API rate limit.
    rate_limit_remaining: AtomicI64,
}

impl Default for ApiStats {
    fn default() -> Self {
        Self { errors: Default::default(), rate_limit_remaining: AtomicI64::new(-1) }
    }
}

fn kind_index(error: &ForgeError) -> usize {
    match error {
        ForgeError::Unauthorized => 0,
        ForgeError::Forbidden(_) => 1,
        ForgeError::NotFound => 2,
        ForgeError::Transient { .. } => 3,
        ForgeError::Other(_) => 4,
    }
}

impl ApiStats {
    /// Counts a failed call, whatever the caller makes of it (a 404 can be an answer).
    pub fn saw<T>(&self, result: &Result<T, ForgeError>) {
        if let Err(e) = result {
            self.errors[kind_index(e)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps the `x-ratelimit-remaining` header's value, when there is one.
    pub fn saw_rate_limit(&self, header: Option<&str>) {
        if let Some(left) = header.and_then(|v| v.trim().parse::<i64>().ok()).filter(|n| *n >= 0) {
            self.rate_limit_remaining.store(left, Ordering::Relaxed);
        }
    }

    /// Failed calls so far, by kind.
    pub fn errors(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ERROR_KINDS.iter().zip(&self.errors).map(|(kind, n)| (*kind, n.load(Ordering::Relaxed)))
    }

    pub fn rate_limit_remaining(&self) -> Option<u64> {
        u64::try_from(self.rate_limit_remaining.load(Ordering::Relaxed)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_kind_and_successes_not_at_all() {
        let stats = ApiStats::default();
        stats.saw::<()>(&Err(ForgeError::NotFound));
        stats.saw::<()>(&Err(ForgeError::transient("502")));
        stats.saw::<()>(&Err(ForgeError::transient("timeout")));
        stats.saw(&Ok(()));
        let errors: Vec<_> = stats.errors().filter(|(_, n)| *n > 0).collect();
        assert_eq!(errors, vec![("not_found", 1), ("transient", 2)]);
    }

    #[test]
    fn the_rate_limit_is_unknown_until_a_forge_says_it() {
        let stats = ApiStats::default();
        assert_eq!(stats.rate_limit_remaining(), None);
        stats.saw_rate_limit(None);
        stats.saw_rate_limit(Some("not a number"));
        assert_eq!(stats.rate_limit_remaining(), None);
        stats.saw_rate_limit(Some(" 4987 "));
        assert_eq!(stats.rate_limit_remaining(), Some(4987));
        stats.saw_rate_limit(Some("0"));
        assert_eq!(stats.rate_limit_remaining(), Some(0));
    }
}
