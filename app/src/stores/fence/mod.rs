//! The nonce fence: replay protection that holds across instances while Redis is
//! unreachable, and after Redis lost data.
//!
//! Redis is the fast record of used nonces, but not a durable one: an outage hides it
//! and a restart without persistence, a `FLUSHALL`, an eviction or a failover to a
//! lagging replica empties part of it. [`Fenced`] keeps the rule "a nonce accepted
//! once is never accepted again while its timestamp can pass the window" with three
//! pieces:
//!
//! * a **shared store** every instance can read (PostgreSQL; the embedded store in a
//!   single-instance deployment), written whenever Redis alone might not be enough:
//!   during an *episode* of Redis trouble and for `2 × window` after its last report
//!   (so nonces claimed there during the outage stay claimed after it), and for any
//!   request stamped more than the margin ahead of the server's clock (so those
//!   survive a later loss of Redis data);
//! * a **fence** at the start of each episode: a nonce claimed in Redis alone before
//!   it may be gone, and was stamped at most `margin` after its claim, so requests
//!   stamped before (the last moment any instance claimed in Redis alone) + margin
//!   are refused while they can pass the window ([`NonceError::Fenced`]; the client
//!   sends a new request);
//! * a **board** on which instances publish episodes and take them in ([`Ledger`]:
//!   PostgreSQL), read by each instance every [`POLL`]. An instance claims in Redis
//!   alone only within the lease of its last read; past it, in PostgreSQL too, which
//!   fails closed when PostgreSQL is down. Each read records that the instance has
//!   taken the episode in, so the others learn when it stopped claiming in Redis
//!   alone — within a poll or two, or at worst a lease after its last read.
//!
//! An episode begins when a claim finds Redis unreachable, or a loss or an
//! interruption (a connection that may have been made anew to another server) is
//! counted ([`Losses`]). It ends two windows after its last report, or
//! earlier when an instance has written the shared store's nonces back into Redis
//! ([`write_back`]). The edges are explained in `docs/operations.md`.

mod board;
mod ledger;
#[cfg(test)]
mod tests;
mod write_back;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ports::{Claim, NonceClaim, NonceError, NonceStore};

use board::View;
pub use board::{Board, BoardRead, Episode};
pub use ledger::{Ledger, NoLedger};
pub use write_back::{QUIET, Restore, WriteBack};

/// How often an instance reads the board.
pub const POLL: Duration = Duration::from_millis(250);

/// The fence's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceConfig {
    /// The timestamp window (ms).
    pub window_ms: u64,
    /// How far after its claim a request may be stamped and still be claimed in Redis
    /// alone; also the allowance for clock differences between instances (ms).
    pub margin_ms: u64,
    /// How long one read of the board lets an instance claim in Redis alone (ms):
    /// also how long a PostgreSQL outage leaves Redis-only claims going. Ignored
    /// without a board (a single instance).
    pub lease_ms: u64,
}

impl FenceConfig {
    /// After its last report, an episode is over once this has passed: no nonce claimed
    /// in the shared store alone during it can still pass the window.
    pub(super) fn dual_ms(&self) -> u64 {
        self.lease_ms + self.margin_ms + 2 * self.window_ms
    }
    /// A report this long after the last one begins a new episode (less than
    /// [`Self::dual_ms`], so no instance has gone back to Redis alone in between).
    fn episode_gap_ms(&self) -> u64 {
        2 * self.window_ms
    }
}

/// A primary nonce store that counts the losses of its data it has seen, and the
/// interruptions of its connection.
pub trait Losses {
    /// Losses seen so far (only increases).
    fn losses(&self) -> u64;
    /// Times so far the primary's connection may have been made anew to another server,
    /// whatever request met the failure (only increases): the new one may reach a
    /// primary that lacks the last claims (a promoted replica that missed them) and
    /// still holds every marker.
    fn interruptions(&self) -> u64;
}

impl Losses for redis_adapter::RedisNonceStore {
    fn losses(&self) -> u64 {
        self.redis().losses()
    }
    fn interruptions(&self) -> u64 {
        self.redis().interruptions()
    }
}

/// The wall clock (ms since the epoch).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Nonces claimed in a primary (Redis) behind the fence, with a shared store.
pub struct Fenced<P, S, L> {
    /// The fast store.
    pub primary: P,
    /// The store every instance shares (or the embedded one of a single instance).
    pub shared: S,
    /// The fence.
    pub board: Arc<Board<L>>,
    /// The primary's losses already taken in.
    pub losses_seen: AtomicU64,
    /// The primary's interruptions already taken in.
    pub interruptions_seen: AtomicU64,
}

impl<P, S, L> std::fmt::Debug for Fenced<P, S, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fenced").finish_non_exhaustive()
    }
}

impl<P: NonceStore + Losses, S: NonceStore, L: Ledger> Fenced<P, S, L> {
    /// The primary and the shared store behind `board`.
    pub fn new(primary: P, shared: S, board: Arc<Board<L>>) -> Self {
        let losses_seen = AtomicU64::new(primary.losses());
        let interruptions_seen = AtomicU64::new(primary.interruptions());
        Self {
            primary,
            shared,
            board,
            losses_seen,
            interruptions_seen,
        }
    }

    /// Reports the losses, and the interruptions, the primary saw since the last call:
    /// an interruption any part of the service met (a cache read, a health probe, the
    /// identity watch) begins an episode as a claim's failure does, before the next
    /// claim trusts a connection that may have been made anew. Returns the counts taken
    /// in.
    fn take_in_losses(&self, now_ms: u64) -> (u64, u64) {
        let losses = self.primary.losses();
        if self.losses_seen.swap(losses, Ordering::SeqCst) < losses {
            self.board.trouble(now_ms, "redis lost data");
        }
        let interruptions = self.primary.interruptions();
        if self
            .interruptions_seen
            .swap(interruptions, Ordering::SeqCst)
            < interruptions
        {
            self.board.trouble(now_ms, "redis unavailable");
        }
        (losses, interruptions)
    }

