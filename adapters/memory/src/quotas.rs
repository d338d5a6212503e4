//! [`MemoryQuotas`]: the abuse-limit state of one process.

use std::collections::{BTreeSet, HashMap};
use std::future::{Future, ready};
use std::sync::Mutex;

use ports::{Quotas, RateDecision, RateLimit, Reservation, SessionRecord, StoreError, Usage};

use crate::lock;

/// Default bound on the entries of each map of [`MemoryQuotas`].
pub const DEFAULT_QUOTA_CAPACITY: usize = 1_000_000;

#[derive(Debug, Default)]
struct ClientSessions {
    /// (expiry, session id), oldest expiry first: expired entries leave from the front.
    live: BTreeSet<(u64, String)>,
}

impl ClientSessions {
    /// Drops expired entries; returns how many were dropped.
    fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.live.len();
        while self.live.first().is_some_and(|(e, _)| *e < now_ms) {
            self.live.pop_first();
        }
        before - self.live.len()
    }
}

#[derive(Debug, Default)]
struct QuotaState {
    /// key → theoretical arrival time (µs).
    rates: HashMap<String, u64>,
    /// client id → its live sessions.
    clients: HashMap<String, ClientSessions>,
    /// Session entries across all clients.
    reserved: usize,
    /// session id → (uses, last use, expiry).
    usage: HashMap<String, (u64, u64, u64)>,
}

/// Rate limits, live sessions per client and per-session counters, in memory. Every
/// map is bounded: when one is full, stale entries are swept, and if it is still full
/// the call fails ([`StoreError::Full`]) so the caller fails closed.
#[derive(Debug)]
pub struct MemoryQuotas {
    capacity: usize,
    state: Mutex<QuotaState>,
}

impl Default for MemoryQuotas {
    fn default() -> Self {
        Self::new(DEFAULT_QUOTA_CAPACITY)
    }
}

impl MemoryQuotas {
    /// At most `capacity` entries per map.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(QuotaState::default()),
        }
    }

    /// The body of [`Quotas::rate`] (the port method wraps it in a ready future).
    ///
    /// # Errors
    /// [`StoreError::Full`].
    fn rate_sync(
        &self,
        key: &str,
        limit: RateLimit,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        let now_us = now_ms.saturating_mul(1000);
        let mut s = lock(&self.state);
        let tat = s.rates.get(key).copied();
        match limit.gcra(tat, now_us) {
            Err(wait_us) => Ok(RateDecision::Limited {
                retry_after_ms: wait_us.div_ceil(1000).max(1),
            }),
            Ok(new_tat) => {
                if tat.is_none() && s.rates.len() >= self.capacity {
                    // A key whose arrival time has passed is the same as no key.
                    s.rates.retain(|_, t| *t > now_us);
                    if s.rates.len() >= self.capacity {
                        return Err(StoreError::Full);
                    }
                }
                s.rates.insert(key.to_owned(), new_tat);
                Ok(RateDecision::Allowed)
            }
        }
    }

    /// The body of [`Quotas::reserve_session`] (the port method wraps it in a ready future).
    ///
    /// # Errors
    /// [`StoreError::Full`].
    fn reserve_session_sync(&self, r: Reservation<'_>) -> Result<bool, StoreError> {
        let Reservation {
            client_id,
            session_id,
            expires_at_ms,
            cap,
            now_ms,
        } = r;
        let mut guard = lock(&self.state);
        let s = &mut *guard;
        if s.reserved >= self.capacity {
            let mut dropped = 0;
            s.clients.retain(|_, c| {
                dropped += c.expire(now_ms);
                !c.live.is_empty()
            });
            s.reserved -= dropped;
            if s.reserved >= self.capacity {
                return Err(StoreError::Full);
            }
        }
        let client = s.clients.entry(client_id.to_owned()).or_default();
        s.reserved -= client.expire(now_ms);
        if client.live.len() as u64 >= cap {
            return Ok(false);
        }
        if client.live.insert((expires_at_ms, session_id.to_owned())) {
            s.reserved += 1;
        }
        Ok(true)
    }

    /// The body of [`Quotas::release_session`] (the port method wraps it in a ready future).
    fn release_session_sync(&self, client_id: &str, session_id: &str, expires_at_ms: u64) {
        let mut guard = lock(&self.state);
        let s = &mut *guard;
        if let Some(client) = s.clients.get_mut(client_id) {
            if client.live.remove(&(expires_at_ms, session_id.to_owned())) {
                s.reserved -= 1;
            }
            if client.live.is_empty() {
                s.clients.remove(client_id);
            }
        }
    }

    /// The body of [`Quotas::touch`] (the port method wraps it in a ready future).
    ///
    /// # Errors
    /// [`StoreError::Full`].
    fn touch_sync(
        &self,
        session: &SessionRecord,
        uses: u64,
        now_ms: u64,
        idle_ms: u64,
    ) -> Result<Usage, StoreError> {
        let mut s = lock(&self.state);
        if !s.usage.contains_key(&session.id) && s.usage.len() >= self.capacity {
            s.usage.retain(|_, (_, _, expiry)| *expiry >= now_ms);
            if s.usage.len() >= self.capacity {
                return Err(StoreError::Full);
            }
        }
        let entry = s.usage.entry(session.id.clone()).or_insert((
            0,
            session.created_at_ms,
            session.expires_at_ms,
        ));
        let before = Usage {
            uses: entry.0,
            last_used_ms: entry.1,
        };
        entry.0 = entry.0.saturating_add(uses);
        if idle_ms == 0 || now_ms.saturating_sub(entry.1) <= idle_ms {
            entry.1 = entry.1.max(now_ms);
        }
        Ok(before)
    }

    /// Live sessions counted for `client_id` (expired ones dropped first).
    pub fn sessions_of(&self, client_id: &str, now_ms: u64) -> usize {
        let mut guard = lock(&self.state);
        let s = &mut *guard;
        let Some(client) = s.clients.get_mut(client_id) else {
            return 0;
        };
        s.reserved -= client.expire(now_ms);
        client.live.len()
    }
}

