//! # redis-adapter — Redis as session cache and nonce store
//!
//! * [`RedisSessionCache`]: `sess:<id>` → JSON with the *wrapped* key, TTL = remaining
//!   lifetime. Best effort: failures are misses. A revocation leaves `revoked:<id>`
//!   until the session's expiry, and a refill is refused while it exists.
//! * [`RedisNonceStore`]: `SET nonce:<clientId>:<nonce> 1 NX EX <ttl>`. While Redis is
//!   unreachable a claim fails with [`NonceError::Unavailable`]; the fallback to the
//!   in-memory store is a policy of the composition root (`app`), not of this adapter.
//!
//! One lazily connected `ConnectionManager` (reconnects on its own; the service starts
//! while Redis is down) behind a small circuit breaker, so an outage costs one timeout
//! per second rather than one per request.
//!
//! May depend on: `ports`, `domain`, redis-rs. Not on other adapters.

mod quotas;
mod session_counts;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use domain::encoding::{base64_decode, base64_encode};
use domain::keywrap::KeyWrapper;
use ports::{
    NonceClaim, NonceError, NonceStore, SessionCache, SessionKind, SessionRecord, StoreError,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use quotas::RedisQuotas;

/// A Redis failure. Stores report it as [`StoreError::Unavailable`] /
/// [`NonceError::Unavailable`]; the admin commands show it to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// `REDIS_URL` is not a Redis URL.
    #[error("REDIS_URL: {0}")]
    Url(String),
    /// A recent failure opened the circuit breaker; Redis is not tried until it closes.
    #[error("redis bypassed after a recent failure")]
    Bypassed,
    /// A command failed or timed out.
    #[error("redis {what}: {reason}")]
    Command {
        /// The command.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Redis answered something this adapter does not understand.
    #[error("unexpected script answer {0:?}")]
    Answer(String),
    /// The per-instance table of session counts is full.
    #[error("session count table full")]
    CountTableFull,
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<RedisError> for NonceError {
    fn from(e: RedisError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Bound on every command (and on connecting).
    pub command_timeout: Duration,
    /// After a failure, how long to go straight to the fallback before trying again.
    pub retry_interval: Duration,
}

/// The shared connection with its circuit breaker. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    timeout: Duration,
    retry_interval: Duration,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not tried.
    down_until: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("down", &self.down.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Prepares the connection without connecting (the first command connects).
    ///
    /// # Errors
    /// [`RedisError::Url`] when the URL is not a Redis URL.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisError> {
        let client =
            Client::open(config.url.as_str()).map_err(|e| RedisError::Url(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| RedisError::Url(e.to_string()))?;
        Ok(Self {
            conn,
            timeout: config.command_timeout,
            retry_interval: config.retry_interval,
            started: Instant::now(),
            down_until: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicBool::new(false)),
        })
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether the last command failed (and Redis is being bypassed).
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Runs one command through the breaker.
    async fn run<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.elapsed_ms() < self.down_until.load(Ordering::Relaxed) {
            return Err(RedisError::Bypassed);
        }
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(v)) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    info!("redis is reachable again");
                }
                Ok(v)
            }
            Ok(Err(e)) => Err(self.failed(what, &e)),
            Err(_) => Err(self.failed(what, &"timed out")),
        }
    }

    fn failed(&self, what: &'static str, e: &dyn std::fmt::Display) -> RedisError {
        self.down_until.store(
            self.elapsed_ms() + self.retry_interval.as_millis() as u64,
            Ordering::Relaxed,
        );
        if !self.down.swap(true, Ordering::Relaxed) {
            warn!(command = what, error = %e, "redis unreachable; using the in-memory fallback for nonces and limits");
        }
        RedisError::Command {
            what,
            reason: e.to_string(),
        }
    }

    /// `PING`, bypassing the breaker (health probes must see recovery).
    ///
    /// # Errors
    /// [`RedisError`].
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(Ok(_)) => {
                self.down_until.store(0, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(RedisError::Command {
                what: "PING",
                reason: e.to_string(),
            }),
            Err(_) => Err(RedisError::Command {
                what: "PING",
                reason: "timed out".into(),
            }),
        }
    }
}

