//! The gateway (docs/PROTOCOL.md §20) against real upstreams started by the tests — the
//! hyper upstream of `support::upstream` and a Python `http.server` one: what reaches
//! the upstream, what comes back sealed, identity headers, h2c, the routes table, and
//! the settings refused at start-up. Refusals are in `gateway_refusals.rs`.

use domain::RequestLine;
use hyper::Method;
use session_crypto_client::{Outgoing, Protocol, Session};

use crate::support::upstream::{PythonUpstream, Upstream};
use crate::support::{Server, assert_code, backends, run_to_exit};

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
        let mut s = session(&server, Protocol::V2).await;
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
    let mut a = session(&server, Protocol::V2).await;
    let mut b = session(&server, Protocol::V2).await;
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
        let mut s = session(server, protocol).await;
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
    let mut s = session(&server, Protocol::V2).await;
    let (_, cs) = s.parts();
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
    let mut s = session(&server, Protocol::V2).await;
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
    let v = answer.json().unwrap();
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
    assert_eq!(answer.json().unwrap()["method"], "DELETE");
    python.stop();
}

#[tokio::test]
async fn an_h2c_upstream_and_a_routes_table_with_two_upstreams() {
    let (a, b) = (Upstream::start(), Upstream::start());
    let dir = tempfile_dir("gateway-routes");
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[gateway.routes]]
prefix = "/orders/"
upstream = "{}/v2"
methods = ["GET", "POST"]
http2 = true

[[gateway.routes]]
prefix = "/billing/"
upstream = "{}"
timeout_ms = 5000
"#,
            a.url, b.url
        ),
    )
    .unwrap();
    let server = Server::start(&[("SESSION_CRYPTO_CONFIG", file.to_str().unwrap())]);
    let mut s = session(&server, Protocol::V2).await;
    s.send("POST", "/orders/1", b"{}").await.unwrap();
    let got = a.received().pop().unwrap();
    assert_eq!(got.target, "/v2/1");
    assert_eq!(got.version, hyper::Version::HTTP_2);
    s.send("POST", "/billing/invoices", b"{}").await.unwrap();
    let got = b.received().pop().unwrap();
    assert_eq!(got.target, "/invoices");
    assert_eq!(got.version, hyper::Version::HTTP_11);
    // The first route allows only GET and POST.
    let (client, cs) = s.parts();
    let err = client
        .fetch(
            cs,
            Outgoing {
                method: "PUT",
                path: "/orders/1",
                content_type: None,
                body: b"{}",
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("405"), "{err}");
    assert_eq!(a.count(), 1);
    // Outside both prefixes, and the old default prefix is not served.
    let mut conn = server.connect().await;
    let r = conn.send(Method::POST, "/api/x", &[], "").await.unwrap();
    assert_code(&r, 404, "NOT_FOUND");

    let (code, err) = run_to_exit(
        &["check-config"],
        &[
            ("SESSION_CRYPTO_CONFIG", file.to_str().unwrap()),
            ("GATEWAY_UPSTREAM", "http://127.0.0.1:1"),
            ("GATEWAY_PREFIX", "/orders/v2/"),
            ("CRYPTO_BACKEND", server.crypto.name),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("gateway.routes[0]: prefix /orders/ overlaps /orders/v2/ of GATEWAY_UPSTREAM"),
        "{err}"
    );
}

#[tokio::test]
async fn an_upstream_on_a_unix_socket() {
    let dir = tempfile_dir("gateway-unix");
    let socket = dir.join("orders.sock");
    let _ = std::fs::remove_file(&socket);
    let upstream = Upstream::start_unix(&socket);
    let server = gateway_server(&upstream, &[]);
    let mut s = session(&server, Protocol::V2).await;
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
    let mut s = session(&closed, Protocol::V2).await;
    let err = s.send("POST", "/api/x", b"{}").await.unwrap_err();
    assert!(err.to_string().contains("BAD_GATEWAY"), "{err}");
}

#[test]
fn the_gateway_benchmark_compares_direct_purchase_and_gateway_in_rounds() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let direct = format!("{}/echo", upstream.url);
    let pid = server.pid().to_string();
    let started = std::time::Instant::now();
    let ((code, out), err) = crate::support::run_to_exit_with_stdout(
        &[
            "bench",
            "--url",
            &server.url,
            "--gateway",
            "/api/echo",
            "--direct",
            &direct,
            "-n",
            "100",
            "-c",
            "4",
            "--rounds",
            "2",
            "--warmup",
            "1",
            "--rate",
            "400",
            "--server-pid",
            &pid,
        ],
        &[("CRYPTO_BACKEND", server.crypto.name)],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    // Paced: 2 rounds × 3 phases × 100 requests at 400/s take at least 1.5 s.
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("| 1 |") || l.starts_with("| 2 |"))
        .collect();
    assert_eq!(rows.len(), 6, "{out}");
    for (row, phase) in rows.iter().zip(
        ["direct upstream", "purchase route", "gateway"]
            .iter()
            .cycle(),
    ) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2], *phase, "{row}");
        assert_eq!(
            (cells[3], cells[4]),
            ("100", "0"),
            "{row}: requests, errors"
        );
        let rate: f64 = cells[5].parse().unwrap();
        assert!(rate <= 440.0, "paced to 400/s: {row}");
    }
    assert!(out.contains("Medians over 2 rounds:"), "{out}");
    assert!(
        out.contains("Latency the gateway adds (p50, gateway − direct):"),
        "{out}"
    );
    assert!(
        out.contains("Server CPU per forwarded request ÷ per purchase:"),
        "{out}"
    );
    // 100 direct + warm-up on the upstream, and the gateway's 2 × 100 + warm-up.
    assert!(upstream.count() >= 400, "{}", upstream.count());
}

