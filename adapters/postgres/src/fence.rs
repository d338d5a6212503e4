//! The shared fence row ([`PgNonceStore::report_trouble`],
//! [`PgNonceStore::close_fence`]) and the instances' reads of it
//! ([`PgNonceStore::poll_fence`]), kept in the nonce store's database.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use ports::StoreError;

use crate::nonces::ms;
use crate::{PgNonceStore, unavailable};

/// The fence row: when the latest episode began and when it was last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct FenceRow {
    /// When the episode began (ms since the epoch; 0: never).
    #[diesel(sql_type = BigInt)]
    pub started_at_ms: i64,
    /// The latest report of it.
    #[diesel(sql_type = BigInt)]
    pub last_seen_ms: i64,
    /// When it was closed by a write-back (0: open).
    #[diesel(sql_type = BigInt)]
    pub closed_at_ms: i64,
}

/// One read of the fence ([`PgNonceStore::poll_fence`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct FencePoll {
    /// The latest episode (its `started_at_ms` 0: never).
    #[diesel(embed)]
    pub episode: FenceRow,
    /// The latest moment another instance may have claimed in Redis alone during it.
    #[diesel(sql_type = BigInt)]
    pub others_ms: i64,
}

impl PgNonceStore {
    /// Records that at `now_ms` this instance saw Redis trouble. An episode whose
    /// latest report is older than `episode_gap_ms`, or that was closed
    /// ([`Self::close_fence`]), is over: a new one begins now (after the old one's
    /// start).
    /// Returns the row as it is after the report.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn report_trouble(
        &self,
        now_ms: u64,
        episode_gap_ms: u64,
    ) -> Result<FenceRow, StoreError> {
        self.store
            .timed("fence report", async {
                let mut conn = self.store.pool.get().await.map_err(unavailable)?;
                diesel::sql_query(
                    "INSERT INTO nonce_fence (id, started_at_ms, last_seen_ms) VALUES (1, $1, $1) \
                     ON CONFLICT (id) DO UPDATE SET \
                       started_at_ms = CASE \
                         WHEN nonce_fence.last_seen_ms + $2 < $1 OR nonce_fence.closed_at_ms > 0 \
                         THEN GREATEST($1, nonce_fence.started_at_ms + 1) \
                         ELSE nonce_fence.started_at_ms END, \
                       last_seen_ms = GREATEST(nonce_fence.last_seen_ms, $1), \
                       closed_at_ms = 0 \
                     RETURNING started_at_ms, last_seen_ms, closed_at_ms",
                )
                .bind::<BigInt, _>(ms(now_ms))
                .bind::<BigInt, _>(ms(episode_gap_ms))
                .get_result::<FenceRow>(&mut conn)
                .await
                .map_err(unavailable)
            })
            .await
    }

    /// One read of the fence by `instance` at `now_ms`, which has taken in the episode
    /// that began at `acked_started_ms` (an instance's first read takes in the current
    /// episode at no moment: before that read it never claimed in Redis alone). Records the
    /// read, and returns the fence row
    /// (`None` before the deployment first ran) with, over the *other* instances that
    /// may have claimed in Redis alone after the episode began, the latest moment
    /// they can have done so: when they took the episode in, or for those that have
    /// not (yet), their last read + `lease_ms`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn poll_fence(
        &self,
        instance: &str,
        now_ms: u64,
        acked_started_ms: u64,
        lease_ms: u64,
    ) -> Result<Option<FencePoll>, StoreError> {
        self.store
            .timed("fence poll", async {
                let mut conn = self.store.pool.get().await.map_err(unavailable)?;
                diesel::sql_query(
                    "WITH me AS ( \
                       INSERT INTO nonce_instances (instance_id, seen_ms, acked_started_ms, acked_at_ms) \
                       VALUES ($1, $2, GREATEST($3, COALESCE( \
                         (SELECT started_at_ms FROM nonce_fence WHERE id = 1), 0)), 0) \
                       ON CONFLICT (instance_id) DO UPDATE SET \
                         seen_ms = EXCLUDED.seen_ms, \
                         acked_at_ms = CASE WHEN EXCLUDED.acked_started_ms > nonce_instances.acked_started_ms \
                                       THEN EXCLUDED.seen_ms ELSE nonce_instances.acked_at_ms END, \
                         acked_started_ms = GREATEST(nonce_instances.acked_started_ms, EXCLUDED.acked_started_ms) \
                     ) \
                     SELECT f.started_at_ms, f.last_seen_ms, f.closed_at_ms, COALESCE(( \
                       SELECT max(CASE WHEN i.acked_started_ms >= f.started_at_ms \
                                  THEN i.acked_at_ms ELSE i.seen_ms + $4 END) \
                       FROM nonce_instances i \
                       WHERE i.instance_id <> $1 AND i.seen_ms + $4 >= f.started_at_ms \
                     ), 0) AS others_ms \
                     FROM nonce_fence f WHERE f.id = 1",
                )
                .bind::<Text, _>(instance)
                .bind::<BigInt, _>(ms(now_ms))
                .bind::<BigInt, _>(ms(acked_started_ms))
                .bind::<BigInt, _>(ms(lease_ms))
                .get_results::<FencePoll>(&mut conn)
                .await
                .map(|mut rows| rows.pop())
                .map_err(unavailable)
            })
            .await
    }

    /// Records that `instance` stopped at `now_ms`: its lease is taken to end then (its
    /// last read is set a lease before), so the others' fences need not wait for it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn leave_fence(
        &self,
        instance: &str,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<(), StoreError> {
        let ended = ms(now_ms.saturating_sub(lease_ms));
        self.store
            .timed("fence leave", async {
                let mut conn = self.store.pool.get().await.map_err(unavailable)?;
                diesel::sql_query(
                    "UPDATE nonce_instances SET seen_ms = LEAST(seen_ms, $2) WHERE instance_id = $1",
                )
                .bind::<Text, _>(instance)
                .bind::<BigInt, _>(ended)
                .execute(&mut conn)
                .await
                .map(drop)
                .map_err(unavailable)
            })
            .await
    }

    /// Forgets instances that have not read the fence since `before_ms`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn forget_instances(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.store
            .timed("fence instances cleanup", async {
                let mut conn = self.store.pool.get().await.map_err(unavailable)?;
                diesel::sql_query("DELETE FROM nonce_instances WHERE seen_ms < $1")
                    .bind::<BigInt, _>(ms(before_ms))
                    .execute(&mut conn)
                    .await
                    .map_err(unavailable)
            })
            .await
    }

    /// Writes the fence row of a deployment that has not run before; returns whether
    /// it had (a row was already there).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn note_history(&self) -> Result<bool, StoreError> {
        self.store
            .timed("fence history", async {
                let mut conn = self.store.pool.get().await.map_err(unavailable)?;
                diesel::sql_query(
                    "INSERT INTO nonce_fence (id, started_at_ms, last_seen_ms) VALUES (1, 0, 0) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .execute(&mut conn)
                .await
                .map(|inserted| inserted == 0)
                .map_err(unavailable)
            })
            .await
    }

    /// The Redis primaries (`run_id`s, comma-separated and sorted) the deployment last
    /// recorded; `None` when never recorded (or no fence row yet).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn recorded_primaries(&self) -> Result<Option<String>, StoreError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
            redis_primaries: Option<String>,
        }
        self.store
            .timed("fence primaries read", async {
                let mut conn = self.store.pool.get().await.map_err(unavailable)?;
                diesel::sql_query("SELECT redis_primaries FROM nonce_fence WHERE id = 1")
                    .get_results::<Row>(&mut conn)
                    .await
                    .map(|rows| rows.into_iter().next().and_then(|r| r.redis_primaries))
                    .map_err(unavailable)
            })
            .await
    }

    /// Records the Redis primaries seen now (after [`Self::note_history`] wrote the
    /// row).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn record_primaries(&self, primaries: &str) -> Result<(), StoreError> {
        self.store
            .timed("fence primaries write", async {
                let mut conn = self.store.pool.get().await.map_err(unavailable)?;
                diesel::sql_query("UPDATE nonce_fence SET redis_primaries = $1 WHERE id = 1")
                    .bind::<Text, _>(primaries)
                    .execute(&mut conn)
                    .await
                    .map(drop)
                    .map_err(unavailable)
            })
            .await
    }

    /// Closes the episode that began at `started_ms` if its latest report is still
    /// `last_seen_ms` (no trouble reported since); returns whether it did.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn close_fence(
        &self,
        started_ms: u64,
        last_seen_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.store
            .timed("fence close", async {
                let mut conn = self.store.pool.get().await.map_err(unavailable)?;
                diesel::sql_query(
                    "UPDATE nonce_fence SET closed_at_ms = $3 \
                     WHERE id = 1 AND started_at_ms = $1 AND last_seen_ms = $2 AND closed_at_ms = 0",
                )
                .bind::<BigInt, _>(ms(started_ms))
                .bind::<BigInt, _>(ms(last_seen_ms))
                .bind::<BigInt, _>(ms(now_ms.max(1)))
                .execute(&mut conn)
                .await
                .map(|n| n == 1)
                .map_err(unavailable)
            })
            .await
    }
}