impl Redis {
    /// The server's `maxmemory-policy`: from `CONFIG GET`, or from `INFO memory` where
    /// `CONFIG` is disabled (as on managed services).
    ///
    /// # Errors
    /// [`RedisError`] when neither answers.
    pub async fn eviction_policy(&self) -> Result<String, RedisError> {
        let config = self
            .run("CONFIG GET maxmemory-policy", |mut c| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query_async::<Vec<String>>(&mut c)
                    .await
            })
            .await;
        if let Ok(pair) = config
            && let [_, value] = pair.as_slice()
        {
            return Ok(value.clone());
        }
        let info = self
            .run("INFO memory", |mut c| async move {
                redis::cmd("INFO")
                    .arg("memory")
                    .query_async::<String>(&mut c)
                    .await
            })
            .await?;
        policy_from_info(&info).ok_or_else(|| RedisError::Answer(info.chars().take(80).collect()))
    }
}

/// `maxmemory_policy:<name>` from the text of `INFO memory`.
fn policy_from_info(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(|v| v.trim().to_owned())
}

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
}

/// `sess:<id>` cache entries holding wrapped keys.
#[derive(Debug, Clone)]
pub struct RedisSessionCache {
    redis: Redis,
    wrapper: Arc<KeyWrapper>,
}

fn sess_key(id: &str) -> String {
    format!("sess:{id}")
}

/// The tombstone of a revoked session, kept until the session's expiry.
fn revoked_key(id: &str) -> String {
    format!("revoked:{id}")
}

/// `SET sess:<id>` unless `revoked:<id>` exists: a lookup that read PostgreSQL before a
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

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

impl SessionCache for RedisSessionCache {
    async fn put(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let remaining_ms = record.expires_at_ms.saturating_sub(now_ms());
        if remaining_ms == 0 {
            return Ok(());
        }
        let wrapped = self
            .wrapper
            .wrap(&record.id, &record.key)
            .map_err(|_| StoreError::Unavailable("key wrapping failed".into()))?;
        let value = serde_json::to_string(&CachedSession {
            wrapped_key: base64_encode(&wrapped.bytes),
            kek_id: wrapped.kek_id,
            kind: record.kind.as_str().into(),
            client_id: record.client_id.clone(),
            created_at: record.created_at_ms,
            expires_at: record.expires_at_ms,
        })
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let (key, tomb) = (sess_key(&record.id), revoked_key(&record.id));
        let ttl = remaining_ms.div_ceil(1000);
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
        let Ok(key) = self.wrapper.unwrap(id, &cached.kek_id, &wrapped) else {
            // Moved or tampered entry: fall through to the database.
            warn!(session = %id.get(..10).unwrap_or("?"), "cached session key does not unwrap; ignoring the cache entry");
            return Ok(None);
        };
        Ok(Some(SessionRecord {
            id: id.to_owned(),
            key,
            kind: if cached.kind == SessionKind::Authenticated.as_str() {
                SessionKind::Authenticated
            } else {
                SessionKind::Anonymous
            },
            client_id: cached.client_id,
            created_at_ms: cached.created_at,
            expires_at_ms: cached.expires_at,
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

/// Nonces in Redis. Fails with [`NonceError::Unavailable`] while Redis cannot be reached.
#[derive(Debug, Clone)]
pub struct RedisNonceStore {
    redis: Redis,
}

impl RedisNonceStore {
    /// Nonces on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

impl NonceStore for RedisNonceStore {
    async fn claim(&self, key: &str, ttl_sec: u64, _now_ms: u64) -> Result<NonceClaim, NonceError> {
        let k = key.to_owned();
        let set = self
            .redis
            .run("SET nonce NX", |mut c| async move {
                redis::cmd("SET")
                    .arg(k)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl_sec)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await;
        match set {
            Ok(Some(_)) => Ok(NonceClaim::Fresh),
            Ok(None) => Ok(NonceClaim::Replay),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eviction_policy_is_read_from_info_memory() {
        let info = "# Memory\r\nused_memory:1000\r\nmaxmemory_policy:allkeys-lru\r\nfoo:1\r\n";
        assert_eq!(policy_from_info(info).as_deref(), Some("allkeys-lru"));
        assert_eq!(policy_from_info("# Memory\r\n"), None);
    }
}
