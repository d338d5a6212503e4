//! Removing expired sessions and nonces in batches, on a schedule.

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use ports::StoreError;
use tracing::{info, warn};

use crate::{PgNonceStore, PgSessionStore, unavailable};

impl PgSessionStore {
    /// Deletes up to `batch` rows that expired before now; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn delete_expired_batch(&self, batch: i64) -> Result<usize, StoreError> {
        self.timed("cleanup", async {
            let mut conn = self.pool.get().await.map_err(unavailable)?;
            diesel::sql_query(
                "DELETE FROM sessions WHERE session_id IN \
                 (SELECT session_id FROM sessions WHERE expires_at < now() ORDER BY expires_at LIMIT $1)",
            )
            .bind::<BigInt, _>(batch)
            .execute(&mut conn)
            .await
            .map_err(unavailable)
        })
        .await
    }

    /// One cleanup run: batches until a partial batch, pausing `pause` between full ones.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] (rows deleted before the failure stay deleted).
    pub async fn cleanup_expired(&self, batch: i64, pause: Duration) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.delete_expired_batch(batch).await?;
            total += n;
            if (n as i64) < batch {
                return Ok(total);
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Deletes the expired nonces of [`PgNonceStore`] in batches of `batch`, pausing
    /// `pause` between full ones; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] (rows deleted before the failure stay deleted).
    pub async fn cleanup_expired_nonces(
        &self,
        batch: i64,
        pause: Duration,
    ) -> Result<usize, StoreError> {
        let nonces = PgNonceStore::new(self);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Instances silent for a day are gone (a running one reads every 250 ms).
        nonces
            .forget_instances(now.saturating_sub(86_400_000))
            .await?;
        let mut total = 0;
        loop {
            let n = nonces.delete_expired_batch(now, batch).await?;
            total += n;
            if (n as i64) < batch {
                return Ok(total);
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Runs [`Self::cleanup_expired`] and [`Self::cleanup_expired_nonces`] now and
    /// then every `interval`.
    pub fn spawn_cleanup(
        &self,
        interval: Duration,
        batch: i64,
        pause: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                let started = std::time::Instant::now();
                match store.cleanup_expired(batch, pause).await {
                    Ok(0) => {}
                    Ok(n) => info!(
                        deleted = n,
                        took_ms = started.elapsed().as_millis() as u64,
                        "expired sessions removed"
                    ),
                    Err(e) => warn!(error = %e, "expired-session cleanup failed; will retry"),
                }
                match store.cleanup_expired_nonces(batch, pause).await {
                    Ok(0) => {}
                    Ok(n) => info!(deleted = n, "expired nonces removed"),
                    Err(e) => warn!(error = %e, "expired-nonce cleanup failed; will retry"),
                }
                if started.elapsed() > Duration::from_secs(30) {
                    warn!(
                        took_ms = started.elapsed().as_millis() as u64,
                        "expired-session cleanup was slow"
                    );
                }
                tokio::time::sleep(interval).await;
            }
        })
    }
}
