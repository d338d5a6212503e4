//! Prometheus metrics on the admin listener and JSON logs with request ids.

use hyper::Method;

use crate::helpers::*;
use crate::support::*;

#[tokio::test]
async fn metrics_on_the_admin_listener_count_requests_rejections_and_sessions() {
    let server = Server::start(&[("ADMIN_PORT", "0")]);
    let (mut client, session) = established(&server, "C").await;
    client.purchase(&session, PAYLOAD).await.unwrap();
    // A replay, a forged envelope and an unknown route.
    let sealed = session.seal_request(now(), PAYLOAD).unwrap();
    let headers = purchase_headers(session.kid(), &sealed.idempotency_key, "C");
    let conn = client.connection();
    for _ in 0..2 {
        conn.send(
            Method::POST,
            "/transaction/purchase",
            &headers,
            sealed.envelope.clone(),
        )
        .await
        .unwrap();
    }
    let mut forged = session.seal_request(now(), PAYLOAD).unwrap();
    *forged.envelope.last_mut().unwrap() ^= 1;
    let headers = purchase_headers(session.kid(), &forged.idempotency_key, "C");
    conn.send(
        Method::POST,
        "/transaction/purchase",
        &headers,
        forged.envelope,
    )
    .await
    .unwrap();
    conn.send(Method::GET, "/no/such/route", &[], "")
        .await
        .unwrap();
    // Metrics are not on the public listener.
    let r = conn.send(Method::GET, "/metrics", &[], "").await.unwrap();
    assert_eq!(r.status, 404);

    let text = server.metrics().await;
    let count =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
    assert_eq!(
        count(r#"http_requests_total{listener="public",route="/session/init",status="200"}"#),
        1.0
    );
    assert_eq!(
        count(
            r#"http_requests_total{listener="public",route="/transaction/purchase",status="200"}"#
        ),
        2.0
    );
    assert_eq!(
        count(
            r#"http_requests_total{listener="public",route="/transaction/purchase",status="400"}"#
        ),
        2.0
    );
    assert_eq!(
        count(r#"http_requests_total{listener="public",route="unmatched",status="404"}"#),
        2.0
    );
    assert_eq!(
        count(r#"session_crypto_rejections_total{route="/transaction/purchase",reason="replay"}"#),
        1.0
    );
    assert_eq!(
        count(
            r#"session_crypto_rejections_total{route="/transaction/purchase",reason="decrypt_failed"}"#
        ),
        1.0
    );
    assert_eq!(
        count(r#"session_crypto_sessions_created_total{family="unversioned"}"#),
        1.0
    );
    assert_eq!(count("session_crypto_nonce_fallback_active"), 0.0);
    // Latency histograms with buckets, per route and status.
    assert_eq!(
        count(
            r#"http_request_duration_seconds_count{listener="public",route="/session/init",status="200"}"#
        ),
        1.0
    );
    assert!(text.contains(r#"http_request_duration_seconds_bucket{listener="public",route="/session/init",status="200",le="0.005"}"#), "{text}");
    assert!(text.contains("# HELP session_crypto_rejections_total"));
}

#[tokio::test]
async fn json_logs_carry_the_request_span_and_its_id() {
    let dir = std::env::temp_dir().join(format!("sc-json-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("server.log");
    let server = Server::start_logging_to(&[("LOG_FORMAT", "json"), ("RUST_LOG", "info")], &log);
    let mut conn = server.connect().await;
    let key = idem(server.crypto);
    let mut headers = init_headers(&key, "C");
    headers.push(("x-request-id", "req-42.a_b"));
    let r = post_init(&mut conn, "/session/init", &headers, "{}").await;
    assert_code(&r, 400, "CRYPTO_ERROR");
    assert_eq!(r.header("x-request-id"), Some("req-42.a_b"));
    // Without one (or with one unsafe to log), the server makes one up.
    for headers in [&[][..], &[("x-request-id", "has space")][..]] {
        let r = conn
            .send(Method::GET, "/health", headers, "")
            .await
            .unwrap();
        let made = r.header("x-request-id").unwrap().to_owned();
        assert!(
            made.len() == 16 && made.bytes().all(|b| b.is_ascii_hexdigit()),
            "{made}"
        );
    }
    drop(server);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let rejected = lines
        .iter()
        .find(|l| l["fields"]["message"] == "rejected")
        .unwrap_or_else(|| panic!("no rejection logged:\n{text}"));
    assert_eq!(rejected["level"], "INFO");
    assert_eq!(rejected["span"]["name"], "request");
    assert_eq!(rejected["span"]["id"], "req-42.a_b");
    assert_eq!(rejected["span"]["route"], "/session/init");
    assert_eq!(rejected["span"]["method"], "POST");
    let _ = std::fs::remove_dir_all(&dir);
}
