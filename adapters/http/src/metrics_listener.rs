//! The admin listener: `GET /metrics` (Prometheus text format) on its own port, off
//! the public one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::wire::{code_error, response};

/// Prometheus text exposition format.
const PROMETHEUS_TEXT: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");

/// Serves `GET /metrics` with the text `render` produces, until `shutdown` completes.
/// Any other request gets a JSON 404 or 405.
pub async fn serve_admin<F, Fut>(
    listener: TcpListener,
    render: F,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = String> + Send,
{
    let render = Arc::new(render);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => return,
        };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let render = Arc::clone(&render);
                async move {
                    let r = match (req.method(), req.uri().path()) {
                        (&Method::GET, "/metrics") => {
                            response(StatusCode::OK, PROMETHEUS_TEXT, Bytes::from(render().await))
                        }
                        (_, "/metrics") => {
                            code_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED")
                        }
                        _ => code_error(StatusCode::NOT_FOUND, "NOT_FOUND"),
                    };
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}
