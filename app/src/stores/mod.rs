//! The stores, chosen at start-up: embedded memory, or PostgreSQL and/or Redis, put
//! together by the policy combinators of [`policy`] into one concrete [`AppPorts`].

mod app_ports;
pub mod combinators;
mod eviction;
pub mod fence;
mod store_health;

use std::sync::Arc;
use std::time::Duration;

use domain::keywrap::KeyWrapper;
use memory::{LocalSessionCache, MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::{Stores, SystemClock};
use postgres_adapter::{PgConfig, PgNonceStore, PgSessionStore};
use redis_adapter::{Redis, RedisNonceStore, RedisQuotas, RedisSessionCache};
use tracing::{info, warn};

pub use app_ports::AppPorts;
use combinators::{Either, Failover, Tiered};
use fence::{Board, FenceConfig, Fenced};
pub use store_health::StoreHealth;

use crate::config::ServeArgs;
use crate::settings::NO_KEK;

/// Where sessions live: embedded, or PostgreSQL.
pub type AppSessions = Either<Arc<MemorySessionStore>, PgSessionStore>;
/// The cache in front of PostgreSQL: Redis `sess:{<id>}`, behind an optional short-lived
/// in-process level; none without Redis or without PostgreSQL.
pub type AppCache = Option<Tiered<Option<LocalSessionCache>, RedisSessionCache>>;
/// The store nonces go to when Redis alone is not enough: PostgreSQL, or the embedded
/// store of a single instance.
pub type SharedNonces = Either<Arc<MemoryNonceStore>, PgNonceStore>;
/// Where fence episodes are shared (PostgreSQL; a single instance has no board).
pub type AppLedger = PgNonceStore;
/// Where nonces are claimed: embedded, or Redis behind the fence ([`fence`]).
pub type AppNonces =
    Either<Arc<MemoryNonceStore>, Fenced<RedisNonceStore, SharedNonces, AppLedger>>;
/// Where the abuse-limit state lives: embedded, or Redis (shared) with the embedded
/// state as the fallback.
pub type AppQuotas = Either<MemoryQuotas, Failover<RedisQuotas, MemoryQuotas>>;

fn pg_config(args: &ServeArgs, url: &str) -> PgConfig {
    PgConfig {
        url: url.to_owned(),
        pool_size: args.pg_pool_max,
        connect_timeout: Duration::from_millis(args.pg_connection_timeout_ms),
        statement_timeout: Duration::from_millis(args.pg_statement_timeout_ms),
        operation_timeout: Duration::from_millis(args.pg_statement_timeout_ms),
        max_insert_batch: args.pg_insert_batch_max,
        insert_writers: args.pg_insert_writers,
    }
}

/// Partitions of `SESSION_PARTITION_SEC`, created far enough ahead for the longest
/// session lifetime until the cleanup job runs again.
pub(crate) fn partitioning(
    args: &ServeArgs,
    interval: Duration,
) -> Result<postgres_adapter::Partitioning, crate::Error> {
    let width = args.session_partition_sec;
    if width < 60 {
        return Err("SESSION_PARTITION_SEC must be at least 60".into());
    }
    let longest = [
        args.session_ttl_max_sec,
        args.session_ttl_anonymous_sec,
        args.session_ttl_authenticated_sec,
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let ahead = Duration::from_secs(longest + width) + 2 * interval;
    if ahead.as_secs() / width > 1_000 {
        return Err(format!(
            "SESSION_PARTITION_SEC={width} would need {} partitions ahead for sessions of up to {longest} s: raise it",
            ahead.as_secs() / width
        )
        .into());
    }
    Ok(postgres_adapter::Partitioning {
        width: Duration::from_secs(width),
        ahead,
    })
}

fn fence_config(args: &ServeArgs) -> FenceConfig {
    FenceConfig {
        window_ms: args.timestamp_window_ms,
        margin_ms: args.replay_fence_margin_ms,
        lease_ms: args
            .replay_fence_lease_ms
            .max(2 * fence::POLL.as_millis() as u64),
    }
}

/// The nonce store: the embedded one without Redis; with Redis, Redis behind the fence,
/// which PostgreSQL (`pg`) backs while Redis cannot vouch for a nonce — or, on one
/// instance (`SINGLE_INSTANCE`, or no PostgreSQL at all), this process's memory, with no
/// board to agree on and no lease.
async fn nonces(
    args: &ServeArgs,
    redis: Option<&Redis>,
    local: Arc<MemoryNonceStore>,
    pg: Option<&PgNonceStore>,
) -> AppNonces {
    let Some(redis) = redis else {
        return Either::Left(local);
    };
    let (shared, ledger) = match pg {
        Some(pg) if !args.single_instance => (Either::Right(pg.clone()), Some(pg.clone())),
        _ => (Either::Left(local), None),
    };
    let board = Arc::new(Board::new(fence_config(args), ledger));
    let primary = RedisNonceStore::new(redis.clone());
    start_fence(&primary, &board, pg).await;
    board.spawn_write_back(primary.clone());
    Either::Right(Fenced::new(primary, shared, board))
}

/// The Redis primaries' identities as the fence row records them: sorted, joined.
fn primaries_text(primaries: &std::collections::BTreeSet<String>) -> String {
    primaries.iter().cloned().collect::<Vec<_>>().join(",")
}

/// Why this instance must fence at start-up, if it must (docs/operations.md, "The
/// edges"): Redis cannot be reached, so nothing proves it holds the nonces claimed
/// before; or, in a deployment that has run before, a bucket marker is missing (Redis
/// lost data) or a primary is not one the deployment recorded (Redis restarted or was
/// replaced while no instance watched it: an older snapshot, a replica that missed
/// writes — its markers may all be there, and the last claims gone).
async fn startup_trouble(primary: &RedisNonceStore, pg: Option<&PgNonceStore>) -> Option<String> {
    let missing = match primary.load_markers().await {
        Ok(n) => n,
        Err(e) => return Some(format!("redis unreachable at start-up: {e}")),
    };
    let pg = pg?;
    match pg.note_history().await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            warn!(error = %e, "the nonce fence row could not be read at start-up");
            return None;
        }
    }
    if missing > 0 {
        return Some(format!(
            "redis lacks {missing} nonce markers this deployment wrote before"
        ));
    }
    let now = match primary.redis().primaries().await {
        Ok(now) => now,
        Err(e) => return Some(format!("redis primaries unknown at start-up: {e}")),
    };
    match pg.recorded_primaries().await {
        Ok(Some(recorded)) => {
            let recorded: std::collections::BTreeSet<&str> = recorded.split(',').collect();
            let unknown = now
                .iter()
                .filter(|id| !recorded.contains(id.as_str()))
                .count();
            (unknown > 0).then(|| {
                format!(
                    "{unknown} redis primaries were restarted or replaced since the deployment last saw them"
                )
            })
        }
        Ok(None) => Some("no record of the redis primaries this deployment used".into()),
        Err(e) => {
            warn!(error = %e, "the recorded redis primaries could not be read at start-up");
            None
        }
    }
}

