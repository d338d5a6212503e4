//! [`MemoryNonceStore`]: single-use nonces of one process, bounded, failing closed.
//!
//! Compact: a nonce costs its 16-byte fingerprint in a hash set, nothing else. Sets are
//! time buckets: a nonce goes into the bucket whose end is the first multiple of
//! TTL / 16 at or after its expiry, and a bucket is dropped whole once its end has
//! passed — so a nonce lives at least its TTL (at most 1/16 longer), expiry costs no
//! per-entry bookkeeping, and a claim looks into about 17 buckets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::{Future, ready};
use std::hash::{BuildHasher, BuildHasherDefault, RandomState};
use std::sync::Mutex;

use ports::{Claim, NonceClaim, NonceError, NonceStore};

use crate::{DEFAULT_NONCE_CAPACITY, lock};

/// A nonce key as stored: 128 bits of two independently keyed SipHashes of the key
/// text. The keys are random per process, so nobody can aim at a collision; by chance
/// one is about as likely as guessing a 128-bit secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint(u64, u64);

impl std::hash::Hash for Fingerprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Already a keyed hash: the set needs no second one (see `PassThrough`).
        state.write_u64(self.0);
    }
}

/// The sets' hasher for fingerprints: their first half, as it is.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

type Set = HashSet<Fingerprint, BuildHasherDefault<PassThrough>>;

/// Bytes one live nonce costs, planned generously: 16 bytes of fingerprint and one
/// control byte in a hash set that is between half and 7/8 full.
pub const BYTES_PER_NONCE: usize = 40;

/// Buckets per TTL (see the module's header).
const BUCKETS_PER_TTL: u64 = 16;

/// The nonces that live until one instant, and how many of them each client holds.
#[derive(Debug, Default)]
struct Bucket {
    set: Set,
    clients: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
}

#[derive(Debug, Default)]
struct NonceState {
    /// Bucket end (epoch ms, exclusive) → the nonces that live until then.
    buckets: BTreeMap<u64, Bucket>,
    /// Nonces held, over every bucket.
    len: usize,
    /// Nonces held per client (fingerprint of the client part of the key).
    clients: HashMap<u64, usize, BuildHasherDefault<PassThrough>>,
}

impl NonceState {
    fn expire(&mut self, now_ms: u64) {
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            let bucket = entry.remove();
            self.len -= bucket.set.len();
            for (client, n) in bucket.clients {
                if let Some(held) = self.clients.get_mut(&client) {
                    *held = held.saturating_sub(n as usize);
                    if *held == 0 {
                        self.clients.remove(&client);
                    }
                }
            }
        }
    }

    fn holds(&self, key: &Fingerprint) -> bool {
        self.buckets.values().any(|b| b.set.contains(key))
    }
}

/// The client part of a nonce key (`nonce:<client>:<nonce>`); the whole key otherwise.
fn client_part(key: &str) -> &str {
    key.strip_prefix("nonce:")
        .and_then(|rest| rest.split_once(':'))
        .map_or(key, |(client, _)| client)
}

/// The share of the store one client id may hold, in percent, unless configured.
pub const DEFAULT_CLIENT_SHARE_PERCENT: usize = 50;

/// Bounded single-use nonce store. When full of *live* nonces it refuses new claims
/// ([`NonceError::Full`]) rather than evicting any: fail closed.
#[derive(Debug)]
pub struct MemoryNonceStore {
    capacity: usize,
    /// Most nonces one client id may hold: one client filling the store must not lock
    /// everyone else out (it fails closed alone).
    client_share: usize,
    hashers: (RandomState, RandomState),
    state: Mutex<NonceState>,
}

impl MemoryNonceStore {
    /// A store holding at most `capacity` live nonces.
    pub fn new(capacity: usize) -> Self {
        Self::with_client_share(capacity, DEFAULT_CLIENT_SHARE_PERCENT)
    }

    /// A store holding at most `capacity` live nonces, of which one client id may hold
    /// at most `percent` %.
    pub fn with_client_share(capacity: usize, percent: usize) -> Self {
        let client_share = (capacity.saturating_mul(percent.min(100)) / 100).max(1);
        Self {
            capacity,
            client_share,
            hashers: (RandomState::new(), RandomState::new()),
            state: Mutex::new(NonceState::default()),
        }
    }

    /// A store sized to use at most about `bytes` of memory.
    pub fn with_memory(bytes: usize, client_share_percent: usize) -> Self {
        Self::with_client_share((bytes / BYTES_PER_NONCE).max(1), client_share_percent)
    }

