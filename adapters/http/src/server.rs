//! The accept loop: one task per connection, HTTP/1.1 and HTTP/2 (h2c prior knowledge,
//! or h2 by ALPN over TLS) through hyper-util's auto builder, graceful shutdown, and a
//! deadline for every state a connection can be in:
//!
//! * before its first request: the header-read timeout, from accept — it covers a
//!   silent client, the protocol sniffing of the auto builder and the HTTP/2 preface;
//! * between requests: hyper's header-read timeout (HTTP/1.1), the idle timeout (both);
//! * while answering: the write timeout (a client that never reads its answers);
//! * the number of connections: per listener and per client address.

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

use crate::deadline::Deadlines;
use crate::health_check::HealthCheck;
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
    /// Close a connection on which nothing was read or written for this long.
    pub idle_timeout: Duration,
    /// Close a connection whose answer cannot be written for this long.
    pub write_timeout: Duration,
    /// Concurrent connections from one client address (0 = no cap).
    pub max_connections_per_ip: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub http2_max_concurrent_streams: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(10),
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_connections_per_ip: 256,
            http2_max_concurrent_streams: 32,
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
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_concurrent_streams);
    let graceful = GracefulShutdown::new();
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let per_ip = PerIp::new(config.max_connections_per_ip);
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
        let Some(slot) = per_ip.take(peer.ip()) else {
            debug!(%peer, "connection refused: too many connections from this address");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let api = Arc::clone(&api);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let first_byte_timeout = config.header_read_timeout;
        let (tls, handshake_timeout) = (tls.clone(), config.tls_handshake_timeout);
        let (idle, write) = (config.idle_timeout, config.write_timeout);
        let accepted = tokio::time::Instant::now();
        tokio::spawn(async move {
            let _slot = slot;
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
            let first_request = Arc::new(tokio::sync::Notify::new());
            let seen = Arc::clone(&first_request);
            let slots = api.connection_slots();
            let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                seen.notify_one();
                if let Some(slots) = &slots {
                    req.extensions_mut().insert(slots.clone());
                }
                let api = Arc::clone(&api);
                async move { Ok::<_, std::convert::Infallible>(api.handle(kind, peer.ip(), req).await) }
            });
            // Plain or TLS, the connection is served the same way.
            let io: Box<dyn Io> = match tls {
                None => Box::new(Deadlines::new(stream, idle, write)),
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => Box::new(Deadlines::new(stream, idle, write)),
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
            let connection =
                watcher.watch(builder.serve_connection(TokioIo::new(io), svc).into_owned());
            // Until its first request, a connection has the header-read timeout from
            // accept, whatever it sends (one byte, half an HTTP/2 preface, …).
            let first_deadline = async {
                tokio::select! {
                    () = tokio::time::sleep_until(accepted + first_byte_timeout) => {}
                    () = first_request.notified() => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                served = connection => {
                    if let Err(e) = served {
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                () = first_deadline => {
                    debug!(%peer, "connection closed: no complete request within the header-read timeout");
                }
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

/// Connections per client address, capped. A slot is given back when dropped.
#[derive(Debug, Clone)]
struct PerIp {
    cap: usize,
    counts: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// One connection's place in [`PerIp`].
#[derive(Debug)]
struct Slot {
    owner: Option<(PerIp, std::net::IpAddr)>,
}

impl PerIp {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            counts: Arc::default(),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, usize>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for one more connection from `ip`, or `None` at the cap.
    fn take(&self, ip: std::net::IpAddr) -> Option<Slot> {
        if self.cap == 0 {
            return Some(Slot { owner: None });
        }
        let ip = ip.to_canonical();
        let mut counts = self.lock();
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: Some((self.clone(), ip)),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((per_ip, ip)) = self.owner.take() {
            let mut counts = per_ip.lock();
            if let Some(n) = counts.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_share_and_slots_come_back() {
        let per_ip = PerIp::new(2);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let (s1, s2) = (per_ip.take(a).unwrap(), per_ip.take(a).unwrap());
        assert!(per_ip.take(a).is_none());
        assert!(per_ip.take(b).is_some());
        drop(s1);
        assert!(per_ip.take(a).is_some());
        drop(s2);
        assert!(PerIp::new(0).take(a).is_some(), "0 = no cap");
    }
}
