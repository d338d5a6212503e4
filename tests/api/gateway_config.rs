//! The gateway's settings — a routes table with two upstreams (one h2c), the settings
//! refused at start-up naming the setting, `check-config`'s listing — and
//! `session-crypto bench --gateway`.

use hyper::Method;
use session_crypto_client::{Outgoing, Protocol};

use crate::gateway::{gateway_server, session, tempfile_dir};
use crate::support::upstream::Upstream;
use crate::support::{Server, assert_code, run_to_exit};

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
    let s = session(&server, Protocol::V2).await;
    s.send("POST", "/orders/1", b"{}").await.unwrap();
    let got = a.received().pop().unwrap();
    assert_eq!(got.target, "/v2/1");
    assert_eq!(got.version, hyper::Version::HTTP_2);
    s.send("POST", "/billing/invoices", b"{}").await.unwrap();
    let got = b.received().pop().unwrap();
    assert_eq!(got.target, "/invoices");
    assert_eq!(got.version, hyper::Version::HTTP_11);
    // The first route allows only GET and POST.
    let (mut client, cs) = (s.protocol_client().await.unwrap(), s.current());
    let err = client
        .fetch(
            &cs,
            Outgoing {
                call_key: None,
                method: "PUT",
                path: "/orders/1",
                content_type: None,
                body: b"{}",
                headers: &[],
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

#[test]
fn bad_gateway_settings_stop_start_up_naming_the_setting() {
    let backend = crate::support::default_backend().name;
    for (envs, needle) in [
        (
            vec![("GATEWAY_UPSTREAM", "localhost:8080")],
            "GATEWAY_UPSTREAM: upstream \"localhost:8080\"",
        ),
        (
            // https upstreams are served over HTTP/1.1 (issue 27); h2c is plain text.
            vec![
                ("GATEWAY_UPSTREAM", "https://api.internal"),
                ("GATEWAY_HTTP2", "true"),
            ],
            "GATEWAY_UPSTREAM: http2 (h2c) is only supported to http:// upstreams",
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
