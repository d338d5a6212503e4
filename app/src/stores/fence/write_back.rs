//! Writing back: ending an episode early. Once Redis has been quiet for a while, an
//! instance copies every unexpired nonce of the shared store into Redis and closes the
//! episode on the board, if no trouble was reported meanwhile; claims then need Redis
//! alone again, instead of the shared store too for two windows after the episode's
//! last report (so a PostgreSQL outage soon after a Redis one leaves purchases going).
//!
//! Why nothing is lost: a claim that went to the shared store alone (Redis failed it)
//! was written there before its instance reported the trouble, and the report carries
//! the time it was made. The write-back starts `QUIET` after the latest report it
//! knows, so it reads every such claim whose report it knows; one written after it
//! began is reported later than that, which either lands before the close (the close,
//! conditional on the latest report, then fails) or after it, where it begins a new
//! episode with its own fence and shared claims. The fence of the closed episode stays:
//! nonces Redis lost are not in the shared store, and requests stamped before it
//! remain refused while they can pass the window.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{debug, info};

use super::{Board, Ledger, POLL, now_ms};

/// How long Redis must have been quiet (no trouble reported) before a write-back, and
/// how long after it the close waits for reports still on their way.
pub const QUIET: Duration = Duration::from_secs(1);
/// Nonces read from the shared store per page.
const PAGE: i64 = 1_000;

/// A primary that nonces can be written back into.
pub trait Restore: Send + Sync + 'static {
    /// Whether the primary answers and still holds what this instance knows it held
    /// (Redis: every bucket marker with its known epoch). A loss found here is counted
    /// as any other.
    fn intact(&self) -> impl Future<Output = Result<bool, String>> + Send;
    /// Writes `(claim key, expiry ms)` nonces unexpired at `now_ms`, leaving the ones it
    /// holds; returns how many were sent.
    fn restore(
        &self,
        nonces: &[(String, u64)],
        now_ms: u64,
    ) -> impl Future<Output = Result<usize, String>> + Send;
}

impl Restore for redis_adapter::RedisNonceStore {
    async fn intact(&self) -> Result<bool, String> {
        self.markers_intact().await.map_err(|e| e.to_string())
    }
    async fn restore(&self, nonces: &[(String, u64)], now_ms: u64) -> Result<usize, String> {
        Self::restore(self, nonces, now_ms)
            .await
            .map_err(|e| e.to_string())
    }
}

/// What one write-back attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBack {
    /// Nothing to do: no open episode, trouble too recent, no board, or a primary that
    /// does not hold what it held.
    Idle,
    /// Written back and closed (how many nonces were sent).
    Closed(usize),
    /// Written back, but trouble was reported meanwhile: the episode stays open.
    Superseded,
}

impl<L: Ledger> Board<L> {
    /// One write-back at `now_ms`, waiting `quiet` before closing.
    ///
    /// # Errors
    /// A store's error (the episode stays open; the next attempt starts over).
    pub async fn write_back<R: Restore>(
        &self,
        primary: &R,
        now_ms: u64,
        quiet: Duration,
    ) -> Result<WriteBack, String> {
        let Some(ledger) = &self.ledger else {
            return Ok(WriteBack::Idle);
        };
        let quiet_ms = quiet.as_millis() as u64;
        let e = self.state().episode;
        let unreported =
            self.latest_trouble_ms.load(Ordering::SeqCst) > self.reported_ms.load(Ordering::SeqCst);
        if e.started_ms == 0
            || e.closed_ms > 0
            || unreported
            || now_ms < e.last_seen_ms + quiet_ms
            || now_ms > e.last_seen_ms + self.config.dual_ms()
        {
            return Ok(WriteBack::Idle);
        }
        if !primary.intact().await? {
            return Ok(WriteBack::Idle);
        }
        let mut after = String::new();
        let mut sent = 0;
        loop {
            let page = ledger
                .unexpired(now_ms, &after, PAGE)
                .await
                .map_err(|e| e.to_string())?;
            let Some((last, _)) = page.last() else { break };
            after.clone_from(last);
            sent += primary.restore(&page, now_ms).await?;
            if page.len() < PAGE as usize {
                break;
            }
        }
        tokio::time::sleep(quiet).await;
        // Redis did not lose anything meanwhile (what it held before the write-back
        // and the write-back itself).
        if self.state().episode != e || !primary.intact().await? {
            http_adapter::metrics::nonce_fence_write_back(false);
            return Ok(WriteBack::Superseded);
        }
        let closed_at = now_ms.max(super::now_ms()).max(1);
        let closed = ledger
            .close(e.started_ms, e.last_seen_ms, closed_at)
            .await
            .map_err(|e| e.to_string())?;
        http_adapter::metrics::nonce_fence_write_back(closed);
        if !closed {
            return Ok(WriteBack::Superseded);
        }
        info!(
            nonces = sent,
            "nonce fence: the shared store's nonces are back in redis; the episode is closed"
        );
        self.merge(
            super::Episode {
                closed_ms: closed_at,
                ..e
            },
            closed_at,
        );
        Ok(WriteBack::Closed(sent))
    }

    /// Tries a write-back every [`POLL`], for as long as the process runs.
    pub fn spawn_write_back<R: Restore>(self: &Arc<Self>, primary: R) {
        if self.ledger.is_none() {
            return;
        }
        let board = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = board.write_back(&primary, now_ms(), QUIET).await {
                    debug!(error = %e, "nonce fence: write-back not done");
                }
                tokio::time::sleep(POLL).await;
            }
        });
    }
}
