//! [`RedisSessionCache`]: `sess:{<id>}` entries holding wrapped keys, and the
//! `revoked:{<id>}` tombstones that keep a revoked session out.

use std::sync::Arc;

use domain::encoding::{base64_decode, base64_encode};
use domain::keywrap::KeyWrapper;
use ports::{Protocol, SessionCache, SessionKind, SessionRecord, StoreError};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::{Redis, RedisError, Rider, now_ms};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CachedSession {
    wrapped_key: String,
    kek_id: String,
    #[serde(rename = "type")]
    kind: String,
    client_id: String,
    created_at: u64,
    expires_at: u64,
    /// The protocol version; entries written before versions existed are v1.
    #[serde(default = "v1")]
    protocol: u8,
}

fn v1() -> u8 {
    1
}

/// `sess:{<id>}` cache entries holding wrapped keys.
#[derive(Debug, Clone)]
pub struct RedisSessionCache {
    redis: Redis,
    wrapper: Arc<KeyWrapper>,
}

use crate::keys::{session as sess_key, tombstone as revoked_key};

/// `SET sess:{<id>}` unless `revoked:{<id>}` exists: a lookup that read PostgreSQL before a
/// revocation committed cannot bring the session back into the cache.
static PUT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
",
    )
});

/// Revokes atomically: the tombstone until the session's expiry, and the entry gone.
static REVOKE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('SET', KEYS[2], '1', 'PXAT', ARGV[1])
redis.call('DEL', KEYS[1])
return 1
",
    )
});

impl RedisSessionCache {
    /// A cache on `redis`.
    pub fn new(redis: Redis, wrapper: Arc<KeyWrapper>) -> Self {
        Self { redis, wrapper }
    }
}

impl RedisSessionCache {
    /// Removes the cache entries of these sessions (one `DEL`).
    ///
    /// # Errors
    /// [`RedisError`].
    pub async fn delete_many(&self, ids: &[String]) -> Result<(), RedisError> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = ids.iter().map(|id| sess_key(id)).collect();
        self.redis
            .run(
                "DEL sess",
                |mut c| async move { c.del::<_, ()>(keys).await },
            )
            .await
    }
}

impl RedisSessionCache {
    /// The entry's JSON and TTL (s), or `None` for a record already expired.
    fn entry(&self, record: &SessionRecord) -> Result<Option<(String, u64)>, StoreError> {
        let remaining_ms = record.expires_at_ms.saturating_sub(now_ms());
        if remaining_ms == 0 {
            return Ok(None);
        }
        let wrapped = self
            .wrapper
            .wrap_record(record)
            .map_err(|_| StoreError::Unavailable("key wrapping failed".into()))?;
        let value = serde_json::to_string(&CachedSession {
            wrapped_key: base64_encode(&wrapped.bytes),
            kek_id: wrapped.kek_id,
            kind: record.kind.as_str().into(),
            client_id: record.client_id.clone(),
            created_at: record.created_at_ms,
            expires_at: record.expires_at_ms,
            protocol: record.keys.protocol().number(),
        })
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Some((value, remaining_ms.div_ceil(1000))))
    }
}

impl RedisSessionCache {
    /// What [`SessionCache::put_new`] writes, as a [`Rider`] that can travel with a
    /// nonce claim ([`crate::RedisNonceStore::claim_with`]); `None` for a record
    /// already expired.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the keys cannot be wrapped.
    pub fn new_entry(&self, record: &SessionRecord) -> Result<Option<Rider>, StoreError> {
        Ok(self.entry(record)?.map(|(value, ttl_sec)| Rider {
            key: sess_key(&record.id),
            value,
            ttl_sec,
        }))
    }
}

impl SessionCache for RedisSessionCache {
    async fn put(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let Some((value, ttl)) = self.entry(record)? else {
            return Ok(());
        };
        let (key, tomb) = (sess_key(&record.id), revoked_key(&record.id));
        let stored = self
            .redis
            .run("EVALSHA put sess", |mut c| async move {
                let mut call = PUT.key(key);
                call.key(tomb).arg(value).arg(ttl);
                call.invoke_async::<i64>(&mut c).await
            })
            .await
            .map_err(StoreError::from)?;
        if stored == 1 {
            Ok(())
        } else {
            Err(StoreError::Revoked)
        }
    }

    /// `SET sess:{<id>} … EX ttl`: a session no store holds yet has no tombstone to look
    /// for, so a plain command (about a fifth of the Redis CPU of the `put` script).
    async fn put_new(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let Some(entry) = self.new_entry(record)? else {
            return Ok(());
        };
        self.redis
            .run("SET sess", |mut c| async move {
                c.set_ex::<_, _, ()>(entry.key, entry.value, entry.ttl_sec)
                    .await
            })
            .await
            .map_err(StoreError::from)
    }

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let key = sess_key(id);
        let raw: Option<String> = self
            .redis
            .run("GET sess", |mut c| async move { c.get(key).await })
            .await
            .map_err(StoreError::from)?;
        let Some(raw) = raw else { return Ok(None) };
        let Ok(cached) = serde_json::from_str::<CachedSession>(&raw) else {
            warn!("unreadable session cache entry ignored");
            return Ok(None);
        };
        let Some(wrapped) = base64_decode(&cached.wrapped_key) else {
            return Ok(None);
        };
        let Some(protocol) = Protocol::from_number(cached.protocol.into()) else {
            warn!("session cache entry of an unknown protocol version ignored");
            return Ok(None);
        };
        let Ok(keys) = self.wrapper.unwrap(id, &cached.kek_id, protocol, &wrapped) else {
            // Moved or tampered entry: fall through to the database.
            warn!(session = %id.get(..10).unwrap_or("?"), "cached session key does not unwrap; ignoring the cache entry");
            return Ok(None);
        };
        Ok(Some(SessionRecord {
            id: id.to_owned(),
            keys,
            kind: if cached.kind == SessionKind::Authenticated.as_str() {
                SessionKind::Authenticated
            } else {
                SessionKind::Anonymous
            },
            client_id: cached.client_id,
            created_at_ms: cached.created_at,
            expires_at_ms: cached.expires_at,
            at_rest: Default::default(),
        }))
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let key = sess_key(id);
        self.redis
            .run("DEL sess", |mut c| async move { c.del::<_, ()>(key).await })
            .await
            .map_err(StoreError::from)
    }

    async fn revoke(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let (key, tomb) = (sess_key(&record.id), revoked_key(&record.id));
        // At least a second from now, so a tombstone is never born expired.
        let until = record.expires_at_ms.max(now_ms() + 1000) + 1;
        self.redis
            .run("EVALSHA revoke sess", |mut c| async move {
                let mut call = REVOKE.key(key);
                call.key(tomb).arg(until);
                call.invoke_async::<i64>(&mut c).await
            })
            .await
            .map(|_| ())
            .map_err(StoreError::from)
    }
}
