//! What the gateway refuses, and that a refused request never reaches the upstream:
//! replays, re-targeting, tampering, ended sessions, another client id, v1 sessions
//! where not allowed, paths leaving the route, methods and sizes; and the upstream's
//! own failures — down (502), slow (504), too large (502) — within their timeouts,
//! while the other routes keep serving.

use std::time::{Duration, Instant};

use domain::RequestLine;
use domain::client::{ClientSession, SealedRequest};
use hyper::Method;
use session_crypto_client::{HttpResponse, Protocol, now_ms};

use crate::gateway::{gateway_server, session};
use crate::support::upstream::Upstream;
use crate::support::{Server, assert_code};

fn seal(cs: &ClientSession, method: &str, target: &str, body: &[u8]) -> SealedRequest {
    let line = RequestLine {
        method,
        target,
        content_type: "",
    };
    cs.seal(now_ms(), line, body).unwrap()
}

/// Sends `sealed` as `method target`, with the session's headers unless overridden.
async fn send(
    server: &Server,
    cs: &ClientSession,
    method: &str,
    target: &str,
    sealed: &SealedRequest,
    client_id: Option<&str>,
) -> HttpResponse {
    let client_id = client_id.unwrap_or(cs.client_id());
    send_as(server, cs.kid(), client_id, method, target, sealed).await
}

async fn send_as(
    server: &Server,
    kid: &str,
    client_id: &str,
    method: &str,
    target: &str,
    sealed: &SealedRequest,
) -> HttpResponse {
    let mut conn = server.connect().await;
    let envelope = sealed.envelope.clone();
    let (body, header) = if method == "GET" {
        (Vec::new(), Some(crate::support::b64(&envelope)))
    } else {
        (envelope, None)
    };
    let mut headers = vec![
        ("content-type", "application/octet-stream"),
        ("x-kid", kid),
        ("x-idempotency-key", sealed.idempotency_key.as_str()),
        ("x-clientid", client_id),
    ];
    if let Some(h) = &header {
        headers.push(("x-envelope", h));
    }
    conn.send(
        Method::from_bytes(method.as_bytes()).unwrap(),
        target,
        &headers,
        body,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn replayed_retargeted_tampered_and_misowned_requests_never_reach_the_upstream() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let s = session(&server, Protocol::V2).await;
    let held = s.current();
    let cs = &*held;

    let sealed = seal(cs, "POST", "/api/orders", b"{\"n\":1}");
    let first = send(&server, cs, "POST", "/api/orders", &sealed, None).await;
    assert_eq!(first.status, 200);
    assert_eq!(upstream.count(), 1);
    // The same request again: a replay.
    let again = send(&server, cs, "POST", "/api/orders", &sealed, None).await;
    assert_code(&again, 400, "CRYPTO_ERROR");

    // Captured for one path, method or query, sent to another.
    for (method, target) in [
        ("POST", "/api/admin/delete-all"),
        ("PUT", "/api/orders"),
        ("POST", "/api/orders?dry_run=false"),
    ] {
        let sealed = seal(cs, "POST", "/api/orders", b"{}");
        let r = send(&server, cs, method, target, &sealed, None).await;
        assert_code(&r, 400, "CRYPTO_ERROR");
        // …and the victim's own request still goes through: its nonce was not used up.
        let r = send(&server, cs, "POST", "/api/orders", &sealed, None).await;
        assert_eq!(r.status, 200, "{method} {target}");
    }
    let forwarded = upstream.count();

    // A flipped byte.
    let mut tampered = seal(cs, "POST", "/api/orders", b"{}");
    let last = tampered.envelope.len() - 1;
    tampered.envelope[last] ^= 1;
    let r = send(&server, cs, "POST", "/api/orders", &tampered, None).await;
    assert_code(&r, 400, "CRYPTO_ERROR");
    // Another client id.
    let sealed = seal(cs, "POST", "/api/orders", b"{}");
    let r = send(&server, cs, "POST", "/api/orders", &sealed, Some("MALLORY")).await;
    assert_code(&r, 400, "CRYPTO_ERROR");
    // Outside the window.
    let line = RequestLine {
        method: "POST",
        target: "/api/orders",
        content_type: "",
    };
    let stale = cs.seal(now_ms() - 600_000, line, b"{}").unwrap();
    let r = send(&server, cs, "POST", "/api/orders", &stale, None).await;
    assert_code(&r, 400, "CRYPTO_ERROR");
    assert_eq!(
        upstream.count(),
        forwarded,
        "nothing refused reached the upstream"
    );

    // An ended session.
    let kept = seal(cs, "POST", "/api/orders", b"{}");
    let (kid, client) = (cs.kid().to_owned(), cs.client_id().to_owned());
    s.revoke().await.unwrap();
    let r = send_as(&server, &kid, &client, "POST", "/api/orders", &kept).await;
    assert_code(&r, 401, "SESSION_EXPIRED");
    assert_eq!(upstream.count(), forwarded);
}

#[tokio::test]
async fn v1_sessions_are_refused_unless_the_route_allows_them() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let v1 = session(&server, Protocol::V1).await;
    let err = v1.send("POST", "/api/orders", b"{}").await.unwrap_err();
    assert!(err.to_string().contains("UNSUPPORTED_PROTOCOL"), "{err}");
    assert_eq!(upstream.count(), 0);
    // The purchase route still serves v1 on this server.
    assert_eq!(
        v1.send(
            "POST",
            "/transaction/purchase",
            br#"{"schemeCode":"AEF","amount":1}"#
        )
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap()["status"],
        "SUCCESS"
    );
    let allowing = gateway_server(&upstream, &[("GATEWAY_ALLOW_V1", "true")]);
    let v1 = session(&allowing, Protocol::V1).await;
    v1.send("POST", "/api/orders", b"{}").await.unwrap();
    let got = upstream.received().pop().unwrap();
    assert_eq!(got.header("x-session-protocol"), Some("1"));
}

