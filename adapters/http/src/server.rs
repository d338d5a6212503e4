//! The accept loop: one task per connection, HTTP/1.1 and HTTP/2 (h2c prior knowledge)
//! through hyper-util's auto builder, a connection cap, a header-read timeout, and
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use ports::Ports;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::health::HealthCheck;
use crate::router::Api;
use crate::wire::Listener;

/// A connection's byte stream: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Connection-level settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Close a connection whose request headers take longer than this.
    pub header_read_timeout: Duration,
    /// Concurrent connections per listener; further clients wait in the accept queue.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// TLS, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Close a connection whose TLS handshake takes longer than this.
    pub tls_handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(10),
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `api` on `listener` until `shutdown` completes, then stops accepting and
/// waits (up to the configured deadline) for in-flight requests.
pub async fn serve<P: Ports, H: HealthCheck>(
    listener: TcpListener,
    kind: Listener,
    api: Arc<Api<P, H>>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.as_mut() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // e.g. EMFILE: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        let _ = stream.set_nodelay(true);
        let api = Arc::clone(&api);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let first_byte_timeout = config.header_read_timeout;
        let (tls, handshake_timeout) = (tls.clone(), config.tls_handshake_timeout);
        tokio::spawn(async move {
            // hyper's header-read timer starts only once a request has begun; the
            // protocol sniffing of the auto builder would wait for a silent client
            // forever. Give the first byte the same deadline as the headers.
            let mut probe = [0u8; 1];
            match tokio::time::timeout(first_byte_timeout, stream.peek(&mut probe)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    debug!(%peer, "connection closed: no request within the header-read timeout");
                    drop(permit);
                    return;
                }
            }
            let svc = service_fn(move |req| {
                let api = Arc::clone(&api);
                async move { Ok::<_, std::convert::Infallible>(api.handle(kind, peer.ip(), req).await) }
            });
            // Plain or TLS, the connection is served the same way.
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => Box::new(stream),
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!(%peer, "connection closed: TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let served = watcher
                .watch(builder.serve_connection(TokioIo::new(io), svc).into_owned())
                .await;
            if let Err(e) = served {
                debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    info!(listener = ?kind, in_flight = graceful.count(), "stopped accepting; draining connections");
    tokio::select! {
        () = graceful.shutdown() => info!(listener = ?kind, "all connections closed"),
        () = tokio::time::sleep(config.shutdown_timeout) => {
            warn!(listener = ?kind, "shutdown deadline reached; closing remaining connections");
        }
    }
}

/// Binds a TCP listener (port 0 picks a free port).
///
/// # Errors
/// The bind error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