/// Records the Redis primaries in the fence row whenever they change (checked every
/// second), so that the next start-up can tell whether Redis was restarted or replaced
/// meanwhile.
fn spawn_primaries_record(redis: Redis, pg: PgNonceStore) {
    tokio::spawn(async move {
        let mut recorded = String::new();
        loop {
            if let Ok(now) = redis.primaries().await
                && !now.is_empty()
            {
                let text = primaries_text(&now);
                if text != recorded {
                    match pg.record_primaries(&text).await {
                        Ok(()) => recorded = text,
                        Err(e) => {
                            tracing::debug!(error = %e, "redis primaries not recorded");
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Reads the nonce buckets' markers and the fence before the first request, and
/// fences at start-up when Redis cannot be shown to hold every nonce claimed before
/// ([`startup_trouble`]). A deployment with no PostgreSQL cannot tell a restart onto a
/// stale Redis from a first start, and keeps its sessions in memory: nothing it
/// accepted before a restart can be used again.
async fn start_fence<L: fence::Ledger>(
    primary: &RedisNonceStore,
    board: &Arc<Board<L>>,
    pg: Option<&PgNonceStore>,
) {
    if let Some(why) = startup_trouble(primary, pg).await {
        board.begin_at_start(fence::now_ms(), &why).await;
    }
    if let Some(pg) = pg {
        spawn_primaries_record(primary.redis().clone(), pg.clone());
    }
    if let Err(e) = board.refresh(fence::now_ms()).await {
        warn!(error = %e, "the nonce fence could not be read at start-up; nonces need PostgreSQL until it can");
    }
    board.spawn_refresh();
}

/// Applies the migrations, retrying while PostgreSQL is not reachable yet.
async fn migrate_with_retry(
    pool: &postgres_adapter::Pool,
    deadline: Duration,
) -> Result<Vec<String>, crate::Error> {
    let started = std::time::Instant::now();
    loop {
        match postgres_adapter::run_migrations(pool).await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() < deadline => {
                tracing::warn!(error = %e, "PostgreSQL not ready; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(crate::Error::Runtime(format!(
                    "{e} (gave up after {} ms; PG_STARTUP_TIMEOUT_MS)",
                    deadline.as_millis()
                )));
            }
        }
    }
}

/// Builds the stores the configuration asks for.
///
/// # Errors
/// A message naming the setting at fault, or PostgreSQL unreachable past
/// `PG_STARTUP_TIMEOUT_MS`.
pub async fn build(
    args: &ServeArgs,
    crypto: ports::CryptoProvider,
    wrapper: Option<KeyWrapper>,
) -> Result<(AppPorts, StoreHealth), crate::Error> {
    let wrapper = wrapper.map(Arc::new);
    let share = args.memory_nonce_client_share_percent;
    let local_nonces = Arc::new(match args.memory_nonce_max_size {
        Some(n) => MemoryNonceStore::with_client_share(n, share),
        None => MemoryNonceStore::with_memory(args.memory_nonce_max_bytes, share),
    });
    let nonce_health = Arc::clone(&local_nonces);
    let local_quotas = MemoryQuotas::default();
    let redis = match crate::redis_settings::redis_config(
        &args.redis,
        crypto,
        Duration::from_millis(args.redis_command_timeout_ms),
        Duration::from_millis(args.redis_retry_interval_ms),
    )? {
        Some(config) => Some(Redis::new(&config)?),
        None => None,
    };
    if let Some(r) = &redis {
        eviction::check(r, args.redis_allow_eviction).await?;
        eviction::spawn_recheck(r.clone(), args.redis_allow_eviction);
        r.spawn_watch(Duration::from_millis(500));
    }
    let quotas = match &redis {
        Some(r) => Either::Right(Failover {
            primary: RedisQuotas::new(r.clone()),
            fallback: local_quotas,
        }),
        None => Either::Left(local_quotas),
    };
    let Some(url) = &args.database_url else {
        let nonces = nonces(args, redis.as_ref(), local_nonces, None).await;
        let embedded = Arc::new(MemorySessionStore::new(args.memory_session_max_size));
        let sessions = Either::Left(Arc::clone(&embedded));
        return Ok((
            AppPorts(Stores {
                sessions,
                cache: None,
                nonces,
                clock: SystemClock,
                quotas,
            }),
            StoreHealth {
                postgres: None,
                redis,
                nonces: nonce_health,
                sessions: Some(embedded),
            },
        ));
    };
    let wrapper = wrapper.ok_or(NO_KEK)?;
    let config = pg_config(args, url);
    let pool = postgres_adapter::pool(&config)?;
    let applied =
        migrate_with_retry(&pool, Duration::from_millis(args.pg_startup_timeout_ms)).await?;
    info!(applied = ?applied, kek_id = wrapper.current_id(), "PostgreSQL ready");
    let mut pg = PgSessionStore::new(pool, Arc::clone(&wrapper), &config);
    if let Some(read_url) = &args.pg_read_url {
        if redis.is_none() {
            warn!(
                "PG_READ_URL without Redis: a replica that lags behind a revocation can serve the revoked session until it catches up"
            );
        }
        pg = pg.with_read_replica(postgres_adapter::pool(&pg_config(args, read_url))?);
    }
    let interval = Duration::from_millis(args.session_cleanup_interval_ms.max(1000));
    let partitioning = partitioning(args, interval)?;
    // Partitions for the sessions of the first minutes exist before the first request.
    if let Err(e) = pg
        .ensure_partitions(partitioning.width, partitioning.ahead)
        .await
    {
        warn!(error = %e, "session partitions not created at start-up (the cleanup job retries; sessions meanwhile go to sessions_default)");
    }
    pg.spawn_cleanup(
        partitioning,
        interval,
        args.session_cleanup_batch_size.max(1),
        Duration::from_millis(args.session_cleanup_batch_delay_ms),
    );
    let pg_nonces = PgNonceStore::new(&pg);
    let nonces = nonces(args, redis.as_ref(), local_nonces, Some(&pg_nonces)).await;
    let cache = redis.as_ref().map(|r| Tiered {
        near: (args.session_local_cache_ms > 0)
            .then(|| LocalSessionCache::new(args.session_local_cache_ms, 100_000)),
        far: RedisSessionCache::new(r.clone(), wrapper),
    });
    Ok((
        AppPorts(Stores {
            sessions: Either::Right(pg.clone()),
            cache,
            nonces,
            clock: SystemClock,
            quotas,
        }),
        StoreHealth {
            postgres: Some(pg),
            redis,
            nonces: nonce_health,
            sessions: None,
        },
    ))
}
