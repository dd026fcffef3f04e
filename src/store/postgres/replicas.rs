//! [`ReplicaStore`] on PostgreSQL.

use async_trait::async_trait;

use super::PostgresStore;
use crate::issue_ref::IssueRef;
use crate::store::{Checkpoint, ReplicaStore, now_millis};

#[async_trait]
impl ReplicaStore for PostgresStore {
    fn replica(&self) -> &str {
        &self.replica
    }

    async fn heartbeat(&self, now_ms: i64, ttl_ms: i64) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO replicas (id, seen_at) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET seen_at = $2")
            .bind(&self.replica)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        // A lease still in this replica's name was taken by nobody, even if it
        // lapsed (a pause): renewing it keeps its token, and so its fence.
        sqlx::query("UPDATE leases SET expires_at = $2 WHERE replica = $1")
            .bind(&self.replica)
            .bind(now_ms.saturating_add(ttl_ms))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn take_lease(&self, key: &str, now_ms: i64, ttl_ms: i64) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO leases (key, replica, token, expires_at) VALUES ($1, $2, 1, $4) \
             ON CONFLICT (key) DO UPDATE SET replica = $2, expires_at = $4, \
               token = CASE WHEN leases.replica = $2 AND leases.expires_at > $3 THEN leases.token \
                            ELSE leases.token + 1 END \
             WHERE leases.replica = $2 OR leases.expires_at <= $3 \
             RETURNING token",
        )
        .bind(key)
        .bind(&self.replica)
        .bind(now_ms)
        .bind(now_ms.saturating_add(ttl_ms))
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn holds_lease(&self, key: &str, token: i64, now_ms: i64) -> anyhow::Result<bool> {
        let held: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM leases WHERE key = $1 AND replica = $2 AND token = $3 AND expires_at > $4",
        )
        .bind(key)
        .bind(&self.replica)
        .bind(token)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(held.is_some())
    }

    async fn release_leases(&self) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM leases WHERE replica = $1").bind(&self.replica).execute(&self.pool).await?;
        Ok(())
    }

    async fn requeue_orphans(&self, now_ms: i64, dead_before_ms: i64) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'pending', updated_at = $1, claimed_by = NULL \
             WHERE status = 'running' AND claimed_by IS NOT NULL AND claimed_by <> $2 \
               AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = jobs.claimed_by AND r.seen_at >= $3)",
        )
        .bind(now_ms)
        .bind(&self.replica)
        .bind(dead_before_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn jobs_taken_away(&self, ids: &[i64]) -> anyhow::Result<Vec<(i64, bool)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "SELECT id, claimed_by IS DISTINCT FROM $2 FROM jobs WHERE id = ANY($1) \
               AND (status <> 'running' OR claimed_by IS DISTINCT FROM $2) ORDER BY id",
        )
        .bind(ids)
        .bind(&self.replica)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn running_work(&self, issue: &IssueRef) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MIN(id) FROM jobs WHERE issue = $1 AND lane = 'work' AND status = 'running'")
            .bind(issue.to_string())
            .fetch_one(&self.pool)
            .await?)
    }

    async fn save_checkpoint(&self, issue: &IssueRef, session_id: &str, export: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO checkpoints (issue, session_id, export, at, replica) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (issue) DO UPDATE SET session_id = $2, export = $3, at = $4, replica = $5",
        )
        .bind(issue.to_string())
        .bind(session_id)
        .bind(export)
        .bind(now_millis())
        .bind(&self.replica)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoint(&self, issue: &IssueRef) -> anyhow::Result<Option<Checkpoint>> {
        let row: Option<(String, String, i64, String)> =
            sqlx::query_as("SELECT session_id, export, at, replica FROM checkpoints WHERE issue = $1")
                .bind(issue.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(session_id, export, at, replica)| Checkpoint { session_id, export, at, replica }))
    }
}
