//! The composition root of the server: config → adapters → service → listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use domain::keywrap::KeyWrapper;
use domain::limits::IpRange;
use domain::{
    AbuseLimits, ReplayPolicy, ServiceConfig, SessionService, Stores, TtlPolicy, V1TtlPolicy,
};
use http_adapter::server::bind;
use http_adapter::{Api, ApiConfig, Cors, Listener, ServerConfig, serve, serve_admin};
use memory::{MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::{CryptoProvider, RateLimit, SystemClock};
use postgres_adapter::{PgConfig, PgSessionStore};
use redis_adapter::{Redis, RedisConfig, RedisNonceStore, RedisQuotas, RedisSessionCache};
use tokio::sync::watch;
use tracing::info;

use crate::config::ServeArgs;
use crate::stores::{Cache, Limits, Nonces, Sessions, StoreHealth};

fn decode_kek(name: &str, text: &str) -> Result<[u8; 32], String> {
    let bytes = domain::encoding::base64_decode(text.trim()).ok_or_else(|| {
        format!("{name} is not base64 (generate one with `session-crypto keygen`)")
    })?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| format!("{name} must be base64 of exactly 32 bytes (got {len})"))
}

/// The key-wrapping keys from SESSION_KEK / SESSION_KEK_FILE / SESSION_KEK_PREVIOUS.
///
/// # Errors
/// A message naming the setting.
pub fn key_wrapper(args: &ServeArgs, crypto: CryptoProvider) -> Result<Option<KeyWrapper>, String> {
    let current = match (&args.session_kek, &args.session_kek_file) {
        (Some(_), Some(_)) => return Err("set only one of SESSION_KEK and SESSION_KEK_FILE".into()),
        (Some(k), None) => Some(decode_kek("SESSION_KEK", k)?),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("SESSION_KEK_FILE {}: {e}", path.display()))?;
            Some(decode_kek("SESSION_KEK_FILE", &text)?)
        }
        (None, None) => None,
    };
    let Some(current) = current else {
        return Ok(None);
    };
    let previous = args
        .session_kek_previous
        .iter()
        .flat_map(|list| list.split(','))
        .filter(|k| !k.trim().is_empty())
        .map(|k| decode_kek("SESSION_KEK_PREVIOUS", k))
        .collect::<Result<Vec<_>, _>>()?;
    KeyWrapper::new(crypto, current, previous)
        .map(Some)
        .map_err(|_| "cannot derive the KEK id".into())
}

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

/// Applies the migrations, retrying while PostgreSQL is not reachable yet.
async fn migrate_with_retry(
    pool: &postgres_adapter::Pool,
    deadline: Duration,
) -> Result<Vec<String>, String> {
    let started = std::time::Instant::now();
    loop {
        match postgres_adapter::run_migrations(pool).await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() < deadline => {
                tracing::warn!(error = %e, "PostgreSQL not ready; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(format!(
                    "{e} (gave up after {} ms; PG_STARTUP_TIMEOUT_MS)",
                    deadline.as_millis()
                ));
            }
        }
    }
}

type AppStores = Stores<Sessions, Cache, Nonces, SystemClock, Limits>;

