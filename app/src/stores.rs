//! The store choice, made at run time: embedded memory, or PostgreSQL (+ Redis).
//! Enums give the service one concrete type whatever the configuration.

use std::sync::Arc;
use std::time::Duration;

use http_adapter::{Dependency, HealthCheck, HealthReport};
use memory::{LocalSessionCache, MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::{
    NonceClaim, NonceError, NonceStore, Quotas, RateDecision, RateLimit, SessionCache,
    SessionRecord, SessionStore, StoreError, Usage,
};
use postgres_adapter::PgSessionStore;
use redis_adapter::{Redis, RedisNonceStore, RedisQuotas, RedisSessionCache};

/// Where sessions live.
#[derive(Debug)]
pub enum Sessions {
    /// Embedded.
    Memory(MemorySessionStore),
    /// PostgreSQL.
    Postgres(PgSessionStore),
}

impl SessionStore for Sessions {
    async fn insert(&self, record: &SessionRecord) -> Result<(), StoreError> {
        match self {
            Self::Memory(s) => s.insert(record).await,
            Self::Postgres(s) => s.insert(record).await,
        }
    }
    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self {
            Self::Memory(s) => s.get(id).await,
            Self::Postgres(s) => s.get(id).await,
        }
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Self::Memory(s) => s.delete(id).await,
            Self::Postgres(s) => s.delete(id).await,
        }
    }
}

/// The cache in front of the session store.
#[derive(Debug)]
pub enum Cache {
    /// Nothing to cache in front of.
    None,
    /// Redis `sess:<id>`, behind an optional short-lived in-process cache.
    Redis(RedisSessionCache, Option<LocalSessionCache>),
}

impl SessionCache for Cache {
    async fn put(&self, record: &SessionRecord) -> Result<(), StoreError> {
        match self {
            Self::None => Ok(()),
            Self::Redis(c, local) => {
                if let Some(l) = local {
                    l.put(record).await?;
                }
                c.put(record).await
            }
        }
    }
    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self {
            Self::None => Ok(None),
            Self::Redis(c, local) => {
                if let Some(l) = local
                    && let Ok(Some(hit)) = l.get(id).await
                {
                    return Ok(Some(hit));
                }
                let found = c.get(id).await?;
                if let (Some(l), Some(r)) = (local, &found) {
                    l.put(r).await?;
                }
                Ok(found)
            }
        }
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Self::None => Ok(()),
            Self::Redis(c, local) => {
                if let Some(l) = local {
                    l.delete(id).await?;
                }
                c.delete(id).await
            }
        }
    }
}

/// Where nonces are claimed.
#[derive(Debug)]
pub enum Nonces {
    /// Embedded (per process).
    Memory(Arc<MemoryNonceStore>),
    /// Redis, with the embedded store as fail-closed fallback.
    Redis(RedisNonceStore),
}

impl NonceStore for Nonces {
    async fn claim(&self, key: &str, ttl_sec: u64, now_ms: u64) -> Result<NonceClaim, NonceError> {
        match self {
            Self::Memory(s) => s.claim_now(key, ttl_sec, now_ms),
            Self::Redis(s) => s.claim(key, ttl_sec, now_ms).await,
        }
    }
}

/// Where the abuse-limit state lives.
#[derive(Debug)]
pub enum Limits {
    /// Embedded (per process).
    Memory(Arc<MemoryQuotas>),
    /// Redis (shared), with the embedded state as fallback.
    Redis(RedisQuotas),
}

impl Quotas for Limits {
    async fn rate(
        &self,
        key: &str,
        limit: RateLimit,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        match self {
            Self::Memory(q) => q.rate_now(key, limit, now_ms),
            Self::Redis(q) => q.rate(key, limit, now_ms).await,
        }
    }
    async fn reserve_session(
        &self,
        client_id: &str,
        session_id: &str,
        expires_at_ms: u64,
        cap: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Memory(q) => {
                q.reserve_session_now(client_id, session_id, expires_at_ms, cap, now_ms)
            }
            Self::Redis(q) => {
                q.reserve_session(client_id, session_id, expires_at_ms, cap, now_ms)
                    .await
            }
        }
    }
    async fn release_session(
        &self,
        client_id: &str,
        session_id: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(q) => {
                q.release_session_now(client_id, session_id, expires_at_ms);
                Ok(())
            }
            Self::Redis(q) => {
                q.release_session(client_id, session_id, expires_at_ms)
                    .await
            }
        }
    }
    async fn touch(
        &self,
        session: &SessionRecord,
        uses: u64,
        now_ms: u64,
        idle_ms: u64,
    ) -> Result<Usage, StoreError> {
        match self {
            Self::Memory(q) => q.touch_now(session, uses, now_ms, idle_ms),
            Self::Redis(q) => q.touch(session, uses, now_ms, idle_ms).await,
        }
    }
}

/// Probes for `/health` and `/ready`.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    /// PostgreSQL, when configured.
    pub postgres: Option<PgSessionStore>,
    /// Redis, when configured.
    pub redis: Option<Redis>,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

impl StoreHealth {
    /// Sets the dependency gauges of `/metrics` from a fresh probe.
    pub async fn export_gauges(&self) {
        let report = self.report().await;
        for (name, dependency) in [("postgres", report.postgres), ("redis", report.redis)] {
            if dependency != Dependency::Disabled {
                metrics::gauge!("session_crypto_dependency_up", "dependency" => name)
                    .set(f64::from(u8::from(dependency == Dependency::Up)));
            }
        }
        let fallback = self.redis.as_ref().is_some_and(Redis::is_down);
        metrics::gauge!("session_crypto_nonce_fallback_active").set(f64::from(u8::from(fallback)));
        if let Some(pg) = &self.postgres {
            let (size, available, waiting) = pg.pool_status();
            metrics::gauge!("session_crypto_pg_pool_connections", "state" => "open")
                .set(size as f64);
            metrics::gauge!("session_crypto_pg_pool_connections", "state" => "idle")
                .set(available as f64);
            metrics::gauge!("session_crypto_pg_pool_waiting").set(waiting as f64);
        }
    }
}

impl HealthCheck for StoreHealth {
    async fn report(&self) -> HealthReport {
        let pg = async {
            match &self.postgres {
                None => Dependency::Disabled,
                Some(pg) => match tokio::time::timeout(PROBE_TIMEOUT, pg.ping()).await {
                    Ok(Ok(())) => Dependency::Up,
                    _ => Dependency::Down,
                },
            }
        };
        let redis = async {
            match &self.redis {
                None => Dependency::Disabled,
                Some(r) => match tokio::time::timeout(PROBE_TIMEOUT, r.ping()).await {
                    Ok(Ok(())) => Dependency::Up,
                    _ => Dependency::Down,
                },
            }
        };
        let (postgres, redis) = tokio::join!(pg, redis);
        HealthReport {
            session_store: if self.postgres.is_some() {
                "postgres"
            } else {
                "memory"
            },
            postgres,
            redis,
        }
    }
}