#[tokio::test]
async fn paths_leaving_the_route_methods_and_sizes_are_refused_before_the_upstream() {
    let upstream = Upstream::start();
    let server = gateway_server(
        &upstream,
        &[
            ("GATEWAY_METHODS", "GET,POST"),
            ("GATEWAY_BODY_LIMIT_BYTES", "4096"),
        ],
    );
    let s = session(&server, Protocol::V2).await;
    let held = s.current();
    let cs = &*held;
    for target in [
        "/api/../admin",
        "/api/a/%2e%2e/%2E%2e/admin",
        "/api/a%2Fb",
        "/api//x",
    ] {
        let sealed = seal(cs, "POST", target, b"{}");
        let r = send(&server, cs, "POST", target, &sealed, None).await;
        assert_code(&r, 400, "INVALID_PATH");
    }
    let sealed = seal(cs, "DELETE", "/api/orders/1", b"");
    let r = send(&server, cs, "DELETE", "/api/orders/1", &sealed, None).await;
    assert_code(&r, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("GET, POST"));
    // A request envelope over the route's limit.
    let sealed = seal(cs, "POST", "/api/orders", &vec![b'a'; 5000]);
    let r = send(&server, cs, "POST", "/api/orders", &sealed, None).await;
    assert_code(&r, 413, "PAYLOAD_TOO_LARGE");
    // A GET with a body instead of X-Envelope.
    let sealed = seal(cs, "GET", "/api/orders", b"");
    let mut conn = server.connect().await;
    let r = conn
        .send(
            Method::GET,
            "/api/orders",
            &[
                ("x-kid", cs.kid()),
                ("x-idempotency-key", sealed.idempotency_key.as_str()),
                ("x-clientid", cs.client_id()),
            ],
            sealed.envelope.clone(),
        )
        .await
        .unwrap();
    assert_code(&r, 400, "CRYPTO_ERROR");
    assert_eq!(upstream.count(), 0);
    // The preflight names the route's methods.
    let r = conn
        .send(
            Method::OPTIONS,
            "/api/orders",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, POST, OPTIONS")
    );
    assert!(
        r.header("access-control-allow-headers")
            .unwrap()
            .contains("X-Envelope")
    );
    // An answer over the limit is the gateway's 502; its nonce is the only one used.
    let answer = s.send("POST", "/api/big/4096", b"").await.unwrap();
    assert_eq!(answer.bytes().len(), 4096);
    let err = s.send("POST", "/api/big/4097", b"").await.unwrap_err();
    assert!(
        err.to_string().contains("502") && err.to_string().contains("BAD_GATEWAY"),
        "{err}"
    );
}

