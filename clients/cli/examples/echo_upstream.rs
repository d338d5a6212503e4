//! An upstream service for trying and measuring the gateway: answers every request 200
//! with the request's own body and content type (HTTP/1.1 and h2c, keep-alive).
//!
//!     cargo run --release --example echo_upstream -- [PORT=9000 | unix:/path] [THREADS=1]
//!
//! Then `GATEWAY_UPSTREAM=http://127.0.0.1:9000 cargo run --release` forwards
//! `/api/<anything>` to it, and `session-crypto bench --gateway /api/echo --direct
//! http://127.0.0.1:9000/echo` compares the two.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let content_type = req.headers().get("content-type").cloned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut resp = Response::new(Full::new(body));
    if let Some(ct) = content_type {
        resp.headers_mut().insert("content-type", ct);
    }
    Ok(resp)
}

async fn serve<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), hyper::service::service_fn(echo))
        .await;
}

fn main() {
    let mut args = std::env::args().skip(1);
    let at = args.next().unwrap_or_else(|| "9000".to_owned());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        if let Some(path) = at.strip_prefix("unix:") {
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path).expect("bind");
            println!("listening on unix:{path}");
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream));
                }
            }
        }
        let port: u16 = at.parse().expect("a port or unix:<path>");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        println!(
            "listening on http://{}",
            listener.local_addr().expect("addr")
        );
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream));
            }
        }
    });
}