/// Builds the stores the configuration asks for.
async fn stores(
    args: &ServeArgs,
    wrapper: Option<KeyWrapper>,
) -> Result<(AppStores, StoreHealth), String> {
    let wrapper = wrapper.map(Arc::new);
    let fallback = Arc::new(MemoryNonceStore::new(args.memory_nonce_max_size));
    let redis = match &args.redis_url {
        Some(url) => Some(Redis::new(&RedisConfig {
            url: url.clone(),
            command_timeout: Duration::from_millis(args.redis_command_timeout_ms),
            retry_interval: Duration::from_millis(args.redis_retry_interval_ms),
        })?),
        None => None,
    };
    let nonces = match &redis {
        Some(r) => Nonces::Redis(RedisNonceStore::new(r.clone(), fallback)),
        None => Nonces::Memory(fallback),
    };
    let quotas = Arc::new(MemoryQuotas::default());
    let quotas = match &redis {
        Some(r) => Limits::Redis(RedisQuotas::new(r.clone(), quotas)),
        None => Limits::Memory(quotas),
    };
    let Some(url) = &args.database_url else {
        let sessions = Sessions::Memory(MemorySessionStore::new(args.memory_session_max_size));
        return Ok((
            Stores {
                sessions,
                cache: Cache::None,
                nonces,
                clock: SystemClock,
                quotas,
            },
            StoreHealth {
                postgres: None,
                redis,
            },
        ));
    };
    let wrapper = wrapper.ok_or(NO_KEK)?;
    let config = pg_config(args, url);
    let pool = postgres_adapter::pool(&config)?;
    let applied =
        migrate_with_retry(&pool, Duration::from_millis(args.pg_startup_timeout_ms)).await?;
    info!(applied = ?applied, kek_id = wrapper.current_id(), "PostgreSQL ready");
    let pg = PgSessionStore::new(pool, Arc::clone(&wrapper), &config);
    pg.spawn_cleanup(
        Duration::from_millis(args.session_cleanup_interval_ms.max(1000)),
        args.session_cleanup_batch_size.max(1),
        Duration::from_millis(args.session_cleanup_batch_delay_ms),
    );
    let cache = match &redis {
        Some(r) => Cache::Redis(
            RedisSessionCache::new(r.clone(), wrapper),
            (args.session_local_cache_ms > 0)
                .then(|| memory::LocalSessionCache::new(args.session_local_cache_ms, 100_000)),
        ),
        None => Cache::None,
    };
    Ok((
        Stores {
            sessions: Sessions::Postgres(pg.clone()),
            cache,
            nonces,
            clock: SystemClock,
            quotas,
        },
        StoreHealth {
            postgres: Some(pg),
            redis,
        },
    ))
}

/// Validated service policies from the arguments.
///
/// # Errors
/// A message naming the offending setting.
pub fn service_config(args: &ServeArgs) -> Result<ServiceConfig, String> {
    let replay = ReplayPolicy::new(args.timestamp_window_ms, args.nonce_ttl_sec)
        .map_err(|e| e.to_string())?;
    let ttl = TtlPolicy::new(
        args.session_ttl_min_sec,
        args.session_ttl_default_sec,
        args.session_ttl_max_sec,
    )
    .map_err(|e| e.to_string())?;
    if args.session_ttl_anonymous_sec == 0 || args.session_ttl_authenticated_sec == 0 {
        return Err(
            "SESSION_TTL_ANONYMOUS_SEC and SESSION_TTL_AUTHENTICATED_SEC must be > 0".into(),
        );
    }
    let v1_ttl = V1TtlPolicy {
        anonymous_sec: args.session_ttl_anonymous_sec,
        authenticated_sec: args.session_ttl_authenticated_sec,
        trust_upstream_auth: args.trust_upstream_auth,
    };
    let rate = |name: &str, per_minute: u32, burst: u32| {
        if per_minute > 0 && burst == 0 {
            return Err(format!("{name}_BURST must be ≥ 1 while {name} is on"));
        }
        Ok(RateLimit { per_minute, burst })
    };
    let limits = AbuseLimits {
        init_per_client: rate(
            "INIT_RATE_LIMIT_PER_CLIENT",
            args.init_rate_limit_per_client,
            args.init_rate_limit_per_client_burst,
        )?,
        init_per_ip: rate(
            "INIT_RATE_LIMIT_PER_IP",
            args.init_rate_limit_per_ip,
            args.init_rate_limit_per_ip_burst,
        )?,
        max_sessions_per_client: args.max_sessions_per_client,
        max_encryptions_per_session: args.max_encryptions_per_session,
        idle_timeout_sec: args.session_idle_timeout_sec,
    };
    Ok(ServiceConfig {
        replay,
        ttl,
        v1_ttl,
        limits,
    })
}