fn gateway_server_at(upstream: &str) -> Server {
    Server::start(&[("GATEWAY_UPSTREAM", upstream)])
}

#[test]
fn bad_gateway_settings_stop_start_up_naming_the_setting() {
    let backend = crate::support::default_backend().name;
    for (envs, needle) in [
        (
            vec![("GATEWAY_UPSTREAM", "localhost:8080")],
            "GATEWAY_UPSTREAM: upstream \"localhost:8080\"",
        ),
        (
            vec![("GATEWAY_UPSTREAM", "https://api.internal")],
            "GATEWAY_UPSTREAM: upstream \"https://api.internal\": https upstreams are not supported",
        ),
        (
            vec![("GATEWAY_UPSTREAM", "http://x"), ("GATEWAY_PREFIX", "api")],
            "GATEWAY_UPSTREAM: prefix \"api\"",
        ),
        (
            vec![
                ("GATEWAY_UPSTREAM", "http://x"),
                ("GATEWAY_PREFIX", "/session/"),
            ],
            "covers the built-in route /session/init",
        ),
        (
            vec![
                ("GATEWAY_UPSTREAM", "http://x"),
                ("GATEWAY_METHODS", "GET,TRACE"),
            ],
            "method \"TRACE\"",
        ),
    ] {
        let mut envs = envs;
        envs.push(("CRYPTO_BACKEND", backend));
        let (code, err) = run_to_exit(&["serve"], &envs);
        assert_eq!(code, 1, "{envs:?}: {err}");
        assert!(err.contains(needle), "{envs:?}: {err}");
    }
    let dir = tempfile_dir("gateway-bad-file");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[[gateway.routes]]\nprefix = \"/a/\"\nupstream = \"http://x\"\ntimeout = 5\n",
    )
    .unwrap();
    let (code, err) = run_to_exit(
        &["check-config", "--config", file.to_str().unwrap()],
        &[("CRYPTO_BACKEND", backend)],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("gateway.routes") && err.contains("timeout"),
        "{err}"
    );

    // check-config lists the routes.
    let ((code, out), _) = crate::support::run_to_exit_with_stdout(
        &["check-config"],
        &[
            ("GATEWAY_UPSTREAM", "http://127.0.0.1:8080"),
            ("GATEWAY_ALLOW_V1", "true"),
            ("CRYPTO_BACKEND", backend),
        ],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("GATEWAY_UPSTREAM = \"http://127.0.0.1:8080\"  # environment"),
        "{out}"
    );
    assert!(out.contains("# gateway route: /api/ → http://127.0.0.1:8080/ (GET, POST, PUT, PATCH, DELETE; HTTP/1.1"), "{out}");
    assert!(out.contains("v1 allowed; from GATEWAY_UPSTREAM"), "{out}");
}

pub(crate) fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
