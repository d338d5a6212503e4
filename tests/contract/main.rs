//! The store contract: one set of checks for each port — `SessionStore`,
//! `SessionCache`, `NonceStore`, `Quotas` — run against every adapter that implements
//! it: the embedded memory stores, a real PostgreSQL and a real Redis (throwaway
//! servers from tests/support/services.rs), and the failover policy over Redis.

#[path = "../support/mod.rs"]
mod support;

mod checks;

use std::sync::Arc;
use std::time::Duration;

use domain::keywrap::KeyWrapper;
use memory::{LocalSessionCache, MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use postgres_adapter::{PgConfig, PgSessionStore};
use redis_adapter::{Redis, RedisConfig, RedisNonceStore, RedisQuotas, RedisSessionCache};
use session_crypto::stores::policy::Failover;
use support::services::{PgServer, RedisServer};

fn wrapper() -> Arc<KeyWrapper> {
    Arc::new(KeyWrapper::new(support::default_backend(), [9; 32], vec![]).unwrap())
}

async fn postgres(pg: &PgServer) -> PgSessionStore {
    let config = PgConfig {
        url: pg.url(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(5),
        max_insert_batch: 64,
        insert_writers: 1,
    };
    let pool = postgres_adapter::pool(&config).unwrap();
    postgres_adapter::run_migrations(&pool).await.unwrap();
    PgSessionStore::new(pool, wrapper(), &config)
}

fn redis(server: &RedisServer) -> Redis {
    Redis::new(&RedisConfig {
        url: server.url(),
        command_timeout: Duration::from_secs(2),
        retry_interval: Duration::from_millis(100),
    })
    .unwrap()
}

mod memory_adapter {
    use super::*;

    #[tokio::test]
    async fn session_store() {
        checks::session_store(Arc::new(MemorySessionStore::new(100))).await;
    }

    #[tokio::test]
    async fn session_cache() {
        checks::session_cache(Arc::new(LocalSessionCache::new(60_000, 100))).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn nonce_store() {
        checks::nonce_store(Arc::new(MemoryNonceStore::new(100))).await;
    }

    #[tokio::test]
    async fn quotas() {
        checks::quotas(Arc::new(MemoryQuotas::default())).await;
    }
}

mod postgres_adapter_contract {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn session_store() {
        let pg = PgServer::start();
        checks::session_store(Arc::new(postgres(&pg).await)).await;
    }
}

mod redis_adapter_contract {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn session_cache() {
        let server = RedisServer::start();
        checks::session_cache(Arc::new(RedisSessionCache::new(redis(&server), wrapper()))).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn nonce_store() {
        let server = RedisServer::start();
        checks::nonce_store(Arc::new(RedisNonceStore::new(redis(&server)))).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn quotas() {
        let server = RedisServer::start();
        checks::quotas(Arc::new(RedisQuotas::new(redis(&server)))).await;
    }
}

/// The failover policy as the server runs it: Redis first, the bounded memory store
/// while Redis cannot decide. It must keep the contract with Redis up and with it down.
mod failover_policy {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn nonce_store_with_redis_up_and_down() {
        let mut server = RedisServer::start();
        let store = Arc::new(Failover {
            primary: RedisNonceStore::new(redis(&server)),
            fallback: MemoryNonceStore::new(100),
        });
        checks::nonce_store(Arc::clone(&store)).await;
        assert_ne!(
            server.cli(&["DBSIZE"]).trim(),
            "0",
            "Redis decided while it was up"
        );
        server.kill();
        checks::nonce_store(store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn quotas_with_redis_up_and_down() {
        let mut server = RedisServer::start();
        let quotas = Arc::new(Failover {
            primary: RedisQuotas::new(redis(&server)),
            fallback: MemoryQuotas::default(),
        });
        checks::quotas(Arc::clone(&quotas)).await;
        assert_ne!(
            server.cli(&["DBSIZE"]).trim(),
            "0",
            "Redis decided while it was up"
        );
        server.kill();
        checks::quotas(quotas).await;
    }
}