/// The HTTP settings, validated.
///
/// # Errors
/// A message naming the offending setting.
pub fn api_config(args: &ServeArgs) -> Result<ApiConfig, String> {
    let ranges =
        |name: &str, text: &str| IpRange::parse_list(text).map_err(|e| format!("{name}: {e}"));
    Ok(ApiConfig {
        body_limit: args.body_limit_bytes,
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        cors: cors(&args.cors_origins),
        trusted_proxies: ranges("TRUSTED_PROXIES", &args.trusted_proxies)?,
        rate_limit_exempt: ranges("RATE_LIMIT_EXEMPT", &args.rate_limit_exempt)?,
    })
}

fn cors(spec: &str) -> Cors {
    match spec.trim() {
        "*" => Cors::AnyOrigin,
        "" | "none" => Cors::Disabled,
        list => Cors::Origins(
            list.split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
        ),
    }
}

/// Latency buckets of `http_request_duration_seconds` (seconds).
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Installs the Prometheus recorder (only when the admin listener is on, so metrics
/// cost nothing otherwise) and describes the metrics.
fn install_metrics() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("http_request_duration_seconds".into()),
            &LATENCY_BUCKETS,
        )
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| format!("metrics: {e}"))?;
    metrics::describe_counter!(
        "http_requests_total",
        "Requests answered, by listener, route template and status."
    );
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from request head to response, by listener, route template and status."
    );
    metrics::describe_counter!(
        "session_crypto_rejections_total",
        "Refused requests by route and reason (replay, outside_window, bad_public_key, decrypt_failed, unknown_session, rate_limited, …)."
    );
    metrics::describe_counter!(
        "session_crypto_sessions_created_total",
        "Sessions created, by route family."
    );
    metrics::describe_counter!(
        "session_crypto_sessions_revoked_total",
        "Sessions ended with POST /session/revoke."
    );
    metrics::describe_gauge!(
        "session_crypto_dependency_up",
        "1 when PostgreSQL / Redis answered the last probe, else 0."
    );
    metrics::describe_gauge!(
        "session_crypto_nonce_fallback_active",
        "1 while Redis is unreachable and nonces go to the in-memory fallback."
    );
    metrics::describe_gauge!(
        "session_crypto_pg_pool_connections",
        "PostgreSQL pool connections (open, idle)."
    );
    metrics::describe_gauge!(
        "session_crypto_pg_pool_waiting",
        "Requests waiting for a PostgreSQL connection."
    );
    http_adapter::router::enable_metrics();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Registers the SIGINT/SIGTERM handlers now (before the listeners are announced, so
/// a signal sent right after start-up is never missed) and resolves on the first one.
fn shutdown_signal() -> impl Future<Output = ()> {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        #[cfg(unix)]
        let term = async move {
            match term {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => info!("SIGINT received"),
            () = term => info!("SIGTERM received"),
        }
    }
}

/// The soft open-file limit, from `/proc/self/limits` (Linux), if readable.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// One connection with generous timeouts, for the one-shot admin commands.
fn admin_pg_config(url: &str) -> PgConfig {
    PgConfig {
        url: url.to_owned(),
        pool_size: 1,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(60),
        operation_timeout: Duration::from_secs(60),
        max_insert_batch: 1,
        insert_writers: 1,
    }
}

/// `session-crypto migrate`.
///
/// # Errors
/// A message for the user.
pub async fn migrate(url: &str) -> Result<(), String> {
    let config = admin_pg_config(url);
    let applied = postgres_adapter::run_migrations(&postgres_adapter::pool(&config)?).await?;
    if applied.is_empty() {
        println!("database is up to date");
    }
    for v in applied {
        println!("applied migration {v}");
    }
    Ok(())
}

/// `session-crypto revoke --client-id ID`: deletes the client's sessions from
/// PostgreSQL, then their Redis cache entries.
///
/// # Errors
/// A message for the user.
pub async fn revoke(
    args: &crate::config::RevokeArgs,
    crypto: CryptoProvider,
) -> Result<(), String> {
    let url = args.database_url.as_deref().ok_or(
        "revoke needs DATABASE_URL: embedded (in-memory) sessions live inside the server process, \
         end them by restarting it",
    )?;
    let config = admin_pg_config(url);
    // Deleting needs no key-wrapping key; a throwaway one satisfies the store's constructor.
    let wrapper =
        Arc::new(KeyWrapper::new(crypto, [0; 32], vec![]).map_err(|_| "crypto backend failure")?);
    let pg = PgSessionStore::new(
        postgres_adapter::pool(&config)?,
        Arc::clone(&wrapper),
        &config,
    );
    let ids = pg
        .delete_client_sessions(&args.client_id)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(redis_url) = &args.redis_url {
        let redis = Redis::new(&RedisConfig {
            url: redis_url.clone(),
            command_timeout: Duration::from_secs(5),
            retry_interval: Duration::from_millis(100),
        })?;
        RedisSessionCache::new(redis.clone(), wrapper)
            .delete_many(&ids)
            .await
            .map_err(|e| {
                format!("sessions deleted from PostgreSQL, but not from the Redis cache: {e}")
            })?;
        RedisQuotas::new(redis, Arc::new(MemoryQuotas::new(1)))
            .forget_client(&args.client_id)
            .await
            .map_err(|e| {
                format!(
                    "sessions deleted, but their count (MAX_SESSIONS_PER_CLIENT) was not reset: {e}"
                )
            })?;
    }
    println!(
        "revoked {} session(s) of client id {:?}",
        ids.len(),
        args.client_id
    );
    Ok(())
}

/// Every check `serve` makes before it touches the network: policies, HTTP settings,
/// key-wrapping keys, store sizes, and that a database comes with a KEK.
///
/// # Errors
/// A message naming the offending setting.
pub fn validate(args: &ServeArgs, crypto: CryptoProvider) -> Result<Checked, String> {
    let service = service_config(args)?;
    let api = api_config(args)?;
    if args.memory_nonce_max_size == 0 || args.memory_session_max_size == 0 {
        return Err("MEMORY_NONCE_MAX_SIZE and MEMORY_SESSION_MAX_SIZE must be > 0".into());
    }
    let wrapper = key_wrapper(args, crypto)?;
    if args.database_url.is_some() && wrapper.is_none() {
        return Err(NO_KEK.into());
    }
    let tls = tls_config(args, crypto)?;
    Ok(Checked {
        service,
        api,
        wrapper,
        tls,
    })
}

/// What [`validate`] built from the arguments, so `serve` builds it once.
#[derive(Debug)]
pub struct Checked {
    /// Service policies.
    pub service: ServiceConfig,
    /// HTTP settings.
    pub api: ApiConfig,
    /// Key-wrapping keys, when configured.
    pub wrapper: Option<KeyWrapper>,
    /// TLS settings and the rustls provider's name, when configured.
    pub tls: Option<(Arc<rustls::ServerConfig>, &'static str)>,
}

/// The TLS server settings from TLS_CERT_FILE and TLS_KEY_FILE, with the name of the
/// rustls provider used; `None` without them.
///
/// # Errors
/// Only one of the two set, unreadable files, or no provider in this build.
pub fn tls_config(
    args: &ServeArgs,
    crypto: CryptoProvider,
) -> Result<Option<(Arc<rustls::ServerConfig>, &'static str)>, String> {
    match (&args.tls_cert_file, &args.tls_key_file) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            let (provider, name) = http_adapter::tls::provider(crypto.name)?;
            Ok(Some((
                http_adapter::tls::server_config(provider, cert, key)?,
                name,
            )))
        }
        _ => Err("set both TLS_CERT_FILE and TLS_KEY_FILE (or neither)".into()),
    }
}

