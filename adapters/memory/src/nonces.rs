//! [`MemoryNonceStore`]: single-use nonces of one process, bounded, failing closed.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, ready};
use std::sync::{Arc, Mutex};

use ports::{NonceClaim, NonceError, NonceStore};

use crate::{DEFAULT_NONCE_CAPACITY, lock};

#[derive(Debug, Default)]
struct NonceState {
    /// key → expiry (epoch ms, exclusive).
    live: HashMap<Arc<str>, u64>,
    /// Claims in order; with one TTL per store, also in expiry order, so expired
    /// entries are dropped from the front in amortised O(1) — no full sweeps.
    order: VecDeque<(u64, Arc<str>)>,
}

impl NonceState {
    fn expire(&mut self, now_ms: u64) {
        while let Some((expiry, _)) = self.order.front() {
            if *expiry > now_ms {
                break;
            }
            if let Some((expiry, key)) = self.order.pop_front() {
                // Only drop the map entry if it was not re-claimed later.
                if self.live.get(&key) == Some(&expiry) {
                    self.live.remove(&key);
                }
            }
        }
    }
}

/// Bounded single-use nonce store. When full of *live* nonces it refuses new claims
/// ([`NonceError::Full`]) rather than evicting any: fail closed.
#[derive(Debug)]
pub struct MemoryNonceStore {
    capacity: usize,
    state: Mutex<NonceState>,
}

impl MemoryNonceStore {
    /// A store holding at most `capacity` live nonces.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(NonceState::default()),
        }
    }

    /// Live entries (for health and tests).
    pub fn len(&self, now_ms: u64) -> usize {
        let mut s = lock(&self.state);
        s.expire(now_ms);
        s.live.len()
    }

    /// Whether no live nonce is held.
    pub fn is_empty(&self, now_ms: u64) -> bool {
        self.len(now_ms) == 0
    }

    /// The body of [`NonceStore::claim`] (the port method wraps it in a ready future).
    ///
    /// # Errors
    /// [`NonceError::Full`].
    fn claim_sync(&self, key: &str, ttl_sec: u64, now_ms: u64) -> Result<NonceClaim, NonceError> {
        use std::collections::hash_map::Entry;
        let expiry = now_ms.saturating_add(ttl_sec.saturating_mul(1000));
        let key: Arc<str> = Arc::from(key);
        let mut s = lock(&self.state);
        s.expire(now_ms);
        let full = s.live.len() >= self.capacity;
        // One hash per claim: look up and insert through the same entry.
        match s.live.entry(Arc::clone(&key)) {
            Entry::Occupied(e) if *e.get() > now_ms => return Ok(NonceClaim::Replay),
            // Expired but not yet swept (only after a clock step back): reuse the slot.
            Entry::Occupied(mut e) => {
                e.insert(expiry);
            }
            Entry::Vacant(_) if full => return Err(NonceError::Full),
            Entry::Vacant(v) => {
                v.insert(expiry);
            }
        }
        s.order.push_back((expiry, key));
        Ok(NonceClaim::Fresh)
    }

    /// Whether `key` is held and unexpired, without claiming it.
    pub fn contains(&self, key: &str, now_ms: u64) -> bool {
        lock(&self.state).live.get(key).is_some_and(|&e| e > now_ms)
    }
}

impl Default for MemoryNonceStore {
    fn default() -> Self {
        Self::new(DEFAULT_NONCE_CAPACITY)
    }
}

impl NonceStore for MemoryNonceStore {
    fn claim(
        &self,
        key: &str,
        ttl_sec: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<NonceClaim, NonceError>> + Send {
        ready(self.claim_sync(key, ttl_sec, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn nonce_claims_are_single_use_until_expiry() {
        let s = MemoryNonceStore::new(10);
        assert_eq!(s.claim_sync("k", 600, 1_000), Ok(NonceClaim::Fresh));
        assert_eq!(s.claim_sync("k", 600, 2_000), Ok(NonceClaim::Replay));
        assert_eq!(s.claim_sync("k", 600, 600_999), Ok(NonceClaim::Replay));
        // expired exactly at first use + TTL
        assert_eq!(s.claim_sync("k", 600, 601_000), Ok(NonceClaim::Fresh));
        assert_eq!(s.len(601_000), 1);
    }

    #[test]
    fn full_store_fails_closed_and_recovers_after_expiry() {
        let s = MemoryNonceStore::new(3);
        for k in ["a", "b", "c"] {
            assert_eq!(s.claim_sync(k, 10, 0), Ok(NonceClaim::Fresh));
        }
        assert_eq!(s.claim_sync("d", 10, 5_000), Err(NonceError::Full));
        // a full store still recognises replays
        assert_eq!(s.claim_sync("a", 10, 5_000), Ok(NonceClaim::Replay));
        // expired entries are swept before refusing
        assert_eq!(s.claim_sync("d", 10, 10_000), Ok(NonceClaim::Fresh));
        assert_eq!(s.len(10_000), 1);
    }

    #[test]
    fn concurrent_claims_of_one_key_admit_exactly_one() {
        let s = Arc::new(MemoryNonceStore::new(1000));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || s.claim_sync("same", 600, 0))
            })
            .collect();
        let fresh = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|r| *r == Ok(NonceClaim::Fresh))
            .count();
        assert_eq!(fresh, 1);
    }
}