    /// Whether the primary counted a loss or an interruption since `seen`.
    fn troubled_since(&self, seen: (u64, u64)) -> bool {
        (self.primary.losses(), self.primary.interruptions()) != seen
    }

    fn fenced(&self, claim: &Claim<'_>, view: View) -> Result<(), NonceError> {
        if claim.stamped_ms < view.refuse_before_ms {
            self.board.refused.fetch_add(1, Ordering::Relaxed);
            http_adapter::metrics::nonce_fence_refused();
            return Err(NonceError::Fenced {
                reason: format!(
                    "stamped {} ms before the fence",
                    view.refuse_before_ms - claim.stamped_ms
                ),
                // A request stamped at the fence passes: that long from now.
                retry_after_ms: view.refuse_before_ms.saturating_sub(claim.now_ms).max(1),
            });
        }
        Ok(())
    }

    /// The shared store first (the durable record), then the primary: a nonce the
    /// primary already holds is a replay whatever the shared store says; a primary
    /// that is down keeps the episode alive and leaves the decision to the shared one.
    async fn claim_in_both(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        if self.shared.claim(claim).await? == NonceClaim::Replay {
            return Ok(NonceClaim::Replay);
        }
        match self.primary.claim(claim).await {
            Ok(decided) => Ok(decided),
            Err(_) => {
                self.take_in_losses(claim.now_ms);
                self.board.trouble(claim.now_ms, "redis unavailable");
                Ok(NonceClaim::Fresh)
            }
        }
    }
}

/// A primary nonce store that can send one more write (a rider) in the same trip as a
/// claim: Redis, with an init's cache entry ([`redis_adapter::Rider`]). Any store carries
/// `()`, the rider of a plain claim.
pub trait Carries<R: ?Sized>: NonceStore {
    /// Claims `claim`, writing `rider` along whatever the outcome.
    fn claim_carrying(
        &self,
        claim: Claim<'_>,
        rider: &R,
    ) -> impl Future<Output = Result<NonceClaim, NonceError>> + Send;
}

impl<N: NonceStore> Carries<()> for N {
    fn claim_carrying(
        &self,
        claim: Claim<'_>,
        _: &(),
    ) -> impl Future<Output = Result<NonceClaim, NonceError>> + Send {
        self.claim(claim)
    }
}

impl Carries<redis_adapter::Rider> for redis_adapter::RedisNonceStore {
    fn claim_carrying(
        &self,
        claim: Claim<'_>,
        rider: &redis_adapter::Rider,
    ) -> impl Future<Output = Result<NonceClaim, NonceError>> + Send {
        self.claim_with(claim, Some(rider))
    }
}

/// Whether a rider was written ([`Fenced::claim_carrying`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiderSent {
    /// Written: the primary decided the claim.
    Written,
    /// Not sent: the claim was decided without the primary alone (fenced, or in the
    /// shared store too).
    Unsent,
    /// Sent, outcome unknown: the primary failed.
    Unknown,
}

impl<P: NonceStore + Losses, S: NonceStore, L: Ledger> Fenced<P, S, L> {
    /// [`NonceStore::claim`], with `rider` sent along when the primary alone decides
    /// (the fast path); otherwise it is not sent, or its fate is unknown.
    pub async fn claim_carrying<R: Sync + ?Sized>(
        &self,
        claim: Claim<'_>,
        rider: &R,
    ) -> (Result<NonceClaim, NonceError>, RiderSent)
    where
        P: Carries<R>,
    {
        let now = claim.now_ms;
        let seen = self.take_in_losses(now);
        let view = self.board.view(now);
        if let Err(e) = self.fenced(&claim, view) {
            return (Err(e), RiderSent::Unsent);
        }
        let ahead = claim.stamped_ms > now.saturating_add(self.board.config.margin_ms);
        if view.shared || ahead {
            return (self.claim_in_both(claim).await, RiderSent::Unsent);
        }
        match self.primary.claim_carrying(claim, rider).await {
            Err(NonceError::Unavailable(why)) => {
                // An outage, or a loss the claim itself found: fence, then decide
                // under the fence.
                self.take_in_losses(now);
                self.board.trouble(now, &why);
                let view = self.board.view(now);
                let decided = match self.fenced(&claim, view) {
                    Ok(()) => self.claim_in_both(claim).await,
                    Err(e) => Err(e),
                };
                (decided, RiderSent::Unknown)
            }
            Ok(decided) if self.troubled_since(seen) => {
                // An interruption (or a loss) was counted while this claim ran: its
                // connection may have been made anew under it — by this claim or by
                // another request — to a primary without the last claims. A replay it
                // found stands; "fresh" is decided again, behind the fence, by the
                // shared store.
                self.take_in_losses(now);
                self.board.trouble(now, "redis unavailable during a claim");
                let decided = match decided {
                    NonceClaim::Replay => Ok(NonceClaim::Replay),
                    NonceClaim::Fresh => match self.fenced(&claim, self.board.view(now)) {
                        Ok(()) => self.shared.claim(claim).await,
                        Err(e) => Err(e),
                    },
                };
                (decided, RiderSent::Written)
            }
            Ok(decided) => (Ok(decided), RiderSent::Written),
            Err(e) => (Err(e), RiderSent::Unknown),
        }
    }
}

impl<P: NonceStore + Losses, S: NonceStore, L: Ledger> NonceStore for Fenced<P, S, L> {
    async fn claim(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        self.claim_carrying(claim, &()).await.0
    }
}
