//! What `/health`, `/ready` and the dependency gauges report about the stores.

use std::sync::Arc;
use std::time::Duration;

use memory::{MemoryNonceStore, MemorySessionStore};
use ports::{Clock, SystemClock};

use http_adapter::{Dependency, HealthCheck, HealthReport, metrics};
use postgres_adapter::PgSessionStore;
use redis_adapter::Redis;

/// Probes for `/health` and `/ready`.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    /// PostgreSQL, when configured.
    pub postgres: Option<PgSessionStore>,
    /// Redis, when configured.
    pub redis: Option<Redis>,
    /// The embedded nonce store: the one in use without Redis, the fallback with it.
    pub nonces: Arc<MemoryNonceStore>,
    /// The embedded session store, when sessions live in memory.
    pub sessions: Option<Arc<MemorySessionStore>>,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

impl StoreHealth {
    /// Sets the dependency gauges of `/metrics` from a fresh probe.
    pub async fn export_gauges(&self) {
        let report = self.report().await;
        for (name, dependency) in [("postgres", report.postgres), ("redis", report.redis)] {
            if dependency != Dependency::Disabled {
                metrics::dependency_up(name, dependency == Dependency::Up);
            }
        }
        metrics::nonce_fallback_active(self.redis.as_ref().is_some_and(Redis::is_down));
        if let Some(pg) = &self.postgres {
            let (size, available, waiting) = pg.pool_status();
            metrics::pg_pool(size, available, waiting);
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
        // The embedded store decides claims without Redis, or while Redis is down.
        let embedded_in_use = self.redis.as_ref().is_none_or(Redis::is_down);
        let now = SystemClock.now_ms();
        let nonces_full = embedded_in_use && self.nonces.is_full(now);
        let sessions_full = self.sessions.as_ref().is_some_and(|s| s.is_full(now));
        HealthReport {
            session_store: if self.postgres.is_some() {
                "postgres"
            } else {
                "memory"
            },
            postgres,
            redis,
            nonces_full,
            sessions_full,
        }
    }
}
