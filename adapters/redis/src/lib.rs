//! # redis-adapter — Redis as session cache and nonce store
//!
//! * [`RedisSessionCache`]: `sess:{<id>}` → JSON with the *wrapped* key, TTL = remaining
//!   lifetime. Best effort: failures are misses. A revocation leaves `revoked:{<id>}`
//!   until the session's expiry, and a refill is refused while it exists.
//! * [`RedisNonceStore`]: `SET nonce:{<bucket>}:<clientId>:<nonce> 1 NX EX <ttl>`, then a
//!   read of the bucket's continuity marker, in one pipeline (a transaction on a
//!   cluster; the argument is in `nonces.rs`). While Redis is
//!   unreachable, or when it has lost a bucket's data, a claim fails with
//!   [`NonceError::Unavailable`]; what happens then (the fence, the shared fallback) is a
//!   policy of the composition root (`app`), not of this adapter.
//! * Losses of data are counted ([`Redis::losses`]): a marker gone or changed (restart
//!   without persistence, `FLUSHALL`, eviction) seen by a claim, or a primary whose
//!   `run_id` changed (restart, failover to a replica) seen by [`Redis::spawn_watch`].
//!   So are the connections that may have been made anew to another server, whatever
//!   command met the failure ([`Redis::interruptions`]): a new one may reach a primary
//!   that lacks the last writes but holds every marker, before the watch looks again.
//!
//! Standalone, Cluster or Sentinel ([`Topology`]), lazily connected (the service starts
//! while Redis is down) behind a small circuit breaker, so an outage costs one timeout
//! per second rather than one per request. The key layout is in [`keys`].
//!
//! May depend on: `ports`, `domain`, redis-rs. Not on other adapters.

mod cache;
mod conn;
pub mod keys;
mod nonces;
mod quotas;
mod session_counts;
mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ports::{NonceError, StoreError};
use tracing::{info, warn};

pub use cache::RedisSessionCache;
use conn::Conn;
pub use conn::Topology;
pub use nonces::{RedisNonceStore, Rider};
pub use quotas::RedisQuotas;

/// A Redis failure. Stores report it as [`StoreError::Unavailable`] /
/// [`NonceError::Unavailable`]; the admin commands show it to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// A Redis URL setting is not valid (the message names the setting).
    #[error("{0}")]
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
    /// Where Redis is.
    pub topology: Topology,
    /// PEM of the certificate authority of the servers' TLS certificates
    /// (`REDIS_CA_FILE`), when the system's trust store does not hold it.
    pub ca_pem: Option<Vec<u8>>,
    /// Bound on every command (and on connecting).
    pub command_timeout: Duration,
    /// After a failure, how long to go straight to the fallback before trying again.
    pub retry_interval: Duration,
}

/// Whether `e` is the server's answer to the command itself (refused, unknown or
/// failed: `ERR`, `NOPERM`, `NOSCRIPT`, …), which says nothing about the connection or
/// about which server answered. Not a reason to bypass Redis, nor an interruption
/// ([`Redis::interruptions`]): a managed Redis that disables `CONFIG` answers so to the
/// eviction policy's check every minute. Errors about the topology (`READONLY`,
/// `MASTERDOWN`, `CLUSTERDOWN`, `TRYAGAIN`, `LOADING`, redirections) are not answers.
pub(crate) fn answered(e: &redis::RedisError) -> bool {
    use redis::ServerErrorKind as K;
    matches!(
        e.kind(),
        redis::ErrorKind::Server(
            K::ResponseError
                | K::NoScript
                | K::NoPerm
                | K::CrossSlot
                | K::ExecAbort
                | K::NotBusy
                | K::NoSub
        )
    )
}

/// Commands timed out in a row after which the connection is made anew.
const RECONNECT_AFTER_TIMEOUTS: u64 = 3;

