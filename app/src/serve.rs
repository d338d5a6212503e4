//! The composition root of the server: config → adapters → service → listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use domain::{ReplayPolicy, ServiceConfig, SessionService, TtlPolicy, V1TtlPolicy};
use http_adapter::server::bind;
use http_adapter::{
    Api, ApiConfig, Cors, Dependency, HealthCheck, HealthReport, Listener, ServerConfig, serve,
};
use memory::{MemoryNonceStore, MemorySessionStore};
use ports::{CryptoProvider, NoCache, SystemClock};
use tokio::sync::watch;
use tracing::info;

use crate::config::ServeArgs;

/// Health of the embedded stores: always up, no external dependency.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedHealth;

impl HealthCheck for EmbeddedHealth {
    async fn report(&self) -> HealthReport {
        HealthReport {
            session_store: "memory",
            postgres: Dependency::Disabled,
            redis: Dependency::Disabled,
        }
    }
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
    Ok(ServiceConfig {
        replay,
        ttl,
        v1_ttl,
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

/// Runs the server until SIGINT/SIGTERM.
///
/// # Errors
/// Configuration or bind failures, as a message for the user.
pub async fn run(args: ServeArgs, crypto: CryptoProvider) -> Result<(), String> {
    let config = service_config(&args)?;
    crate::backend::self_test(crypto)?;
    if args.memory_nonce_max_size == 0 || args.memory_session_max_size == 0 {
        return Err("MEMORY_NONCE_MAX_SIZE and MEMORY_SESSION_MAX_SIZE must be > 0".into());
    }
    let service = SessionService::new(
        crypto,
        MemorySessionStore::new(args.memory_session_max_size),
        NoCache,
        MemoryNonceStore::new(args.memory_nonce_max_size),
        SystemClock,
        config,
    );
    let api_config = ApiConfig {
        body_limit: args.body_limit_bytes,
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        cors: cors(&args.cors_origins),
    };
    let api = Api::new(service, EmbeddedHealth, api_config);
    let server_config = ServerConfig {
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        max_connections: args.max_connections,
        shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
    };

    let public_addr = SocketAddr::new(args.host, args.port);
    let public = bind(public_addr)
        .await
        .map_err(|e| format!("cannot listen on {public_addr} (HOST/PORT): {e}"))?;
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
        session_store = "memory",
        nonce_store = "memory",
        window_ms = config.replay.window_ms(),
        nonce_ttl_sec = config.replay.nonce_ttl_sec(),
        "session-crypto starting"
    );
    let signal = shutdown_signal();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = Vec::new();
    if let Some(listener) = internal {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!(
            "listening on http://{addr} (internal: /v1 routes incl. key release; private network only)"
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
        "listening on http://{addr} (public, crypto backend {})",
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
