//! The cleanup job: on a schedule, partitions of sessions are created ahead of need and
//! dropped once all their sessions have expired; expired sessions outside every
//! partition (in `sessions_default`) and expired nonces are deleted in batches.

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use ports::StoreError;
use tracing::{info, warn};

use crate::{PgNonceStore, PgSessionStore, unavailable};

/// How the sessions table is partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitioning {
    /// The expiry range of one partition.
    pub width: Duration,
    /// How far past now partitions must exist: the longest session lifetime plus the
    /// time to the next cleanup run, and a width to spare.
    pub ahead: Duration,
}

/// Runs `batch_fn` until it deletes fewer than `batch` rows, pausing `pause` between
/// full batches; returns the total.
async fn in_batches<F, Fut>(
    batch: i64,
    pause: Duration,
    mut batch_fn: F,
) -> Result<usize, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = batch_fn().await?;
        total += n;
        if (n as i64) < batch {
            return Ok(total);
        }
        tokio::time::sleep(pause).await;
    }
}

impl PgSessionStore {
    /// Deletes up to `batch` expired sessions of the default partition (those no range
    /// partition covers); returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn delete_expired_batch(&self, batch: i64) -> Result<usize, StoreError> {
        self.timed("cleanup", async {
            let mut conn = self.pool.get().await.map_err(unavailable)?;
            diesel::sql_query(
                "DELETE FROM sessions_default WHERE session_id IN \
                 (SELECT session_id FROM sessions_default WHERE expires_at < now() \
                  ORDER BY expires_at LIMIT $1)",
            )
            .bind::<BigInt, _>(batch)
            .execute(&mut conn)
            .await
            .map_err(unavailable)
        })
        .await
    }

    /// One cleanup run: partitions created ahead and dropped once expired, then the
    /// default partition's expired rows and the expired nonces in batches. Returns
    /// (partitions created, partitions dropped, rows deleted).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] (what was done before the failure stays done).
    pub async fn cleanup(
        &self,
        partitioning: Partitioning,
        batch: i64,
        pause: Duration,
    ) -> Result<(usize, usize, usize), StoreError> {
        let created = self
            .ensure_partitions(partitioning.width, partitioning.ahead)
            .await?;
        let dropped = self.drop_expired_partitions().await?;
        let rows = in_batches(batch, pause, || self.delete_expired_batch(batch)).await?;
        let nonces = PgNonceStore::new(self);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Instances silent for a day are gone (a running one reads every 250 ms).
        nonces
            .forget_instances(now.saturating_sub(86_400_000))
            .await?;
        let expired_nonces =
            in_batches(batch, pause, || nonces.delete_expired_batch(now, batch)).await?;
        Ok((created, dropped, rows + expired_nonces))
    }

    /// Runs [`Self::cleanup`] now and then every `interval`.
    pub fn spawn_cleanup(
        &self,
        partitioning: Partitioning,
        interval: Duration,
        batch: i64,
        pause: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                let started = std::time::Instant::now();
                match store.cleanup(partitioning, batch, pause).await {
                    Ok((0, 0, 0)) => {}
                    Ok((created, dropped, rows)) => info!(
                        partitions_created = created,
                        partitions_dropped = dropped,
                        rows_deleted = rows,
                        took_ms = started.elapsed().as_millis() as u64,
                        "cleanup"
                    ),
                    Err(e) => warn!(error = %e, "cleanup failed; will retry"),
                }
                if started.elapsed() > Duration::from_secs(30) {
                    warn!(
                        took_ms = started.elapsed().as_millis() as u64,
                        "cleanup was slow"
                    );
                }
                tokio::time::sleep(interval).await;
            }
        })
    }
}
