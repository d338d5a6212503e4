//! The ledger: where instances share episodes ([`Ledger`]: PostgreSQL's fence row and
//! one row per instance), and the single instance's stand-in ([`NoLedger`]).

use ports::StoreError;
use postgres_adapter::PgNonceStore;

use super::{BoardRead, Episode};

/// Where episodes are shared between instances.
pub trait Ledger: Send + Sync + 'static {
    /// Records trouble seen at `now_ms`; a report `gap_ms` after the previous one
    /// begins a new episode. Returns the episode after the report.
    fn report(
        &self,
        now_ms: u64,
        gap_ms: u64,
    ) -> impl Future<Output = Result<Episode, StoreError>> + Send;
    /// Reads the board as `instance` at `now_ms`, recording that it has taken in the
    /// episode begun at `acked_ms` (`None`: no episode yet).
    fn read(
        &self,
        instance: &str,
        now_ms: u64,
        acked_ms: u64,
        lease_ms: u64,
    ) -> impl Future<Output = Result<Option<BoardRead>, StoreError>> + Send;
    /// Closes the episode begun at `started_ms` if its latest report is still
    /// `last_seen_ms`; returns whether it did.
    fn close(
        &self,
        started_ms: u64,
        last_seen_ms: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Up to `limit` nonces of the shared store unexpired at `now_ms`, after key `after`
    /// in key order: `(claim key, expiry ms)`.
    fn unexpired(
        &self,
        now_ms: u64,
        after: &str,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send;
    /// Records that `instance` stopped at `now_ms` (a clean shutdown): it claims no
    /// more, so the others need not wait out its lease.
    fn leave(
        &self,
        instance: &str,
        now_ms: u64,
        lease_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

fn as_ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// An episode as the fence row holds it.
fn episode(row: postgres_adapter::FenceRow) -> Episode {
    Episode {
        started_ms: as_ms(row.started_at_ms),
        last_seen_ms: as_ms(row.last_seen_ms),
        closed_ms: as_ms(row.closed_at_ms),
    }
}

impl Ledger for PgNonceStore {
    async fn report(&self, now_ms: u64, gap_ms: u64) -> Result<Episode, StoreError> {
        Ok(episode(self.report_trouble(now_ms, gap_ms).await?))
    }
    async fn read(
        &self,
        instance: &str,
        now_ms: u64,
        acked_ms: u64,
        lease_ms: u64,
    ) -> Result<Option<BoardRead>, StoreError> {
        let poll = self
            .poll_fence(instance, now_ms, acked_ms, lease_ms)
            .await?;
        Ok(poll.map(|p| BoardRead {
            episode: episode(p.episode),
            others_ms: as_ms(p.others_ms),
        }))
    }
    async fn close(
        &self,
        started_ms: u64,
        last_seen_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.close_fence(started_ms, last_seen_ms, now_ms).await
    }
    async fn unexpired(
        &self,
        now_ms: u64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        PgNonceStore::unexpired(self, now_ms, after, limit).await
    }
    async fn leave(&self, instance: &str, now_ms: u64, lease_ms: u64) -> Result<(), StoreError> {
        self.leave_fence(instance, now_ms, lease_ms).await
    }
}

/// A single instance has nothing to share (the type of a board without a ledger).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLedger;

impl Ledger for NoLedger {
    async fn report(&self, now_ms: u64, _gap_ms: u64) -> Result<Episode, StoreError> {
        Ok(Episode {
            started_ms: now_ms,
            last_seen_ms: now_ms,
            closed_ms: 0,
        })
    }
    async fn close(&self, _: u64, _: u64, _: u64) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn unexpired(&self, _: u64, _: &str, _: i64) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(Vec::new())
    }
    async fn read(&self, _: &str, _: u64, _: u64, _: u64) -> Result<Option<BoardRead>, StoreError> {
        Ok(None)
    }
    async fn leave(&self, _: &str, _: u64, _: u64) -> Result<(), StoreError> {
        Ok(())
    }
}
