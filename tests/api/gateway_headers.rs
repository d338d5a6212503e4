//! What reaches the upstream besides the body: client headers that could pass for the
//! gateway's own (`_` names, read as `-` by WSGI/CGI upstreams), override and
//! forwarding headers, the gateway's own `X-Forwarded-*` and `Forwarded`, paths with
//! `;` parameters hiding dot segments, an empty inner content type; and an upstream
//! that answers `101 Switching Protocols`.

use std::io::{Read, Write};

use domain::RequestLine;
use domain::client::{ResponseHead, SealedRequest};
use hyper::Method;
use session_crypto_client::{HttpResponse, Protocol, Session, now_ms};

use crate::gateway::{gateway_server, gateway_server_at, session};
use crate::support::upstream::{PythonUpstream, Upstream};
use crate::support::{Server, assert_code};

/// Sends a v2 POST of `{}` to `target` through the gateway with the protocol's headers
/// and `extra` ones.
async fn post_with(
    server: &Server,
    s: &mut Session,
    target: &str,
    inner_type: &str,
    extra: &[(&str, &str)],
) -> HttpResponse {
    post_sealed_with(server, s, target, inner_type, extra)
        .await
        .0
}

async fn post_sealed_with(
    server: &Server,
    s: &mut Session,
    target: &str,
    inner_type: &str,
    extra: &[(&str, &str)],
) -> (HttpResponse, SealedRequest) {
    let held = s.current();
    let cs = &*held;
    let line = RequestLine {
        method: "POST",
        target,
        content_type: inner_type,
    };
    let sealed = cs.seal(now_ms(), line, b"{}").unwrap();
    let mut headers = vec![
        ("content-type", "application/octet-stream"),
        ("x-kid", cs.kid()),
        ("x-idempotency-key", sealed.idempotency_key.as_str()),
        ("x-clientid", cs.client_id()),
        ("x-inner-content-type", inner_type),
    ];
    headers.extend_from_slice(extra);
    let mut conn = server.connect().await;
    let resp = conn
        .send(Method::POST, target, &headers, sealed.envelope.clone())
        .await
        .unwrap();
    (resp, sealed)
}

