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
    use ports::{SessionKey, SessionKind};

    use super::*;

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
}
