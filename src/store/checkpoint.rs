//! WAL checkpoints off the writer's path.
//!
//! SQLite copies its write-ahead log back into the database file every 1,000
//! pages, in whichever commit crosses that mark, and syncs the file there. With
//! one connection, every statement queued behind that commit waits too: under
//! 100 stored jobs a second, that was the slowest 1% of webhook answers (enqueue
//! p99 6.1 ms, against 1.0 ms with the commit spared it; see the README's Speed).
//! So the writer never checkpoints. In `kugetsu serve` a connection of its own
//! does, passively (never blocking the writer), once a second; other processes
//! are short and checkpoint as they close.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const EVERY: Duration = Duration::from_secs(1);

/// Checkpoints the database in the background for as long as it is held.
#[derive(Debug)]
pub struct Checkpointer {
    task: tokio::task::JoinHandle<()>,
}

impl Checkpointer {
    pub async fn start(options: SqliteConnectOptions) -> anyhow::Result<Self> {
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(EVERY);
            loop {
                ticker.tick().await;
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                    tracing::warn!(error = %e, "could not checkpoint the database");
                }
            }
        });
        Ok(Self { task })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