/// The shared connection with its circuit breaker. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    conn: Conn,
    timeout: Duration,
    retry_interval: Duration,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not tried.
    down_until: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
    /// Losses of data seen so far.
    losses: Arc<AtomicU64>,
    /// Failed commands so far (any command, the health probe's too).
    interruptions: Arc<AtomicU64>,
    /// The continuity marker of each nonce bucket, as last seen.
    markers: Arc<nonces::Markers>,
    /// Commands timed out in a row (any success resets it).
    timeouts: Arc<AtomicU64>,
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
    /// [`RedisError::Url`] when a URL is not a Redis URL.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisError> {
        let interruptions = Arc::new(AtomicU64::new(0));
        Ok(Self {
            conn: Conn::new(
                &config.topology,
                config.command_timeout,
                config.ca_pem.as_deref(),
                &interruptions,
            )?,
            timeout: config.command_timeout,
            retry_interval: config.retry_interval,
            started: Instant::now(),
            down_until: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicBool::new(false)),
            losses: Arc::new(AtomicU64::new(0)),
            interruptions,
            markers: Arc::new(nonces::Markers::default()),
            timeouts: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many losses of Redis data this instance has seen (a restart without the
    /// data, a flush, an eviction of a marker, a failover to another primary).
    pub fn losses(&self) -> u64 {
        self.losses.load(Ordering::SeqCst)
    }

    /// How many times so far the connection may have been made anew to another server:
    /// a failure after which redis-rs reconnects on its own (a connection dropped or
    /// refused, on a standalone server or a cluster), a reconnection after timeouts in
    /// a row, or a Sentinel connection made anew to a primary whose `run_id` is not the
    /// one before (or cannot be read) — whichever part of the service met it (a cache
    /// read, a health probe, the identity watch). The nonce fence takes every one in
    /// before it trusts a claim again, not only those a claim met. A plain timeout is
    /// not one: the connection stays.
    pub fn interruptions(&self) -> u64 {
        self.interruptions.load(Ordering::SeqCst)
    }

    fn lost(&self, what: &str) {
        self.losses.fetch_add(1, Ordering::SeqCst);
        warn!(
            what,
            "redis lost data: nonces claimed there before may be gone"
        );
    }

    /// Whether this is a Redis Cluster (pipelines must then stay in one slot).
    pub(crate) fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
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
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.elapsed_ms() < self.down_until.load(Ordering::Relaxed) {
            return Err(RedisError::Bypassed);
        }
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(Ok(v)) => {
                self.timeouts.store(0, Ordering::Relaxed);
                if self.down.swap(false, Ordering::Relaxed) {
                    info!("redis is reachable again");
                }
                Ok(v)
            }
            // The server is there and answered: no reason to bypass it.
            Ok(Err(e)) if answered(&e) => Err(RedisError::Command {
                what,
                reason: e.to_string(),
            }),
            Ok(Err(e)) => {
                self.may_have_reconnected(&e);
                Err(self.failed(what, &e))
            }
            Err(_) => {
                // A connection that times out again and again may be wedged (a cluster
                // client stuck on a topology it no longer has): made anew.
                if self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= RECONNECT_AFTER_TIMEOUTS {
                    self.timeouts.store(0, Ordering::Relaxed);
                    self.conn.reconnect();
                    self.interruptions.fetch_add(1, Ordering::SeqCst);
                    warn!(
                        command = what,
                        "redis: timed out {RECONNECT_AFTER_TIMEOUTS} times in a row; connecting again"
                    );
                }
                Err(self.failed(what, &"timed out"))
            }
        }
    }

    /// Counts an interruption when redis-rs may make the connection anew after `e`.
    fn may_have_reconnected(&self, e: &redis::RedisError) {
        if self.conn.may_reconnect_after(e) {
            self.interruptions.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn failed(&self, what: &'static str, e: &dyn std::fmt::Display) -> RedisError {
        self.down_until.store(
            self.elapsed_ms() + self.retry_interval.as_millis() as u64,
            Ordering::Relaxed,
        );
        if !self.down.swap(true, Ordering::Relaxed) {
            warn!(command = what, error = %e, "redis unreachable; nonces and limits go to their fallbacks");
        }
        RedisError::Command {
            what,
            reason: e.to_string(),
        }
    }

    /// `PING`, bypassing the breaker (health probes must see recovery). A failure after
    /// which the connection may be made anew counts as an interruption
    /// ([`Self::interruptions`]).
    ///
    /// # Errors
    /// [`RedisError`].
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        let reason = match tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(Ok(_)) => {
                self.down_until.store(0, Ordering::Relaxed);
                return Ok(());
            }
            Ok(Err(e)) if answered(&e) => {
                return Err(RedisError::Command {
                    what: "PING",
                    reason: e.to_string(),
                });
            }
            Ok(Err(e)) => {
                self.may_have_reconnected(&e);
                e.to_string()
            }
            Err(_) => "timed out".into(),
        };
        Err(RedisError::Command {
            what: "PING",
            reason,
        })
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

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
