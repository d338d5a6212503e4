//! [`LocalSessionCache`]: a short-lived in-process cache level.

use std::collections::HashMap;
use std::future::{Future, ready};
use std::sync::Mutex;

use ports::{SessionCache, SessionRecord, StoreError};

use crate::lock;

/// A small in-process cache in front of a shared cache: entries live at most
/// `max_age` (so a change made through another instance is seen within that time) and
/// never past the session's expiry. Bounded; when full, it is cleared rather than
/// growing.
#[derive(Debug)]
pub struct LocalSessionCache {
    max_age_ms: u64,
    capacity: usize,
    /// id → (the record, or `None` for a revoked session; until when, epoch ms).
    entries: Mutex<HashMap<String, (Option<SessionRecord>, u64)>>,
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

    /// Caches `record` from `now_ms`, unless it was revoked: then `false`.
    pub fn put_at(&self, record: &SessionRecord, now_ms: u64) -> bool {
        let until = now_ms
            .saturating_add(self.max_age_ms)
            .min(record.expires_at_ms);
        self.insert(&record.id, Some(record.clone()), until, now_ms)
    }

    /// Keeps a revoked session out until its expiry.
    pub fn revoke_at(&self, record: &SessionRecord, now_ms: u64) {
        self.insert(&record.id, None, record.expires_at_ms, now_ms);
    }

    fn insert(&self, id: &str, record: Option<SessionRecord>, until: u64, now_ms: u64) -> bool {
        let mut e = lock(&self.entries);
        if record.is_some() && matches!(e.get(id), Some((None, u)) if *u >= now_ms) {
            return false;
        }
        if e.len() >= self.capacity {
            e.retain(|_, (_, u)| *u > now_ms);
            if e.len() >= self.capacity {
                // Bounded: when full of live entries it starts over (a level in front
                // of a shared cache that keeps its own revocations: see `Tiered`).
                e.clear();
            }
        }
        e.insert(id.to_owned(), (record, until));
        true
    }

    /// A live entry at `now_ms`.
    pub fn get_at(&self, id: &str, now_ms: u64) -> Option<SessionRecord> {
        let mut e = lock(&self.entries);
        match e.get(id) {
            Some((Some(r), until)) if *until > now_ms => Some(r.clone()),
            Some((None, until)) if *until >= now_ms => None,
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
        ready(if self.put_at(record, wall_ms()) {
            Ok(())
        } else {
            Err(StoreError::Revoked)
        })
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
    fn revoke(
        &self,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.revoke_at(record, wall_ms());
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_record as record;

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
    fn a_revoked_session_is_not_cached_again_until_its_expiry() {
        let c = LocalSessionCache::new(1000, 10);
        let r = record("S-1", 0, 50_000);
        assert!(c.put_at(&r, 0));
        c.revoke_at(&r, 10);
        assert!(c.get_at("S-1", 11).is_none());
        assert!(
            !c.put_at(&r, 20),
            "a refill after the revocation is refused"
        );
        assert!(c.get_at("S-1", 21).is_none());
        assert!(
            c.put_at(&r, 50_001),
            "the tombstone lapses with the session"
        );
    }
}
