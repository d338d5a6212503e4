//! # memory — embedded in-process stores
//!
//! Bounded [`SessionStore`] and [`NonceStore`] implementations: the default when no
//! database is configured, the fallback while Redis is unreachable, and the fast fake
//! for tests. Depends on `ports` only.
//!
//! Both stores are per process: two server processes on embedded stores do not see
//! each other's sessions or nonces.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, ready};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use ports::{
    NonceClaim, NonceError, NonceStore, SessionCache, SessionRecord, SessionStore, StoreError,
};

mod quotas;

pub use quotas::{DEFAULT_QUOTA_CAPACITY, MemoryQuotas};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps logically broken
    // (every mutation is a single insert/remove), so keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Default capacity of [`MemoryNonceStore`] (`MEMORY_NONCE_MAX_SIZE`).
pub const DEFAULT_NONCE_CAPACITY: usize = 100_000;
/// Default capacity of [`MemorySessionStore`] (`MEMORY_SESSION_MAX_SIZE`).
pub const DEFAULT_SESSION_CAPACITY: usize = 1_000_000;

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

#[derive(Debug, Default)]
struct SessionState {
    sessions: HashMap<String, SessionRecord>,
    last_sweep_ms: u64,
}

/// Bounded session store with expiry. Expired sessions are removed lazily on lookup
/// (by the domain) and swept when the store reaches capacity.
#[derive(Debug)]
pub struct MemorySessionStore {
    capacity: usize,
    state: RwLock<SessionState>,
}

impl MemorySessionStore {
    /// A store holding at most `capacity` sessions.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: RwLock::new(SessionState::default()),
        }
    }

    /// Stored sessions, expired ones included until swept.
    pub fn len(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .sessions
            .len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Synchronous insert.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] or [`StoreError::Full`].
    fn insert_sync(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if s.sessions.contains_key(&record.id) {
            return Err(StoreError::Duplicate);
        }
        let now = record.created_at_ms;
        // Sweep at most once a second, so a store full of live sessions answers
        // "full" cheaply instead of rescanning on every insert.
        if s.sessions.len() >= self.capacity && now >= s.last_sweep_ms.saturating_add(1000) {
            s.sessions.retain(|_, r| !r.is_expired(now));
            s.last_sweep_ms = now;
        }
        if s.sessions.len() >= self.capacity {
            return Err(StoreError::Full);
        }
        s.sessions.insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// Synchronous lookup.
    fn get_sync(&self, id: &str) -> Option<SessionRecord> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .sessions
            .get(id)
            .cloned()
    }

    /// Synchronous delete.
    fn delete_sync(&self, id: &str) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .sessions
            .remove(id);
    }
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        Self::new(DEFAULT_SESSION_CAPACITY)
    }
}

impl SessionStore for MemorySessionStore {
    fn insert(
        &self,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.insert_sync(record))
    }
    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send {
        ready(Ok(self.get_sync(id)))
    }
    fn delete(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.delete_sync(id);
        ready(Ok(()))
    }
}

/// A small in-process cache in front of a shared cache: entries live at most
/// `max_age` (so a change made through another instance is seen within that time) and
/// never past the session's expiry. Bounded; when full, it is cleared rather than
/// growing.
#[derive(Debug)]
pub struct LocalSessionCache {
    max_age_ms: u64,
    capacity: usize,
    entries: Mutex<HashMap<String, (SessionRecord, u64)>>,
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl LocalSessionCache {
    /// A cache whose entries live at most `max_age_ms`.
    pub fn new(max_age_ms: u64, capacity: usize) -> Self {
        Self {
            max_age_ms,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Caches `record` from `now_ms`.
    pub fn put_at(&self, record: &SessionRecord, now_ms: u64) {
        let until = now_ms
            .saturating_add(self.max_age_ms)
            .min(record.expires_at_ms);
        let mut e = lock(&self.entries);
        if e.len() >= self.capacity {
            e.retain(|_, (_, u)| *u > now_ms);
            if e.len() >= self.capacity {
                e.clear();
            }
        }
        e.insert(record.id.clone(), (record.clone(), until));
    }

    /// A live entry at `now_ms`.
    pub fn get_at(&self, id: &str, now_ms: u64) -> Option<SessionRecord> {
        let mut e = lock(&self.entries);
        match e.get(id) {
            Some((r, until)) if *until > now_ms => Some(r.clone()),
            Some(_) => {
                e.remove(id);
                None
            }
            None => None,
        }
    }

    /// Drops an entry.
    pub fn remove(&self, id: &str) {
        lock(&self.entries).remove(id);
    }
}

impl SessionCache for LocalSessionCache {
    fn put(&self, record: &SessionRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.put_at(record, wall_ms());
        ready(Ok(()))
    }
    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send {
        ready(Ok(self.get_at(id, wall_ms())))
    }
    fn delete(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.remove(id);
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ports::{SessionKey, SessionKind};

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

    fn record(id: &str, created: u64, expires: u64) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            key: SessionKey::from_bytes([7; 32]),
            kind: SessionKind::Anonymous,
            client_id: "c".into(),
            created_at_ms: created,
            expires_at_ms: expires,
        }
    }

    #[test]
    fn local_cache_entries_age_out_and_never_outlive_the_session() {
        let c = LocalSessionCache::new(1000, 10);
        c.put_at(&record("S-1", 0, 100_000), 5_000);
        assert!(c.get_at("S-1", 5_999).is_some());
        assert!(c.get_at("S-1", 6_000).is_none(), "max age");
        c.put_at(&record("S-2", 0, 5_500), 5_000);
        assert!(c.get_at("S-2", 5_500).is_none(), "session expiry");
        c.put_at(&record("S-3", 0, 100_000), 0);
        c.remove("S-3");
        assert!(c.get_at("S-3", 1).is_none());
    }

    #[test]
    fn sessions_insert_get_delete_and_refuse_duplicates() {
        let s = MemorySessionStore::new(10);
        s.insert_sync(&record("S-1", 0, 100)).unwrap();
        assert_eq!(
            s.insert_sync(&record("S-1", 0, 100)),
            Err(StoreError::Duplicate)
        );
        assert_eq!(s.get_sync("S-1").unwrap().key.expose(), &[7; 32]);
        s.delete_sync("S-1");
        assert!(s.get_sync("S-1").is_none());
    }

    #[test]
    fn full_session_store_sweeps_expired_then_refuses() {
        let s = MemorySessionStore::new(2);
        s.insert_sync(&record("S-1", 0, 100)).unwrap();
        s.insert_sync(&record("S-2", 0, 10_000)).unwrap();
        s.insert_sync(&record("S-3", 5_000, 20_000)).unwrap(); // S-1 swept
        assert!(s.get_sync("S-1").is_none());
        assert_eq!(
            s.insert_sync(&record("S-4", 5_500, 20_000)),
            Err(StoreError::Full)
        );
    }
}
