//! [`MemorySessionStore`]: the embedded source of truth, bounded.

use std::collections::HashMap;
use std::future::{Future, ready};
use std::sync::{PoisonError, RwLock};

use ports::{SessionKey, SessionKeys, SessionKind, SessionRecord, SessionStore, StoreError};

use crate::DEFAULT_SESSION_CAPACITY;

/// A stored session, compact: the id is the map's key (its 32 hex digits as a number,
/// for the ids the service issues), so a million sessions take about 200 MB.
#[derive(Debug)]
struct Entry {
    /// The id as given, only when it is not `S-` + 32 lowercase hex digits.
    odd_id: Option<Box<str>>,
    /// The v1 key, or a v2 session's request key.
    key: SessionKey,
    /// A v2 session's response key, boxed: 8 bytes instead of 32 for every v1 session.
    response_key: Option<Box<SessionKey>>,
    kind: SessionKind,
    client_id: Box<str>,
    created_at_ms: u64,
    expires_at_ms: u64,
}

/// The map key of a session id: `S-` + 32 lowercase hex digits as a number, or — for
/// any other id (tests) — a flag bit and a hash of the text, the text kept beside.
fn slot(id: &str) -> (u128, bool) {
    if let Some(hex) = id.strip_prefix("S-")
        && hex.len() == 32
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && let Ok(n) = u128::from_str_radix(hex, 16)
    {
        return (n, true);
    }
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    // Deterministic is fine: odd ids never come from the wire (the domain refuses them).
    let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(id);
    (u128::from(h) | (1 << 127) | 1, false)
}

impl Entry {
    fn new(record: &SessionRecord, regular: bool) -> Self {
        Self {
            odd_id: (!regular).then(|| record.id.clone().into_boxed_str()),
            key: record.keys.request().clone(),
            response_key: match &record.keys {
                SessionKeys::V1(_) => None,
                SessionKeys::V2 { response, .. } => Some(Box::new(response.clone())),
            },
            kind: record.kind,
            client_id: record.client_id.clone().into_boxed_str(),
            created_at_ms: record.created_at_ms,
            expires_at_ms: record.expires_at_ms,
        }
    }

    fn record(&self, id: &str) -> Option<SessionRecord> {
        if self.odd_id.as_deref().is_some_and(|odd| odd != id) {
            return None; // a hash collision between odd ids
        }
        Some(SessionRecord {
            id: id.to_owned(),
            keys: match &self.response_key {
                None => SessionKeys::V1(self.key.clone()),
                Some(response) => SessionKeys::V2 {
                    request: self.key.clone(),
                    response: (**response).clone(),
                },
            },
            kind: self.kind,
            client_id: self.client_id.to_string(),
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            at_rest: Default::default(),
        })
    }

    fn is_expired(&self, now_ms: u64) -> bool {
        now_ms > self.expires_at_ms
    }
}

#[derive(Debug, Default)]
struct SessionState {
    /// Boxed: the table then holds 24 bytes per slot, half of them empty after it grows.
    sessions: HashMap<u128, Box<Entry>>,
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

    /// Whether it is full of sessions that are still live at `now_ms` (an insert would
    /// be refused). Counts without sweeping: cheap enough for a health probe.
    pub fn is_full(&self, now_ms: u64) -> bool {
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        s.sessions.len() >= self.capacity
            && s.sessions
                .values()
                .filter(|e| !e.is_expired(now_ms))
                .count()
                >= self.capacity
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
        let (key, regular) = slot(&record.id);
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if s.sessions.contains_key(&key) {
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
        s.sessions
            .insert(key, Box::new(Entry::new(record, regular)));
        Ok(())
    }

    /// Synchronous lookup.
    fn get_sync(&self, id: &str) -> Option<SessionRecord> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .sessions
            .get(&slot(id).0)
            .and_then(|e| e.record(id))
    }

    /// Synchronous delete.
    fn delete_sync(&self, id: &str) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .sessions
            .remove(&slot(id).0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_record as record;

    #[test]
    fn sessions_insert_get_delete_and_refuse_duplicates() {
        let s = MemorySessionStore::new(10);
        s.insert_sync(&record("S-1", 0, 100)).unwrap();
        assert_eq!(
            s.insert_sync(&record("S-1", 0, 100)),
            Err(StoreError::Duplicate)
        );
        assert_eq!(s.get_sync("S-1").unwrap().keys.request().expose(), &[7; 32]);
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
