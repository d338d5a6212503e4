//! Abuse limits: rate limits (GCRA), the cap on live sessions per client id, and
//! per-session use counters (encryption cap, idle timeout). The state is shared
//! between instances when an adapter keeps it in Redis.

use std::future::Future;

use crate::store::{SessionRecord, StoreError};

/// A rate: `per_minute` requests sustained, up to `burst` at once. Enforced with the
/// generic cell rate algorithm (GCRA): one stored timestamp per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per minute; 0 turns the limit off.
    pub per_minute: u32,
    /// Requests allowed at once (at least 1 when on).
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: Self = Self {
        per_minute: 0,
        burst: 0,
    };

    /// Whether the limit is off.
    pub fn is_off(&self) -> bool {
        self.per_minute == 0
    }

    /// Time between two requests at the sustained rate, in microseconds.
    pub fn emission_interval_us(&self) -> u64 {
        60_000_000 / u64::from(self.per_minute.max(1))
    }

    /// How far ahead of now the theoretical arrival time may run, in microseconds.
    pub fn tolerance_us(&self) -> u64 {
        self.emission_interval_us() * u64::from(self.burst.max(1))
    }

    /// One GCRA step. `tat_us` is the stored theoretical arrival time (absent = idle
    /// key). Returns the new arrival time to store, or — when the request is over the
    /// limit, and nothing must be stored — how long to wait, in microseconds.
    ///
    /// # Errors
    /// The wait in microseconds (at least 1) when the request is over the limit.
    pub fn gcra(&self, tat_us: Option<u64>, now_us: u64) -> Result<u64, u64> {
        let new_tat = tat_us.unwrap_or(0).max(now_us) + self.emission_interval_us();
        let ahead = new_tat - now_us;
        let tolerance = self.tolerance_us();
        if ahead > tolerance {
            Err(ahead - tolerance)
        } else {
            Ok(new_tat)
        }
    }
}

/// The answer of a rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Within the limit (and counted).
    Allowed,
    /// Over the limit; nothing was counted.
    Limited {
        /// When a retry can succeed, in milliseconds (at least 1).
        retry_after_ms: u64,
    },
}

/// Per-session use counters, as they were *before* the call that returns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Encryptions counted under the session key so far.
    pub uses: u64,
    /// Last accepted use (epoch ms); the session's creation before its first use.
    /// Only meaningful when the call asked for an idle limit.
    pub last_used_ms: u64,
}

/// One new session to count against its client's cap of live sessions
/// ([`Quotas::reserve_session`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation<'a> {
    /// The session's owner (`X-ClientId`).
    pub client_id: &'a str,
    /// The new session's id.
    pub session_id: &'a str,
    /// When the session expires (ms since the epoch): it stops counting then.
    pub expires_at_ms: u64,
    /// The most live sessions the client may hold.
    pub cap: u64,
    /// The server's clock (ms since the epoch).
    pub now_ms: u64,
}

/// The state behind the abuse limits. Every method is atomic per key, also across
/// instances when the state is shared.
pub trait Quotas: Send + Sync {
    /// Counts one request against `limit` for `key` unless that would exceed it.
    ///
    /// # Errors
    /// [`StoreError`] when the decision cannot be made (callers fail closed).
    fn rate(
        &self,
        key: &str,
        limit: RateLimit,
        now_ms: u64,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send;

    /// Records the reservation's session against its client unless the client already
    /// has `cap` live sessions; `true` when recorded.
    ///
    /// # Errors
    /// [`StoreError`] when the decision cannot be made (callers fail closed).
    fn reserve_session(
        &self,
        reservation: Reservation<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Withdraws a session (reserved with this expiry) from its client's count: it
    /// was revoked, or its creation failed.
    ///
    /// # Errors
    /// [`StoreError`]; the entry then lapses at the session's expiry.
    fn release_session(
        &self,
        client_id: &str,
        session_id: &str,
        expires_at_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds `uses` encryptions to the counter of `session` and, unless the session has
    /// been idle for longer than `idle_ms` (0 = no idle limit), records `now_ms` as its
    /// last use. The counters live as long as the session. Returns the counters as
    /// they were before the call.
    ///
    /// # Errors
    /// [`StoreError`] when the counters cannot be read (callers fail closed).
    fn touch(
        &self,
        session: &SessionRecord,
        uses: u64,
        now_ms: u64,
        idle_ms: u64,
    ) -> impl Future<Output = Result<Usage, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_the_sustained_rate() {
        // 60/min = one a second, burst 3.
        let limit = RateLimit {
            per_minute: 60,
            burst: 3,
        };
        let mut tat = None;
        let now = 1_000_000_000;
        for _ in 0..3 {
            tat = Some(limit.gcra(tat, now).expect("within the burst"));
        }
        let wait = limit.gcra(tat, now).expect_err("burst used up");
        assert_eq!(wait, 1_000_000, "one emission interval");
        // After exactly that wait, one more goes through, and only one.
        let later = now + wait;
        tat = Some(limit.gcra(tat, later).expect("a token came back"));
        assert!(limit.gcra(tat, later).is_err());
    }

    #[test]
    fn an_idle_key_gets_its_whole_burst_back() {
        let limit = RateLimit {
            per_minute: 600,
            burst: 2,
        };
        let tat = limit.gcra(None, 0).ok();
        let tat = limit.gcra(tat, 0).ok();
        assert!(limit.gcra(tat, 0).is_err());
        let tat = limit.gcra(tat, 10_000_000).ok();
        assert!(limit.gcra(tat, 10_000_000).is_ok());
    }
}
