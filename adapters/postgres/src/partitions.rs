//! The sessions table is partitioned by expiry time (see the migration
//! `partition_sessions`): partitions are created ahead of the expiries new sessions
//! can have, and dropped whole once every session in them has expired.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Integer};
use diesel_async::RunQueryDsl;
use ports::StoreError;

use crate::{PgSessionStore, unavailable};

#[derive(QueryableByName)]
struct Created {
    #[diesel(sql_type = Bool)]
    created: bool,
}

#[derive(QueryableByName)]
struct Dropped {
    #[diesel(sql_type = Integer)]
    dropped: i32,
}

/// The partition starts (Unix seconds) that cover `[now, now + ahead]` in steps of `width`.
pub(crate) fn slots(now_s: u64, width: Duration, ahead: Duration) -> Vec<u64> {
    let w = width.as_secs().max(60);
    let first = now_s / w * w;
    let last = now_s + ahead.as_secs();
    (0..)
        .map(|i| first + i * w)
        .take_while(|s| *s <= last)
        .collect()
}

impl PgSessionStore {
    /// Creates the partitions of `width` that cover expiries from now to `ahead` from
    /// now; returns how many were created.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn ensure_partitions(
        &self,
        width: Duration,
        ahead: Duration,
    ) -> Result<usize, StoreError> {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let w = width.as_secs().max(60);
        let mut created = 0;
        for from in slots(now_s, width, ahead) {
            let made = self
                .timed("partition create", async {
                    let mut conn = self.pool.get().await.map_err(unavailable)?;
                    diesel::sql_query(
                        "SELECT session_crypto_ensure_partition(to_timestamp($1), to_timestamp($2)) AS created",
                    )
                    .bind::<BigInt, _>(from as i64)
                    .bind::<BigInt, _>((from + w) as i64)
                    .get_result::<Created>(&mut conn)
                    .await
                    .map_err(unavailable)
                })
                .await?;
            created += usize::from(made.created);
        }
        Ok(created)
    }

    /// Drops every partition whose sessions have all expired; returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn drop_expired_partitions(&self) -> Result<usize, StoreError> {
        self.timed("partition drop", async {
            let mut conn = self.pool.get().await.map_err(unavailable)?;
            diesel::sql_query("SELECT session_crypto_drop_expired_partitions(now()) AS dropped")
                .get_result::<Dropped>(&mut conn)
                .await
                .map(|d| usize::try_from(d.dropped).unwrap_or(0))
                .map_err(unavailable)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cover_now_to_the_horizon_on_width_boundaries() {
        let hour = Duration::from_secs(3600);
        assert_eq!(slots(7_200, hour, hour), [7_200, 10_800]);
        assert_eq!(slots(7_300, hour, 2 * hour), [7_200, 10_800, 14_400]);
        assert_eq!(slots(7_300, hour, Duration::ZERO), [7_200]);
    }
}
