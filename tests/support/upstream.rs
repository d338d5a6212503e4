//! An upstream service for the gateway tests: a small hyper server (HTTP/1.1 and h2c)
//! on a free loopback port, on its own thread and runtime, that records every request
//! it receives and answers by path:
//!
//! - `/status/<code>`: that status, body `{"status":<code>}` (none for 204/304);
//! - `/slow/<ms>`: waits, then 200 `slow`;
//! - `/big/<bytes>`: 200 with that many `x`;
//! - `/type/<a>/<b>`: 200 with content type `<a>/<b>` and body `typed`;
//! - anything else: 200 `application/json` `{"echo":<n>}` with the request count.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub version: hyper::Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The running upstream; stops with the test process.
pub struct Upstream {
    pub url: String,
    /// The TCP address (none on a Unix socket).
    pub addr: Option<SocketAddr>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Upstream {
    pub fn start() -> Self {
        Self::start_at(None, None)
    }

    /// The same service on a Unix domain socket at `path` (`url` is `unix:<path>`).
    pub fn start_unix(path: &std::path::Path) -> Self {
        Self::start_at(Some(path.to_owned()), None)
    }

    /// The same service closing every keep-alive connection left idle for `idle` (as
    /// Node's default 5 s `keepAliveTimeout` does).
    pub fn start_closing_idle_after(idle: Duration) -> Self {
        Self::start_at(None, Some(idle))
    }

    fn start_at(unix: Option<std::path::PathBuf>, idle: Option<Duration>) -> Self {
        let unix_url = unix.as_ref().map(|p| format!("unix:{}", p.display()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Some(path) = unix {
                    let listener = tokio::net::UnixListener::bind(&path).unwrap();
                    tx.send(None).unwrap();
                    loop {
                        if let Ok((stream, _)) = listener.accept().await {
                            tokio::spawn(serve(stream, Arc::clone(&log), idle));
                        }
                    }
                }
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(Some(listener.local_addr().unwrap())).unwrap();
                loop {
                    if let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(serve(stream, Arc::clone(&log), idle));
                    }
                }
            });
        });
        let addr = rx.recv().unwrap();
        Self {
            url: match addr {
                Some(addr) => format!("http://{addr}"),
                None => unix_url.unwrap_or_default(),
            },
            addr,
            received,
        }
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The only request received since the count was `before`.
    pub fn last_since(&self, before: usize) -> Received {
        let all = self.received();
        assert_eq!(
            all.len(),
            before + 1,
            "expected exactly one new upstream request"
        );
        all[before].clone()
    }
}

async fn serve<S>(stream: S, log: Arc<Mutex<Vec<Received>>>, idle: Option<Duration>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| answer(Arc::clone(&log), req));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if let Some(idle) = idle {
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(idle);
    }
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn answer(
    log: Arc<Mutex<Vec<Received>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let n = {
        let mut log = log.lock().unwrap();
        log.push(Received {
            method: parts.method.to_string(),
            target: target.clone(),
            version: parts.version,
            headers: parts.headers,
            body,
        });
        log.len()
    };
    let path = parts.uri.path();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let reply = |status: u16, content_type: Option<&str>, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(ct) = content_type {
            r.headers_mut().insert("content-type", ct.parse().unwrap());
        }
        // An upstream's own headers, which the gateway does not pass on.
        r.headers_mut()
            .insert("x-upstream-secret", "internal".parse().unwrap());
        Ok(r)
    };
    match segments.as_slice() {
        ["status", code] => {
            let code: u16 = code.parse().unwrap_or(400);
            if code == 204 || code == 304 {
                reply(code, None, Vec::new())
            } else {
                reply(
                    code,
                    Some("application/json"),
                    format!("{{\"status\":{code}}}").into_bytes(),
                )
            }
        }
        ["slow", ms] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            reply(200, Some("text/plain"), b"slow".to_vec())
        }
        ["big", bytes] => reply(
            200,
            Some("application/octet-stream"),
            vec![b'x'; bytes.parse().unwrap_or(0)],
        ),
        ["type", a, b] => reply(200, Some(&format!("{a}/{b}")), b"typed".to_vec()),
        _ => reply(
            200,
            Some("application/json"),
            format!("{{\"echo\":{n}}}").into_bytes(),
        ),
    }
}

/// `tests/gateway/upstream.py` (http.server), or another script of that folder, on a
/// free port.
pub struct PythonUpstream {
    child: Child,
    pub url: String,
}

impl PythonUpstream {
    pub fn start() -> Self {
        Self::start_script("upstream.py")
    }

    /// `tests/gateway/<script>`, which prints `listening <port>` once bound.
    pub fn start_script(script: &str) -> Self {
        let script = format!("{}/../tests/gateway/{script}", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().strip_prefix("listening ").expect("port line");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PythonUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}
