//! Fetches and pushes try again when the remote is briefly away (a restart, a
//! network blip), so a few seconds of outage cost a few seconds, not the run.

use std::future::Future;
use std::time::Duration;

use super::GitError;

/// The waits between tries; four tries span about seven seconds.
const WAITS: [Duration; 3] = [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];

/// Runs `op` until it succeeds, `retryable` says no, or the tries run out.
pub async fn with_retries<T, F, Fut>(
    what: &str,
    retryable: impl Fn(&GitError) -> bool,
    mut op: F,
) -> Result<T, GitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, GitError>>,
{
    let mut waits = WAITS.iter();
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) => match waits.next() {
                Some(wait) if retryable(&e) => {
                    tracing::warn!(error = %e, ?wait, "{what} failed; trying again");
                    tokio::time::sleep(*wait).await;
                }
                _ => return Err(e),
            },
        }
    }
}