#[tokio::test]
async fn an_upstream_down_is_502_and_a_slow_one_504_within_the_timeout() {
    let upstream = Upstream::start();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = crate::gateway::tempfile_dir("gateway-faults");
    let file = dir.join("routes.toml");
    std::fs::write(
        &file,
        format!(
            "[[gateway.routes]]\nprefix = \"/down/\"\nupstream = \"{down}\"\n\n\
             [[gateway.routes]]\nprefix = \"/slow/\"\nupstream = \"{}\"\ntimeout_ms = 500\n\n\
             [[gateway.routes]]\nprefix = \"/api/\"\nupstream = \"{}\"\n",
            upstream.url, upstream.url
        ),
    )
    .unwrap();
    let server = Server::start(&[
        ("SESSION_CRYPTO_CONFIG", file.to_str().unwrap()),
        ("ADMIN_PORT", "0"),
    ]);
    let s = session(&server, Protocol::V2).await;
    let held = s.current();
    let cs = &*held;

    let sealed = seal(cs, "POST", "/down/x", b"{}");
    let t = Instant::now();
    let r = send(&server, cs, "POST", "/down/x", &sealed, None).await;
    assert_code(&r, 502, "BAD_GATEWAY");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The request's nonce was used (it was forwarded, or tried): a retry is a new request.
    let r = send(&server, cs, "POST", "/down/x", &sealed, None).await;
    assert_code(&r, 400, "CRYPTO_ERROR");

    // A slow upstream: 504 after the route's 500 ms, while other requests are served.
    let slow = seal(cs, "POST", "/slow/slow/3000", b"{}");
    let (server_ref, cs_ref) = (&server, cs);
    let pending = async move {
        let t = Instant::now();
        let r = send(server_ref, cs_ref, "POST", "/slow/slow/3000", &slow, None).await;
        (r, t.elapsed())
    };
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sealed = seal(cs_ref, "POST", "/api/fast", b"{}");
        let t = Instant::now();
        let r = send(server_ref, cs_ref, "POST", "/api/fast", &sealed, None).await;
        (r.status, t.elapsed())
    };
    let ((slow_resp, slow_took), (fast_status, fast_took)) = tokio::join!(pending, meanwhile);
    assert_code(&slow_resp, 504, "GATEWAY_TIMEOUT");
    assert!(
        slow_took >= Duration::from_millis(500) && slow_took < Duration::from_millis(2500),
        "{slow_took:?}"
    );
    assert_eq!(fast_status, 200);
    assert!(fast_took < Duration::from_millis(400), "{fast_took:?}");
    assert_eq!(
        s.send(
            "POST",
            "/transaction/purchase",
            br#"{"schemeCode":"AEF","amount":1}"#
        )
        .await
        .unwrap()
        .status(),
        200
    );
    let metrics = server.metrics().await;
    for needle in [
        r#"session_crypto_gateway_forwarded_total{route="/down/",outcome="unreachable"} 1"#,
        r#"session_crypto_gateway_forwarded_total{route="/slow/",outcome="timeout"} 1"#,
    ] {
        assert!(metrics.contains(needle), "{needle}\n{metrics}");
    }
}
