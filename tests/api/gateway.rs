//! The gateway (docs/PROTOCOL.md §20) against real upstreams started by the tests — the
//! hyper upstream of `support::upstream` and a Python `http.server` one: what reaches
//! the upstream, what comes back sealed, identity headers, a Unix-socket upstream.
//! Refusals are in `gateway_refusals.rs`, the settings and the benchmark in
//! `gateway_config.rs`.

use domain::RequestLine;
use hyper::Method;
use session_crypto_client::{Protocol, Session};

use crate::support::upstream::{PythonUpstream, Upstream};
use crate::support::{Server, backends};

pub(crate) fn gateway_server(upstream: &Upstream, extra: &[(&str, &str)]) -> Server {
    let mut envs = vec![("GATEWAY_UPSTREAM", upstream.url.as_str())];
    envs.extend_from_slice(extra);
    Server::start(&envs)
}

pub(crate) async fn session(server: &Server, protocol: Protocol) -> Session {
    Session::builder(&server.url, "GATEWAY_APP")
        .crypto(server.crypto)
        .protocol(protocol)
        .connect()
        .await
        .unwrap()
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn the_upstream_gets_the_plaintext_method_path_query_type_and_identity_on_every_backend() {
    let upstream = Upstream::start();
    for crypto in backends() {
        let server = Server::start_with(crypto, &[("GATEWAY_UPSTREAM", &upstream.url)]);
        let s = session(&server, Protocol::V2).await;
        let body = b"{\"item\":\"book\",\"qty\":2}\n\x00binary\xff";
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let before = upstream.count();
            let answer = s
                .fetch(
                    method,
                    "/api/orders/17?expand=lines&q=a%20b",
                    Some("application/x-custom; v=1"),
                    body,
                )
                .await
                .unwrap_or_else(|e| panic!("{} {method}: {e}", crypto.name));
            let got = upstream.last_since(before);
            assert_eq!(got.method, method);
            assert_eq!(got.target, "/orders/17?expand=lines&q=a%20b");
            assert_eq!(got.body, body, "the plaintext, byte for byte");
            assert_eq!(
                got.header("content-type"),
                Some("application/x-custom; v=1")
            );
            assert_eq!(got.header("x-session-client-id"), Some("GATEWAY_APP"));
            assert_eq!(got.header("x-session-protocol"), Some("2"));
            let hash = got.header("x-session-id").unwrap();
            assert!(is_hex32(hash), "{hash}");
            assert!(!s.kid().contains(hash));
            for protocol_header in [
                "x-kid",
                "x-idempotency-key",
                "x-clientid",
                "x-inner-content-type",
            ] {
                assert!(
                    got.header(protocol_header).is_none(),
                    "{protocol_header} forwarded"
                );
            }
            // The upstream's answer, opened by the client.
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.content_type(), "application/json");
            assert_eq!(
                answer.text().unwrap(),
                format!("{{\"echo\":{}}}", before + 1)
            );
        }
        // A GET carries its envelope in X-Envelope; the upstream sees no body.
        let before = upstream.count();
        let answer = s
            .fetch("GET", "/api/orders?page=2", None, b"")
            .await
            .unwrap();
        let got = upstream.last_since(before);
        assert_eq!(
            (got.method.as_str(), got.target.as_str()),
            ("GET", "/orders?page=2")
        );
        assert!(got.body.is_empty());
        assert!(got.header("x-envelope").is_none());
        assert_eq!(
            got.header("content-type"),
            Some("application/json"),
            "the default"
        );
        assert_eq!(answer.status(), 200);
    }
}

#[tokio::test]
async fn the_session_hash_is_stable_for_a_session_and_differs_between_sessions() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let a = session(&server, Protocol::V2).await;
    let b = session(&server, Protocol::V2).await;
    let hash = |n: usize| {
        upstream.received()[n]
            .header("x-session-id")
            .unwrap()
            .to_owned()
    };
    a.send("POST", "/api/x", b"{}").await.unwrap();
    a.send("POST", "/api/y", b"{}").await.unwrap();
    b.send("POST", "/api/x", b"{}").await.unwrap();
    assert_eq!(hash(0), hash(1));
    assert_ne!(hash(0), hash(2));
}

