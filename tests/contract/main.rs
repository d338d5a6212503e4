//! The store contract: one set of checks for each port — `SessionStore`,
//! `SessionCache`, `NonceStore`, `Quotas` — run against every adapter that implements
//! it: the embedded memory stores, a real PostgreSQL and a real Redis (throwaway
//! servers from tests/support/services.rs), and the store policies over Redis (the
//! nonce fence, the quota failover).

#[path = "../support/mod.rs"]
mod support;

mod checks;

use std::sync::Arc;
use std::time::Duration;

use domain::keywrap::KeyWrapper;
use memory::{LocalSessionCache, MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::{Claim, NonceError, NonceStore};
use postgres_adapter::{PgConfig, PgNonceStore, PgSessionStore};
use redis_adapter::{
    Redis, RedisConfig, RedisNonceStore, RedisQuotas, RedisSessionCache, Topology,
};
use session_crypto::stores::combinators::Failover;
use session_crypto::stores::fence::{Board, FenceConfig, Fenced, Ledger, NoLedger};
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

/// Nonces on `server`, with the bucket markers read (as the server does at start-up).
async fn redis_nonces(server: &RedisServer) -> RedisNonceStore {
    let store = RedisNonceStore::new(redis(server));
    assert_eq!(
        store.load_markers().await.unwrap(),
        redis_adapter::keys::BUCKETS
    );
    store
}

fn redis(server: &RedisServer) -> Redis {
    Redis::new(&RedisConfig {
        topology: Topology::Standalone(server.url()),
        ca_pem: None,
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

    #[tokio::test(flavor = "multi_thread")]
    async fn nonce_store() {
        let pg = PgServer::start();
        checks::nonce_store(Arc::new(PgNonceStore::new(&postgres(&pg).await))).await;
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
        checks::nonce_store(Arc::new(redis_nonces(&server).await)).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn quotas() {
        let server = RedisServer::start();
        checks::quotas(Arc::new(RedisQuotas::new(redis(&server)))).await;
    }

    /// Reservations a flush has taken out but Redis has not confirmed yet still count:
    /// here Redis hangs during the flush, so the window is wide open.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_session_cap_counts_reservations_whose_flush_is_in_flight() {
        use ports::Quotas;
        let server = RedisServer::start();
        let q = RedisQuotas::new(redis(&server));
        let (client, t) = ("CAP-IN-FLIGHT", session_crypto::stores::fence::now_ms());
        let reservation = |session_id| ports::Reservation {
            client_id: client,
            session_id,
            expires_at_ms: t + 600_000,
            cap: 2,
            now_ms: t,
        };
        for s in ["S-1", "S-2"] {
            assert_eq!(q.reserve_session(reservation(s)).await, Ok(true));
        }
        server.pause(true);
        tokio::time::sleep(Duration::from_millis(300)).await; // a flush is waiting
        let third = q.reserve_session(reservation("S-3")).await;
        server.pause(false);
        assert_eq!(third, Ok(false), "a third session over a cap of 2");
    }
}

/// A fence whose refusal after trouble is short enough for a test (≤ 1.2 s).
const FAST: FenceConfig = FenceConfig {
    window_ms: 300_000,
    margin_ms: 200,
    lease_ms: 1_000,
};

/// Kills Redis, lets one claim begin the fence episode (refused: stamped before the
/// fence), and waits until requests stamped now pass it.
async fn begin_outage<N: NonceStore>(server: &mut RedisServer, store: &N) {
    server.kill();
    let t = session_crypto::stores::fence::now_ms();
    let first = store
        .claim(Claim {
            key: "nonce:CONTRACT:outage",
            ttl_sec: 600,
            now_ms: t,
            stamped_ms: t,
        })
        .await;
    assert!(matches!(first, Err(NonceError::Fenced { .. })), "{first:?}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
}

/// The store policies as the server runs them. Each must keep the contract with Redis
/// up and with it down.
mod policies {
    use super::*;

    async fn fenced_contract<S: NonceStore + 'static, L: Ledger>(shared: S, ledger: Option<L>) {
        let mut server = RedisServer::start();
        let board = Arc::new(Board::new(FAST, ledger));
        board
            .refresh(session_crypto::stores::fence::now_ms())
            .await
            .unwrap();
        board.spawn_refresh();
        let store = Arc::new(Fenced::new(redis_nonces(&server).await, shared, board));
        checks::nonce_store(Arc::clone(&store)).await;
        assert_ne!(
            server.cli(&["DBSIZE"]).trim(),
            "0",
            "Redis decided while it was up"
        );
        begin_outage(&mut server, &*store).await;
        checks::nonce_store(store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn single_instance_nonce_fence_with_redis_up_and_down() {
        fenced_contract(MemoryNonceStore::new(100), None::<NoLedger>).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn shared_nonce_fence_with_redis_up_and_down() {
        let pg = PgServer::start();
        let nonces = PgNonceStore::new(&postgres(&pg).await);
        fenced_contract(nonces.clone(), Some(nonces)).await;
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