impl Quotas for MemoryQuotas {
    fn rate(
        &self,
        key: &str,
        limit: RateLimit,
        now_ms: u64,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send {
        ready(self.rate_sync(key, limit, now_ms))
    }

    fn reserve_session(
        &self,
        reservation: Reservation<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(self.reserve_session_sync(reservation))
    }

    fn release_session(
        &self,
        client_id: &str,
        session_id: &str,
        expires_at_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.release_session_sync(client_id, session_id, expires_at_ms);
        ready(Ok(()))
    }

    fn touch(
        &self,
        session: &SessionRecord,
        uses: u64,
        now_ms: u64,
        idle_ms: u64,
    ) -> impl Future<Output = Result<Usage, StoreError>> + Send {
        ready(self.touch_sync(session, uses, now_ms, idle_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservation<'a>(
        client_id: &'a str,
        session_id: &'a str,
        expires_at_ms: u64,
        cap: u64,
        now_ms: u64,
    ) -> Reservation<'a> {
        Reservation {
            client_id,
            session_id,
            expires_at_ms,
            cap,
            now_ms,
        }
    }

    const LIMIT: RateLimit = RateLimit {
        per_minute: 60,
        burst: 2,
    };

    #[test]
    fn rate_limits_are_per_key_and_report_the_wait() {
        let q = MemoryQuotas::new(10);
        assert_eq!(q.rate_sync("ip:a", LIMIT, 0), Ok(RateDecision::Allowed));
        assert_eq!(q.rate_sync("ip:a", LIMIT, 0), Ok(RateDecision::Allowed));
        assert_eq!(
            q.rate_sync("ip:a", LIMIT, 0),
            Ok(RateDecision::Limited {
                retry_after_ms: 1000
            })
        );
        // A refused request is not counted: after the wait, one more goes through.
        assert_eq!(q.rate_sync("ip:a", LIMIT, 1000), Ok(RateDecision::Allowed));
        assert_eq!(q.rate_sync("ip:b", LIMIT, 0), Ok(RateDecision::Allowed));
    }

    #[test]
    fn a_full_rate_table_sweeps_idle_keys_and_otherwise_fails_closed() {
        let q = MemoryQuotas::new(2);
        q.rate_sync("a", LIMIT, 0).unwrap();
        q.rate_sync("b", LIMIT, 0).unwrap();
        assert_eq!(q.rate_sync("c", LIMIT, 0), Err(StoreError::Full));
        // Known keys are still decided.
        assert_eq!(q.rate_sync("a", LIMIT, 0), Ok(RateDecision::Allowed));
        // Once "b" is idle again (its arrival time has passed), its slot is reused.
        assert_eq!(q.rate_sync("c", LIMIT, 1_500), Ok(RateDecision::Allowed));
    }

    #[test]
    fn sessions_per_client_are_capped_until_some_expire_or_are_released() {
        let q = MemoryQuotas::new(100);
        assert_eq!(
            q.reserve_session_sync(reservation("c", "S-1", 1_000, 2, 0)),
            Ok(true)
        );
        assert_eq!(
            q.reserve_session_sync(reservation("c", "S-2", 5_000, 2, 0)),
            Ok(true)
        );
        assert_eq!(
            q.reserve_session_sync(reservation("c", "S-3", 5_000, 2, 0)),
            Ok(false)
        );
        assert_eq!(
            q.reserve_session_sync(reservation("d", "S-4", 5_000, 2, 0)),
            Ok(true)
        );
        // S-1 expires at 1000 (usable through 1000 inclusive).
        assert_eq!(
            q.reserve_session_sync(reservation("c", "S-3", 5_000, 2, 1_000)),
            Ok(false)
        );
        assert_eq!(
            q.reserve_session_sync(reservation("c", "S-3", 5_000, 2, 1_001)),
            Ok(true)
        );
        q.release_session_sync("c", "S-2", 5_000);
        assert_eq!(q.sessions_of("c", 1_001), 1);
        assert_eq!(
            q.reserve_session_sync(reservation("c", "S-5", 5_000, 2, 1_001)),
            Ok(true)
        );
    }

    #[test]
    fn a_full_session_table_fails_closed() {
        let q = MemoryQuotas::new(2);
        q.reserve_session_sync(reservation("a", "S-1", 10, 5, 0))
            .unwrap();
        q.reserve_session_sync(reservation("b", "S-2", 100, 5, 0))
            .unwrap();
        assert_eq!(
            q.reserve_session_sync(reservation("c", "S-3", 100, 5, 5)),
            Err(StoreError::Full)
        );
        assert_eq!(
            q.reserve_session_sync(reservation("c", "S-3", 100, 5, 11)),
            Ok(true)
        );
    }

    #[test]
    fn touch_counts_uses_and_does_not_refresh_an_idle_session() {
        let q = MemoryQuotas::new(10);
        let session = SessionRecord {
            id: "S-1".into(),
            keys: ports::SessionKeys::V1(ports::SessionKey::from_bytes([1; 32])),
            kind: ports::SessionKind::Anonymous,
            client_id: "c".into(),
            created_at_ms: 900,
            expires_at_ms: 10_000,
            at_rest: Default::default(),
        };
        let usage = |uses, last_used_ms| Usage { uses, last_used_ms };
        // Before the first use, the last use is the creation.
        assert_eq!(q.touch_sync(&session, 2, 1_000, 500,), Ok(usage(0, 900)));
        assert_eq!(q.touch_sync(&session, 2, 1_400, 500), Ok(usage(2, 1_000)));
        // 600 ms of silence > 500: reported with the old time, and it stays idle.
        assert_eq!(q.touch_sync(&session, 2, 2_000, 500), Ok(usage(4, 1_400)));
        assert_eq!(q.touch_sync(&session, 2, 2_001, 500), Ok(usage(6, 1_400)));
        // Without an idle limit, every use is recorded.
        assert_eq!(q.touch_sync(&session, 1, 2_002, 0), Ok(usage(8, 1_400)));
        assert_eq!(q.touch_sync(&session, 1, 2_003, 0), Ok(usage(9, 2_002)));
    }
}