#[tokio::test]
async fn upstream_statuses_and_content_types_round_trip_sealed() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    for protocol in [Protocol::V2, Protocol::V1] {
        let extra: &[(&str, &str)] = &[("GATEWAY_ALLOW_V1", "true")];
        let v1_server;
        let server = if protocol == Protocol::V1 {
            v1_server = gateway_server(&upstream, extra);
            &v1_server
        } else {
            &server
        };
        let s = session(server, protocol).await;
        for code in [200u16, 201, 404, 500, 503] {
            let answer = s
                .send("POST", &format!("/api/status/{code}"), b"{}")
                .await
                .unwrap();
            assert_eq!(answer.status(), code, "{protocol:?}");
            assert_eq!(answer.text().unwrap(), format!("{{\"status\":{code}}}"));
            assert_eq!(answer.content_type(), "application/json");
        }
        // Statuses that cannot carry a body on the wire travel in X-Inner-Status.
        for code in [204u16, 304] {
            let answer = s
                .send("GET", &format!("/api/status/{code}"), b"")
                .await
                .unwrap();
            assert_eq!(answer.status(), code, "{protocol:?}");
            assert!(answer.bytes().is_empty());
            assert_eq!(answer.content_type(), "");
        }
        let answer = s
            .send("POST", "/api/type/image/svg+xml", b"")
            .await
            .unwrap();
        assert_eq!(answer.content_type(), "image/svg+xml");
        assert_eq!(answer.bytes(), b"typed");
    }
}

