//! Redis and PostgreSQL outages: what keeps working, what fails closed, recovery.

use crate::support::services::{PgServer, RedisServer};
use hyper::Method;
use session_crypto_client::FlowError;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn redis_outage_keeps_purchases_going_and_replays_refused() {
    let (pg, mut redis) = (PgServer::start(), RedisServer::start());
    let server = stateful(
        &pg,
        &redis,
        &[("REDIS_RETRY_INTERVAL_MS", "200"), ("ADMIN_PORT", "0")],
    );
    let mut client = server.client("C").await;
    let (session, _) = client.init(INIT, None).await.unwrap();
    assert_eq!(purchase_status(&mut client, &session).await, 200);
    let gauges = |text: &str| {
        [
            r#"session_crypto_dependency_up{dependency="postgres"} "#,
            r#"session_crypto_dependency_up{dependency="redis"} "#,
            "session_crypto_nonce_fallback_active ",
        ]
        .map(|series| {
            text.lines()
                .find_map(|l| l.strip_prefix(series))
                .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
                .to_owned()
        })
    };
    let before = server.metrics().await;
    assert_eq!(gauges(&before), ["1", "1", "0"]);
    assert!(before.contains(r#"session_crypto_pg_pool_connections{state="open"}"#));

    redis.kill();
    // The first request after the outage began is stamped inside the fence: Redis may
    // have held nonces this server cannot see now. It is refused, and costs nothing.
    // 503 with Retry-After, on both families, for a purchase and an init alike.
    let fenced = session.seal_request(now(), PAYLOAD).unwrap();
    let after = assert_fenced(&send_sealed_answer(&server, &session, &fenced).await);
    assert!(after <= 2, "the fence ends within lease + margin: {after}");
    for path in ["/session/init", "/v1/session/init"] {
        let key = idem(server.crypto);
        let headers = [
            ("content-type", "application/json"),
            ("x-idempotency-key", key.as_str()),
            ("x-clientid", "C"),
        ];
        let body = format!(
            r#"{{"clientPublicKey":"{}"}}"#,
            b64(&fresh_public_key(server.crypto))
        );
        let mut conn = server.connect().await;
        let resp = post_init(&mut conn, path, &headers, body).await;
        assert_eq!(resp.status, 503, "{path}");
        assert!(resp.header("retry-after").is_some(), "{path}");
    }
    tokio::time::sleep(FENCE_PASSED).await;
    let during = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(
        send_sealed(&server, &session, &during).await,
        200,
        "purchase during the outage (its nonce in PostgreSQL)"
    );
    assert_eq!(
        send_sealed(&server, &session, &during).await,
        400,
        "replay during the outage"
    );
    assert_eq!(gauges(&server.metrics().await), ["1", "0", "1"]);
    let h = json(
        &client
            .connection()
            .send(Method::GET, "/health", &[], "")
            .await
            .unwrap(),
    );
    assert_eq!(
        (h["status"].as_str(), h["redis"].as_str()),
        (Some("degraded"), Some("disconnected"))
    );
    // sessions can still be created (PostgreSQL) and used
    let (s2, _) = client.init(INIT, None).await.unwrap();
    assert_eq!(purchase_status(&mut client, &s2).await, 200);

    redis.start_server();
    // the server goes back to Redis by itself: new nonces land there
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = session.seal_request(now(), PAYLOAD).unwrap();
        assert_eq!(send_sealed(&server, &session, &after).await, 200);
        let nonce = after.idempotency_key.split_once('.').unwrap().1;
        let stored = redis.cli(&["--scan", "--pattern", &format!("nonce:*:C:{nonce}")]);
        if !stored.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never used Redis again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // a nonce claimed during the outage is still refused after recovery, although
    // Redis never saw it
    assert_eq!(send_sealed(&server, &session, &during).await, 400);
    let nonce = during.idempotency_key.split_once('.').unwrap().1;
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) FROM nonces WHERE nonce_key = 'nonce:C:{nonce}'"
        ))
        .trim(),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_outage_answers_503_then_recovers() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let server = stateful(
        &pg,
        &redis,
        &[
            ("PG_STATEMENT_TIMEOUT_MS", "1000"),
            ("PG_CONNECTION_TIMEOUT_MS", "1000"),
        ],
    );
    let mut client = server.client("C").await;
    let (session, _) = client.init(INIT, None).await.unwrap();

    pg.stop_server();
    let started = Instant::now();
    match client.init(INIT, None).await {
        Err(FlowError::Status { status, body, .. }) => {
            assert_eq!(status, 503);
            assert_eq!(body, r#"{"error":"SERVICE_UNAVAILABLE"}"#);
        }
        other => panic!("expected 503, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no hang: {:?}",
        started.elapsed()
    );
    let mut conn = server.connect().await;
    let key = idem(server.crypto);
    let v1 = post_init(
        &mut conn,
        "/v1/session/init",
        &[
            ("content-type", "application/json"),
            ("x-idempotency-key", &key),
            ("x-clientid", "C"),
        ],
        format!(
            r#"{{"clientPublicKey":"{}"}}"#,
            b64(&fresh_public_key(server.crypto))
        ),
    )
    .await;
    assert_identity(&v1, 503);
    assert_eq!(
        purchase_status(&mut client, &session).await,
        200,
        "cached session still usable"
    );
    let ready = conn.send(Method::GET, "/ready", &[], "").await.unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(json(&ready)["database"], "down");

    pg.start_server();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client.init(INIT, None).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "init did not recover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `SINGLE_INSTANCE=true`: during a Redis outage nonces go to this process's memory,
/// behind the same fence (the margin alone: no board to wait for), not to PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn a_single_instance_fences_a_redis_outage_in_memory() {
    let (pg, mut redis) = (PgServer::start(), RedisServer::start());
    let server = stateful(
        &pg,
        &redis,
        &[
            ("SINGLE_INSTANCE", "true"),
            ("REDIS_RETRY_INTERVAL_MS", "200"),
        ],
    );
    let mut client = server.client("C").await;
    let (session, _) = client.init(INIT, None).await.unwrap();
    redis.kill();
    let fenced = session.seal_request(now(), PAYLOAD).unwrap();
    assert_fenced(&send_sealed_answer(&server, &session, &fenced).await);
    tokio::time::sleep(Duration::from_millis(400)).await; // the margin (200 ms) passed
    let during = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&server, &session, &during).await, 200);
    assert_eq!(send_sealed(&server, &session, &during).await, 400, "replay");
    assert_eq!(
        pg.psql("SELECT count(*) FROM nonces").trim(),
        "0",
        "not in PostgreSQL"
    );
    redis.start_server();
    // Redis is back (empty): what memory holds is still a replay.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.keys("nonce:*").is_empty() {
        let s = session.seal_request(now(), PAYLOAD).unwrap();
        assert_eq!(send_sealed(&server, &session, &s).await, 200);
        assert!(
            Instant::now() < deadline,
            "the server never used Redis again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(send_sealed(&server, &session, &during).await, 400);
}