    /// How many live nonces it holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn fingerprint(&self, key: &str) -> Fingerprint {
        Fingerprint(self.hashers.0.hash_one(key), self.hashers.1.hash_one(key))
    }

    /// Live entries (for health and tests).
    pub fn len(&self, now_ms: u64) -> usize {
        let mut s = lock(&self.state);
        s.expire(now_ms);
        s.len
    }

    /// Whether no live nonce is held.
    pub fn is_empty(&self, now_ms: u64) -> bool {
        self.len(now_ms) == 0
    }

    /// Whether a claim of a new nonce would be refused now (the store is full).
    pub fn is_full(&self, now_ms: u64) -> bool {
        self.len(now_ms) >= self.capacity
    }

    /// The body of [`NonceStore::claim`] (the port method wraps it in a ready future).
    ///
    /// # Errors
    /// [`NonceError::Full`].
    fn claim_sync(&self, key: &str, ttl_sec: u64, now_ms: u64) -> Result<NonceClaim, NonceError> {
        let ttl_ms = ttl_sec.saturating_mul(1000);
        let width = (ttl_ms / BUCKETS_PER_TTL).max(1);
        let end = now_ms
            .saturating_add(ttl_ms)
            .div_ceil(width)
            .saturating_mul(width);
        let client = self.hashers.0.hash_one(client_part(key));
        let key = self.fingerprint(key);
        let mut s = lock(&self.state);
        s.expire(now_ms);
        if s.holds(&key) {
            return Ok(NonceClaim::Replay);
        }
        let held = s.clients.get(&client).copied().unwrap_or(0);
        if s.len >= self.capacity || held >= self.client_share {
            return Err(NonceError::Full);
        }
        let bucket = s.buckets.entry(end.max(now_ms + 1)).or_default();
        bucket.set.insert(key);
        *bucket.clients.entry(client).or_default() += 1;
        *s.clients.entry(client).or_default() += 1;
        s.len += 1;
        Ok(NonceClaim::Fresh)
    }

    /// Whether `key` is held and unexpired, without claiming it.
    pub fn contains(&self, key: &str, now_ms: u64) -> bool {
        let key = self.fingerprint(key);
        let mut s = lock(&self.state);
        s.expire(now_ms);
        s.holds(&key)
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
        claim: Claim<'_>,
    ) -> impl Future<Output = Result<NonceClaim, NonceError>> + Send {
        ready(self.claim_sync(claim.key, claim.ttl_sec, claim.now_ms))
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
        assert_eq!(
            s.claim_sync("k", 600, 601_000),
            Ok(NonceClaim::Replay),
            "at least the TTL"
        );
        // gone by the end of its bucket: at most TTL / 16 longer
        assert_eq!(s.claim_sync("k", 600, 638_500), Ok(NonceClaim::Fresh));
        assert_eq!(s.len(638_500), 1);
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
        assert_eq!(s.claim_sync("d", 10, 10_625), Ok(NonceClaim::Fresh));
        assert_eq!(s.len(10_625), 1);
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

    #[test]
    fn one_client_cannot_take_what_the_others_need() {
        let s = MemoryNonceStore::with_client_share(10, 50);
        for i in 0..5 {
            assert_eq!(
                s.claim_sync(&format!("nonce:A:{i}"), 600, 0),
                Ok(NonceClaim::Fresh)
            );
        }
        assert_eq!(
            s.claim_sync("nonce:A:5", 600, 0),
            Err(NonceError::Full),
            "A's share"
        );
        assert_eq!(s.claim_sync("nonce:A:0", 600, 0), Ok(NonceClaim::Replay));
        for i in 0..5 {
            assert_eq!(
                s.claim_sync(&format!("nonce:B:{i}"), 600, 0),
                Ok(NonceClaim::Fresh)
            );
        }
        assert_eq!(
            s.claim_sync("nonce:C:0", 600, 0),
            Err(NonceError::Full),
            "the store"
        );
        // Shares come back with expiry.
        assert_eq!(
            s.claim_sync("nonce:A:6", 600, 700_000),
            Ok(NonceClaim::Fresh)
        );
    }

    #[test]
    fn a_million_nonces_fit_in_what_the_default_plans_for_them() {
        // The bench's load: a TTL of 601 s, a million claims over a minute and a half.
        let s = MemoryNonceStore::with_client_share(usize::MAX, 100);
        for i in 0..1_000_000u64 {
            assert_eq!(
                s.claim_sync(&format!("nonce:BENCH:{i:032x}"), 601, 1_000_000 + i / 10),
                Ok(NonceClaim::Fresh)
            );
        }
        let state = lock(&s.state);
        let bytes: usize = state
            .buckets
            .values()
            .map(|b| b.set.capacity() * (size_of::<Fingerprint>() + 1))
            .sum();
        assert!(bytes <= 1_000_000 * BYTES_PER_NONCE, "{bytes} bytes");
    }
}