#[tokio::test]
async fn request_ids_are_propagated_and_spoofed_identity_and_hop_by_hop_headers_dropped() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[("ADMIN_PORT", "0")]);
    let s = session(&server, Protocol::V2).await;
    let held = s.current();
    let cs = &*held;
    let line = RequestLine {
        method: "POST",
        target: "/api/whoami",
        content_type: "application/json",
    };
    let sealed = cs
        .seal(session_crypto_client::now_ms(), line, b"{}")
        .unwrap();
    let mut conn = server.connect().await;
    let resp = conn
        .send(
            Method::POST,
            "/api/whoami",
            &[
                ("content-type", "application/octet-stream"),
                ("x-kid", cs.kid()),
                ("x-idempotency-key", &sealed.idempotency_key),
                ("x-clientid", cs.client_id()),
                ("x-inner-content-type", "application/json"),
                ("x-request-id", "req-gw-42"),
                ("x-session-client-id", "admin"),
                ("x-session-id", "0123456789abcdef0123456789abcdef"),
                ("x-session-protocol", "1"),
                ("x-session-role", "root"),
                ("connection", "keep-alive, x-secret-hop"),
                ("x-secret-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("accept", "application/json"),
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            ],
            sealed.envelope.clone(),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.header("x-request-id"), Some("req-gw-42"));
    assert!(
        resp.header("x-upstream-secret").is_none(),
        "upstream headers are not passed on"
    );
    let timing = resp.header("server-timing").unwrap();
    assert!(timing.contains("upstream;dur="), "{timing}");
    let got = upstream.received().pop().unwrap();
    assert_eq!(got.header("x-request-id"), Some("req-gw-42"));
    assert_eq!(got.header("x-session-client-id"), Some("GATEWAY_APP"));
    assert_eq!(got.header("x-session-protocol"), Some("2"));
    assert_ne!(
        got.header("x-session-id"),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(got.headers.get_all("x-session-client-id").iter().count(), 1);
    for gone in ["x-session-role", "x-secret-hop", "keep-alive"] {
        assert!(got.header(gone).is_none(), "{gone} reached the upstream");
    }
    assert_eq!(got.header("accept"), Some("application/json"));
    assert!(got.header("traceparent").is_some());

    // The metrics count it per route, with the upstream's latency.
    let metrics = server.metrics().await;
    assert!(
        metrics
            .contains(r#"session_crypto_gateway_forwarded_total{route="/api/",outcome="2xx"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"session_crypto_gateway_upstream_duration_seconds_count{route="/api/"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_python_upstream_behind_the_gateway() {
    let mut python = PythonUpstream::start();
    let server = Server::start(&[
        ("GATEWAY_UPSTREAM", &python.url),
        ("GATEWAY_PREFIX", "/py/"),
    ]);
    let s = session(&server, Protocol::V2).await;
    let answer = s
        .fetch(
            "PUT",
            "/py/items/9?x=1",
            Some("text/plain; charset=utf-8"),
            "héllo".as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.content_type(), "application/json; charset=utf-8");
    let v = answer.json::<serde_json::Value>().unwrap();
    assert_eq!(v["server"], "python");
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["target"], "/items/9?x=1");
    assert_eq!(v["body"], crate::support::b64("héllo".as_bytes()));
    assert_eq!(v["headers"]["content-type"], "text/plain; charset=utf-8");
    assert_eq!(v["headers"]["x-session-client-id"], "GATEWAY_APP");
    assert_eq!(v["headers"]["x-session-protocol"], "2");
    assert!(is_hex32(v["headers"]["x-session-id"].as_str().unwrap()));
    let answer = s.send("DELETE", "/py/status/404", b"").await.unwrap();
    assert_eq!(answer.status(), 404);
    assert_eq!(
        answer.json::<serde_json::Value>().unwrap()["method"],
        "DELETE"
    );
    python.stop();
}

#[tokio::test]
async fn connections_the_upstream_closed_while_idle_are_not_reused() {
    let upstream = Upstream::start_closing_idle_after(std::time::Duration::from_millis(150));
    let server = gateway_server(&upstream, &[]);
    let s = session(&server, Protocol::V2).await;
    for i in 0..6 {
        let answer = s.send("POST", "/api/orders", b"{}").await;
        assert_eq!(answer.map(|a| a.status()).ok(), Some(200), "request {i}");
        // Longer than the upstream keeps an idle connection, every other time.
        let pause = if i % 2 == 0 { 400 } else { 20 };
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    }
    assert_eq!(upstream.count(), 6);
}

#[tokio::test]
async fn an_upstream_on_a_unix_socket() {
    let dir = tempfile_dir("gateway-unix");
    let socket = dir.join("orders.sock");
    let _ = std::fs::remove_file(&socket);
    let upstream = Upstream::start_unix(&socket);
    let server = gateway_server(&upstream, &[]);
    let s = session(&server, Protocol::V2).await;
    let answer = s
        .fetch(
            "POST",
            "/api/orders?x=1",
            Some("text/plain"),
            b"over a socket",
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let got = upstream.received().pop().unwrap();
    assert_eq!(
        (got.method.as_str(), got.target.as_str()),
        ("POST", "/orders?x=1")
    );
    assert_eq!(got.body, b"over a socket");
    assert_eq!(got.header("host"), Some("localhost"));
    assert_eq!(got.header("x-session-client-id"), Some("GATEWAY_APP"));
    // Several requests reuse the connection; a socket nobody listens on is a 502.
    for _ in 0..3 {
        assert_eq!(
            s.send("GET", "/api/status/201", b"")
                .await
                .unwrap()
                .status(),
            201
        );
    }
    let closed = gateway_server_at(&format!("unix:{}", dir.join("nobody.sock").display()));
    let s = session(&closed, Protocol::V2).await;
    let err = s.send("POST", "/api/x", b"{}").await.unwrap_err();
    assert!(err.to_string().contains("BAD_GATEWAY"), "{err}");
}

pub(crate) fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn gateway_server_at(upstream: &str) -> Server {
    Server::start(&[("GATEWAY_UPSTREAM", upstream)])
}
