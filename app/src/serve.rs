//! The server: stores → service → listeners, until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use domain::SessionService;
use http_adapter::server::bind;
use http_adapter::{Api, Listener, ServerConfig, serve, serve_admin};
use ports::CryptoProvider;
use tokio::sync::watch;
use tracing::info;

use crate::config::ServeArgs;
use crate::settings::{Checked, validate};

/// Installs the Prometheus recorder (only when the admin listener is on, so metrics
/// cost nothing otherwise) and turns recording on.
fn install_metrics() -> Result<metrics_exporter_prometheus::PrometheusHandle, crate::Error> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(http_adapter::metrics::REQUEST_DURATION.into()),
            &http_adapter::metrics::LATENCY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(http_adapter::metrics::UPSTREAM_DURATION.into()),
                &http_adapter::metrics::LATENCY_BUCKETS,
            )
        })
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| crate::Error::Runtime(format!("metrics: {e}")))?;
    http_adapter::metrics::enable();
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

/// Makes room for `needed` open files: raises the soft limit towards the hard one
/// when it is lower (as Go's runtime and most servers do), and warns, saying what it
/// compared, when even the hard limit is below what the settings can use.
fn ensure_open_files(needed: u64, max_connections: usize, listeners: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (soft, hard) = (limit.current, limit.maximum);
    let soft_now = soft.unwrap_or(u64::MAX);
    if soft_now >= needed {
        return;
    }
    let target = hard.map_or(needed, |h| h.min(needed));
    let raised = target > soft_now
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: hard,
            },
        )
        .is_ok();
    let effective = if raised { target } else { soft_now };
    if raised {
        tracing::info!(
            from = soft_now,
            to = target,
            "raised the soft open-file limit"
        );
    }
    if effective < needed {
        tracing::warn!(
            open_file_limit = effective,
            hard_limit = hard.unwrap_or(u64::MAX),
            needed,
            max_connections,
            listeners,
            "the open-file limit is below what the settings can use (MAX_CONNECTIONS × \
             listeners serving the API + 64 for stores and logs): past it, new connections \
             fail to be accepted; raise the hard limit (`ulimit -Hn`, LimitNOFILE) or lower \
             MAX_CONNECTIONS"
        );
    }
}

/// Binds a listener; `setting` names the settings that chose the address, for the
/// error.
async fn bind_listener(
    host: std::net::IpAddr,
    port: u16,
    setting: &'static str,
) -> Result<tokio::net::TcpListener, crate::Error> {
    let addr = SocketAddr::new(host, port);
    bind(addr).await.map_err(|source| crate::Error::Listen {
        addr,
        setting,
        source,
    })
}

fn local_addr(listener: &tokio::net::TcpListener) -> Result<SocketAddr, crate::Error> {
    listener
        .local_addr()
        .map_err(|e| crate::Error::Runtime(e.to_string()))
}

/// Runs the server until SIGINT/SIGTERM.
///
/// # Errors
/// Configuration or bind failures, as a message for the user.
pub async fn run(args: ServeArgs, crypto: CryptoProvider) -> Result<(), crate::Error> {
    let Checked {
        service: config,
        api: api_config,
        wrapper,
        tls,
        signing,
    } = validate(&args, crypto)?;
    crate::backend::self_test(crypto)?;
    let metrics = args.admin_port.map(|_| install_metrics()).transpose()?;
    let (stores, health) = crate::stores::build(&args, crypto, wrapper).await?;
    let admin_health = health.clone();
    let (session_store, nonce_store) = (
        if args.database_url.is_some() {
            "postgres"
        } else {
            "memory"
        },
        if crate::redis_settings::redis_topology(&args.redis)?.is_some() {
            "redis"
        } else {
            "memory"
        },
    );
    for line in api_config.gateway.describe() {
        info!(route = %line, "gateway route");
    }
    for line in crate::identity::describe(&signing, crate::stores::fence::now_ms() / 1000) {
        info!("{line}");
    }
    let fence_board = match &stores.0.nonces {
        crate::stores::combinators::Either::Right(fenced) => Some(Arc::clone(&fenced.board)),
        crate::stores::combinators::Either::Left(_) => None,
    };
    let service = SessionService::new(crypto, stores, config).with_signing_keys(signing);
    let api = Api::new(service, health, api_config);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let tls_provider = tls.as_ref().map_or("none", |(_, name)| *name);
    let server_config = ServerConfig {
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        max_connections: args.max_connections,
        shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
        tls: tls.map(|(config, _)| config),
        tls_handshake_timeout: Duration::from_millis(args.tls_handshake_timeout_ms),
        idle_timeout: Duration::from_millis(args.connection_idle_timeout_ms),
        write_timeout: Duration::from_millis(args.write_timeout_ms),
        max_connections_per_ip: args.max_connections_per_ip,
        http2_max_concurrent_streams: args.http2_max_concurrent_streams.max(1),
    };

    let listeners = if args.internal_port.is_some() { 2 } else { 1 };
    ensure_open_files(
        (args.max_connections as u64) * listeners + 64,
        args.max_connections,
        listeners,
    );
    let public = bind_listener(args.host, args.port, "HOST/PORT").await?;
    let admin = match args.admin_port {
        Some(port) => Some(bind_listener(args.admin_host, port, "ADMIN_HOST/ADMIN_PORT").await?),
        None => None,
    };
    let internal = match args.internal_port {
        Some(port) => {
            Some(bind_listener(args.internal_host, port, "INTERNAL_HOST/INTERNAL_PORT").await?)
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
        let addr = local_addr(&listener)?;
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
        let addr = local_addr(&listener)?;
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
    let addr = local_addr(&public)?;
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
    if let Some(board) = fence_board {
        board.leave(crate::stores::fence::now_ms()).await;
    }
    info!("session-crypto stopped");
    Ok(())
}