const NO_KEK: &str = "DATABASE_URL is set but no key-wrapping key is configured: session keys are \
                      stored only wrapped. Set SESSION_KEK to base64 of 32 random bytes (e.g. \
                      SESSION_KEK=$(session-crypto keygen)) or SESSION_KEK_FILE to a file \
                      holding it.";

/// Runs the server until SIGINT/SIGTERM.
///
/// # Errors
/// Configuration or bind failures, as a message for the user.
pub async fn run(args: ServeArgs, crypto: CryptoProvider) -> Result<(), String> {
    let Checked {
        service: config,
        api: api_config,
        wrapper,
        tls,
    } = validate(&args, crypto)?;
    crate::backend::self_test(crypto)?;
    let metrics = args.admin_port.map(|_| install_metrics()).transpose()?;
    let (stores, health) = stores(&args, wrapper).await?;
    let admin_health = health.clone();
    let (session_store, nonce_store) = (
        if args.database_url.is_some() {
            "postgres"
        } else {
            "memory"
        },
        if args.redis_url.is_some() {
            "redis"
        } else {
            "memory"
        },
    );
    let service = SessionService::new(crypto, stores, config);
    let api = Api::new(service, health, api_config);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let tls_provider = tls.as_ref().map_or("none", |(_, name)| *name);
    let server_config = ServerConfig {
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        max_connections: args.max_connections,
        shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
        tls: tls.map(|(config, _)| config),
        tls_handshake_timeout: Duration::from_millis(args.tls_handshake_timeout_ms),
    };

    if let Some(limit) = open_file_limit() {
        let needed =
            (args.max_connections as u64) * if args.internal_port.is_some() { 2 } else { 1 } + 64;
        if limit < needed {
            tracing::warn!(
                open_file_limit = limit,
                max_connections = args.max_connections,
                "the open-file limit is below MAX_CONNECTIONS: beyond it, new connections fail to be \
                 accepted; raise `ulimit -n` (or LimitNOFILE) or lower MAX_CONNECTIONS"
            );
        }
    }
    let public_addr = SocketAddr::new(args.host, args.port);
    let public = bind(public_addr)
        .await
        .map_err(|e| format!("cannot listen on {public_addr} (HOST/PORT): {e}"))?;
    let admin = match args.admin_port {
        Some(port) => {
            let addr = SocketAddr::new(args.admin_host, port);
            Some(
                bind(addr)
                    .await
                    .map_err(|e| format!("cannot listen on {addr} (ADMIN_HOST/ADMIN_PORT): {e}"))?,
            )
        }
        None => None,
    };
    let internal = match args.internal_port {
        Some(port) => {
            let addr = SocketAddr::new(args.internal_host, port);
            Some(bind(addr).await.map_err(|e| {
                format!("cannot listen on {addr} (INTERNAL_HOST/INTERNAL_PORT): {e}")
            })?)
        }
        None => None,
    };

    info!(
        version = env!("CARGO_PKG_VERSION"),
        crypto_backend = crypto.name,
        session_store,
        nonce_store,
        window_ms = config.replay.window_ms(),
        nonce_ttl_sec = config.replay.nonce_ttl_sec(),
        tls_provider,
        "session-crypto starting"
    );
    let signal = shutdown_signal();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = Vec::new();
    if let (Some(listener), Some(handle)) = (admin, metrics) {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on http://{addr} (admin: GET /metrics)");
        let render = move || {
            let (health, handle) = (admin_health.clone(), handle.clone());
            async move {
                health.export_gauges().await;
                handle.render()
            }
        };
        tasks.push(tokio::spawn(serve_admin(
            listener,
            render,
            Duration::from_millis(args.header_read_timeout_ms),
            stopped(stop_rx.clone()),
        )));
    }
    if let Some(listener) = internal {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!(
            "listening on {scheme}://{addr} (internal: /v1 routes incl. key release; private network only)"
        );
        tasks.push(tokio::spawn(serve(
            listener,
            Listener::Internal,
            Arc::clone(&api),
            server_config.clone(),
            stopped(stop_rx.clone()),
        )));
    }
    let addr = public.local_addr().map_err(|e| e.to_string())?;
    println!(
        "listening on {scheme}://{addr} (public, crypto backend {}, TLS provider {tls_provider})",
        crypto.name
    );
    info!(%addr, "public listener ready");
    tasks.push(tokio::spawn(serve(
        public,
        Listener::Public,
        api,
        server_config,
        stopped(stop_rx),
    )));

    signal.await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    info!("session-crypto stopped");
    Ok(())
}
