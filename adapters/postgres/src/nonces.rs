//! Nonces in PostgreSQL ([`PgNonceStore`]); the fence it also keeps is in
//! [`crate::fence`].
//!
//! The nonce store is the fallback every instance shares: a claim is one
//! `INSERT … ON CONFLICT DO UPDATE … WHERE expired`, so two instances claiming one
//! nonce at once cannot both win, and an expired row is reused in place.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use ports::{Claim, NonceClaim, NonceError, NonceStore, StoreError};

use crate::{PgSessionStore, unavailable};

/// Nonces in PostgreSQL. Cheap to clone; shares the session store's pool.
#[derive(Clone)]
pub struct PgNonceStore {
    pub(crate) store: PgSessionStore,
}

impl std::fmt::Debug for PgNonceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgNonceStore").finish_non_exhaustive()
    }
}

pub(crate) fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PgNonceStore {
    /// Nonces on the pool of `store`.
    pub fn new(store: &PgSessionStore) -> Self {
        Self {
            store: store.clone(),
        }
    }

    /// Up to `limit` nonces unexpired at `now_ms` whose keys sort after `after`, in key
    /// order: `(claim key, expiry ms)`, for writing them back into Redis.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn unexpired(
        &self,
        now_ms: u64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            nonce_key: String,
            #[diesel(sql_type = BigInt)]
            expires_at_ms: i64,
        }
        self.store
            .timed("nonce write-back read", async {
                let mut conn = self.store.pool.get().await.map_err(unavailable)?;
                diesel::sql_query(
                    "SELECT nonce_key, expires_at_ms FROM nonces \
                     WHERE nonce_key > $1 AND expires_at_ms > $2 ORDER BY nonce_key LIMIT $3",
                )
                .bind::<Text, _>(after)
                .bind::<BigInt, _>(ms(now_ms))
                .bind::<BigInt, _>(limit)
                .get_results::<Row>(&mut conn)
                .await
                .map(|rows| {
                    rows.into_iter()
                        .map(|r| (r.nonce_key, u64::try_from(r.expires_at_ms).unwrap_or(0)))
                        .collect()
                })
                .map_err(unavailable)
            })
            .await
    }

    /// Deletes up to `batch` nonces that expired before `now_ms`; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn delete_expired_batch(&self, now_ms: u64, batch: i64) -> Result<usize, StoreError> {
        self.store
            .timed("nonce cleanup", async {
                let mut conn = self.store.pool.get().await.map_err(unavailable)?;
                diesel::sql_query(
                    "DELETE FROM nonces WHERE nonce_key IN \
                     (SELECT nonce_key FROM nonces WHERE expires_at_ms < $1 LIMIT $2)",
                )
                .bind::<BigInt, _>(ms(now_ms))
                .bind::<BigInt, _>(batch)
                .execute(&mut conn)
                .await
                .map_err(unavailable)
            })
            .await
    }
}

impl NonceStore for PgNonceStore {
    async fn claim(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        let expires = claim
            .now_ms
            .saturating_add(claim.ttl_sec.saturating_mul(1000));
        let claimed = self
            .store
            .timed("nonce claim", async {
                let mut conn = self.store.pool.get().await.map_err(unavailable)?;
                diesel::sql_query(
                    "INSERT INTO nonces (nonce_key, expires_at_ms) VALUES ($1, $2) \
                     ON CONFLICT (nonce_key) DO UPDATE SET expires_at_ms = EXCLUDED.expires_at_ms \
                     WHERE nonces.expires_at_ms <= $3",
                )
                .bind::<Text, _>(claim.key)
                .bind::<BigInt, _>(ms(expires))
                .bind::<BigInt, _>(ms(claim.now_ms))
                .execute(&mut conn)
                .await
                .map_err(unavailable)
            })
            .await
            .map_err(|e| NonceError::Unavailable(e.to_string()))?;
        Ok(if claimed == 1 {
            NonceClaim::Fresh
        } else {
            NonceClaim::Replay
        })
    }
}