/// The sealed answer to `sealed`, opened.
fn open(s: &mut Session, sealed: &SealedRequest, resp: &HttpResponse) -> Vec<u8> {
    let head = ResponseHead {
        status: resp.status.as_u16(),
        idempotency_key: resp.header("x-idempotency-key").unwrap(),
        content_type: resp.header("x-inner-content-type").unwrap_or_default(),
    };
    let window = domain::ReplayPolicy::DEFAULT;
    s.current()
        .open_response(sealed, head, resp.body.to_vec(), now_ms(), &window)
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn underscore_names_cannot_spoof_the_identity_a_wsgi_upstream_reads() {
    let upstream = PythonUpstream::start_script("wsgi_upstream.py");
    let server = gateway_server_at(&upstream.url);
    let mut s = session(&server, Protocol::V2).await;
    let (resp, sealed) = post_sealed_with(
        &server,
        &mut s,
        "/api/whoami",
        "application/json",
        &[
            ("x_session_client_id", "admin"),
            ("x-session_id", "0123456789abcdef0123456789abcdef"),
            ("x_session_protocol", "1"),
            ("x_forwarded_for", "10.9.9.9"),
            ("x_request_id", "forged"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let seen: serde_json::Value = serde_json::from_slice(&open(&mut s, &sealed, &resp)).unwrap();
    // Exactly the gateway's values: no client copy folded into them.
    assert_eq!(seen["HTTP_X_SESSION_CLIENT_ID"], "GATEWAY_APP", "{seen}");
    assert_eq!(seen["HTTP_X_SESSION_PROTOCOL"], "2", "{seen}");
    let id = seen["HTTP_X_SESSION_ID"].as_str().unwrap();
    assert!(id.len() == 32 && !id.contains(','), "{seen}");
    assert_ne!(id, "0123456789abcdef0123456789abcdef");
    assert_eq!(seen["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "{seen}");
    assert!(
        !seen["HTTP_X_REQUEST_ID"]
            .as_str()
            .unwrap()
            .contains("forged")
    );
}

#[tokio::test]
async fn override_and_forwarding_headers_are_dropped_and_the_gateway_names_the_client() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let mut s = session(&server, Protocol::V2).await;
    let client_headers = [
        ("x-http-method-override", "DELETE"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=10.0.0.1;host=evil.example"),
        ("x-real-ip", "10.0.0.1"),
        ("proxy-authorization", "Basic eDp5"),
        ("accept", "application/json"),
    ];
    let resp = post_with(
        &server,
        &mut s,
        "/api/orders",
        "application/json",
        &client_headers,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let got = upstream.received().pop().unwrap();
    for gone in [
        "x-http-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-host",
        "x-real-ip",
        "proxy-authorization",
    ] {
        assert!(got.header(gone).is_none(), "{gone} reached the upstream");
    }
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(got.headers.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    assert_eq!(got.header("forwarded"), Some("for=127.0.0.1;proto=http"));
    assert_eq!(got.header("accept"), Some("application/json"));

    // A route that lists one passes it on.
    let passing = gateway_server(&upstream, &[("GATEWAY_PASS_HEADERS", "X-Forwarded-Host")]);
    let mut s = session(&passing, Protocol::V2).await;
    post_with(
        &passing,
        &mut s,
        "/api/orders",
        "application/json",
        &client_headers,
    )
    .await;
    let got = upstream.received().pop().unwrap();
    assert_eq!(got.header("x-forwarded-host"), Some("evil.example"));
    assert!(got.header("x-http-method-override").is_none());
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn dot_segments_behind_path_parameters_never_reach_the_upstream() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let mut s = session(&server, Protocol::V2).await;
    for target in [
        "/api/..;/admin",
        "/api/%2e%2e;/admin",
        "/api/..;jsessionid=x/admin",
        "/api/..%3B/admin",
    ] {
        let resp = post_with(&server, &mut s, target, "application/json", &[]).await;
        assert_code(&resp, 400, "INVALID_PATH");
    }
    assert_eq!(upstream.count(), 0, "a refused path reached the upstream");
    // A parameter on an ordinary segment goes through as sent.
    let resp = post_with(&server, &mut s, "/api/orders;v=2", "application/json", &[]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(upstream.received().pop().unwrap().target, "/orders;v=2");
}

#[tokio::test]
async fn an_empty_inner_content_type_is_absent_and_the_default_goes_upstream() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let mut s = session(&server, Protocol::V2).await;
    let resp = post_with(&server, &mut s, "/api/orders", "", &[]).await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let got = upstream.received().pop().unwrap();
    assert_eq!(got.header("content-type"), Some("application/json"));
}

/// A raw upstream that answers every request with `101 Switching Protocols`.
fn switching_upstream() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_upstream_that_switches_protocols_is_a_bad_gateway() {
    let server = gateway_server_at(&switching_upstream());
    let mut s = session(&server, Protocol::V2).await;
    let resp = post_with(&server, &mut s, "/api/ws", "application/json", &[]).await;
    assert_code(&resp, 502, "BAD_GATEWAY");
    assert!(
        resp.header("x-kid").is_none(),
        "a 101 came back sealed-looking"
    );
}

/// A raw HTTP/1.1 upstream that answers the first request on each connection (keeping
/// it open) and, on the next one, reads it and closes the connection without answering —
/// a pooled connection that turns out stale. Counts the requests it read.
fn stale_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let counter = std::sync::Arc::clone(&counter);
            std::thread::spawn(move || {
                let read_request = |stream: &mut std::net::TcpStream| {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).unwrap_or(0) == 0 {
                            return false;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    let _ = stream.read_exact(&mut body);
                    counter.fetch_add(1, Ordering::SeqCst);
                    true
                };
                if read_request(&mut stream) {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                    );
                }
                // The next request on this connection is read and never answered.
                read_request(&mut stream);
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn an_idempotent_request_on_a_stale_pooled_connection_is_sent_again_once() {
    use std::sync::atomic::Ordering;
    let (url, seen) = stale_upstream();
    let server = gateway_server_at(&url);
    let s = session(&server, Protocol::V2).await;
    s.send("GET", "/api/a", b"").await.unwrap();
    // The pooled connection is stale: the GET is sent again on a new one.
    let answer = s.send("GET", "/api/b", b"").await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "first, the lost one, the retry"
    );
    // A POST on a stale connection may have run: it is not sent again.
    let before = seen.load(Ordering::SeqCst);
    let err = s.send("POST", "/api/c", b"{}").await.unwrap_err();
    assert!(err.to_string().contains("BAD_GATEWAY"), "{err}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        before + 1,
        "the POST went up once"
    );
}