/// A Redis outage, Redis back, then PostgreSQL stopped 5 s later: the nonces claimed in
/// PostgreSQL during the outage were written back into Redis and the episode closed,
/// so purchases on cached sessions need Redis alone (200, and the outage's nonce is
/// still refused), while inits, which need PostgreSQL, answer 503.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_outage_soon_after_a_redis_outage_leaves_cached_sessions_working() {
    let (pg, mut redis) = (PgServer::start(), RedisServer::start());
    let server = stateful(
        &pg,
        &redis,
        &[
            ("REDIS_RETRY_INTERVAL_MS", "200"),
            ("PG_STATEMENT_TIMEOUT_MS", "1000"),
            ("PG_CONNECTION_TIMEOUT_MS", "1000"),
            ("ADMIN_PORT", "0"),
        ],
    );
    let mut client = server.client("C").await;
    let (session, _) = client.init(INIT, None).await.unwrap();
    redis.kill();
    let fenced = session.seal_request(now(), PAYLOAD).unwrap();
    assert_fenced(&send_sealed_answer(&server, &session, &fenced).await);
    tokio::time::sleep(FENCE_PASSED).await;
    let during = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&server, &session, &during).await, 200);

    redis.start_server();
    let back = Instant::now();
    // Purchases go on (and put the session back into Redis's cache); the episode is
    // closed within seconds.
    let closed = loop {
        assert_eq!(purchase_status(&mut client, &session).await, 200);
        if server
            .metrics()
            .await
            .contains(r#"session_crypto_nonce_fence_write_backs_total{result="closed"} 1"#)
        {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "no write-back within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "episode closed {} ms after Redis came back",
        closed.as_millis()
    );
    let nonce = during.idempotency_key.split_once('.').unwrap().1;
    assert!(
        !redis
            .cli(&["--scan", "--pattern", &format!("nonce:*:C:{nonce}")])
            .trim()
            .is_empty(),
        "the outage's nonce is in Redis"
    );
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(back.elapsed())).await;

    pg.stop_server();
    for _ in 0..5 {
        assert_eq!(purchase_status(&mut client, &session).await, 200);
    }
    assert_eq!(
        send_sealed(&server, &session, &during).await,
        400,
        "the outage's nonce, refused by Redis alone"
    );
    assert_eq!(init_status(&server, "C").await.0, 503);
}
