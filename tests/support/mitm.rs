//! A man in the middle that holds no key: forwards every request to a server and lets a
//! test shape the answer (forward it, change it, or forge one of its own).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use session_crypto_client::HttpResponse;

/// What the attacker does with one exchange: the request (method, path, headers, body)
/// and the server's answer, forwarded or replaced.
pub type Tamper = dyn Fn(&hyper::http::request::Parts, &Bytes, HttpResponse) -> Response<Full<Bytes>>
    + Send
    + Sync;

/// A proxy in front of `server` that forwards every request and lets `tamper` shape the
/// answer. Returns its URL and its task.
pub async fn mitm(server: &str, tamper: Arc<Tamper>) -> (String, tokio::task::JoinHandle<()>) {
    proxy(server, Arc::new(|path: &str| path.to_owned()), tamper).await
}

/// A reverse proxy that mounts `server` at `prefix` and strips it from every path it
/// forwards (a path outside it goes through unchanged, and the server says 404).
/// Returns the URL of the mount (`http://…/<prefix>`).
pub async fn mounted(server: &str, prefix: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    let strip = Arc::new(move |path: &str| {
        path.strip_prefix(prefix)
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(path)
            .to_owned()
    });
    let (url, task) = proxy(server, strip, Arc::new(|_, _, answer| forward(answer))).await;
    (format!("{url}{prefix}"), task)
}

async fn proxy(
    server: &str,
    rewrite: Arc<dyn Fn(&str) -> String + Send + Sync>,
    tamper: Arc<Tamper>,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(server.to_owned());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (server, tamper) = (Arc::clone(&server), Arc::clone(&tamper));
            let rewrite = Arc::clone(&rewrite);
            tokio::spawn(async move {
                let conn = session_crypto_client::Connection::open(
                    &session_crypto_client::Endpoint::parse(&server).unwrap(),
                )
                .await
                .unwrap();
                let conn = Arc::new(tokio::sync::Mutex::new(conn));
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (conn, tamper) = (Arc::clone(&conn), Arc::clone(&tamper));
                        let rewrite = Arc::clone(&rewrite);
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let headers: Vec<(String, String)> = parts
                                .headers
                                .iter()
                                .filter(|(n, _)| *n != "host" && *n != "content-length")
                                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                                .collect();
                            let refs: Vec<(&str, &str)> = headers
                                .iter()
                                .map(|(n, v)| (n.as_str(), v.as_str()))
                                .collect();
                            let path = rewrite(parts.uri.path_and_query().unwrap().as_str());
                            let answer = conn
                                .lock()
                                .await
                                .send(parts.method.clone(), &path, &refs, body.clone())
                                .await
                                .unwrap();
                            Ok::<_, Infallible>(tamper(&parts, &body, answer))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), task)
}

/// The server's answer as it came.
pub fn forward(answer: HttpResponse) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(answer.body));
    *out.status_mut() = answer.status;
    for (n, v) in &answer.headers {
        if n != "content-length" {
            out.headers_mut().insert(n, v.clone());
        }
    }
    out
}
