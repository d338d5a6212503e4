//! Persistence and fault tolerance against real PostgreSQL and Redis servers started
//! by the harness (tests/support/services.rs).

mod support;

use std::time::{Duration, Instant};

use http_adapter::client::{FlowError, InitRoute, ProtocolClient};
use hyper::Method;
use support::services::{PgServer, RedisServer};
use support::*;

const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEK2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn stateful(pg: &PgServer, redis: &RedisServer, extra: &[(&str, &str)]) -> Server {
    let (db, r) = (pg.url(), redis.url());
    // No in-process cache unless a test asks: these tests look at what Redis and
    // PostgreSQL do.
    let mut env: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", &db),
        ("REDIS_URL", &r),
        ("SESSION_KEK", KEK),
        ("REDIS_COMMAND_TIMEOUT_MS", "500"),
        ("SESSION_LOCAL_CACHE_MS", "0"),
    ];
    env.extend_from_slice(extra);
    Server::start(&env)
}

async fn purchase_status(
    client: &mut ProtocolClient,
    session: &domain::client::ClientSession,
) -> u16 {
    match client.purchase(session, PAYLOAD).await {
        Ok(_) => 200,
        Err(FlowError::Status { status, .. }) => status.as_u16(),
        Err(e) => panic!("{e}"),
    }
}

/// Sends one sealed purchase as given (for replays).
async fn send_sealed(
    server: &Server,
    session: &domain::client::ClientSession,
    sealed: &domain::client::SealedRequest,
) -> u16 {
    let mut conn = server.connect().await;
    let headers = [
        ("x-kid", session.kid()),
        ("x-idempotency-key", sealed.idempotency_key.as_str()),
        ("x-clientid", session.client_id()),
    ];
    conn.send(
        Method::POST,
        "/transaction/purchase",
        &headers,
        sealed.envelope.clone(),
    )
    .await
    .unwrap()
    .status
    .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_survive_a_server_restart_and_a_redis_flushall() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let first = stateful(&pg, &redis, &[]);
    let (session, _) = first.client("C").await.init(INIT, None).await.unwrap();
    drop(first);
    let second = stateful(&pg, &redis, &[]);
    let mut client = second.client("C").await;
    assert_eq!(purchase_status(&mut client, &session).await, 200);
    redis.cli(&["FLUSHALL"]);
    assert_eq!(
        purchase_status(&mut client, &session).await,
        200,
        "served from PostgreSQL"
    );
    assert!(
        redis
            .cli(&["EXISTS", &format!("sess:{}", &session.kid()[8..])])
            .trim()
            == "1",
        "cache refilled"
    );
    let h = json(
        &client
            .connection()
            .send(Method::GET, "/health", &[], "")
            .await
            .unwrap(),
    );
    assert_eq!(
        (
            h["status"].as_str(),
            h["postgres"].as_str(),
            h["redis"].as_str()
        ),
        (Some("ok"), Some("ok"), Some("ok"))
    );
    assert_eq!(h["sessionStore"], "postgres");
}

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
    let during = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(
        send_sealed(&server, &session, &during).await,
        200,
        "purchase during the outage"
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
        if redis.cli(&["EXISTS", &format!("nonce:C:{nonce}")]).trim() == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never used Redis again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // a nonce claimed during the outage is still refused after recovery
    assert_eq!(send_sealed(&server, &session, &during).await, 400);
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
        &[("x-idempotency-key", &key), ("x-clientid", "C")],
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

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_sessions_and_replay_protection() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let local = [("SESSION_LOCAL_CACHE_MS", "1000")]; // the default, on both
    let (a, b) = (stateful(&pg, &redis, &local), stateful(&pg, &redis, &local));
    let (session, _) = a.client("C").await.init(INIT, None).await.unwrap();
    let sealed = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&a, &session, &sealed).await, 200);
    assert_eq!(
        send_sealed(&b, &session, &sealed).await,
        400,
        "replay on the other instance"
    );
    let mut on_b = b.client("C").await;
    assert_eq!(
        purchase_status(&mut on_b, &session).await,
        200,
        "a session from A works on B"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_raw_session_key_at_rest_and_moved_keys_do_not_unwrap() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let server = stateful(&pg, &redis, &[]);
    let mut client = server.client("C").await;
    let mut sessions = Vec::new();
    for _ in 0..5 {
        let (s, _) = client.init(INIT, None).await.unwrap();
        assert_eq!(purchase_status(&mut client, &s).await, 200);
        sessions.push(s);
    }
    let table = pg.psql("SELECT session_id, encode(wrapped_key, 'hex'), translate(encode(wrapped_key, 'base64'), E'\n', ''), kek_id, session_type, client_id, created_at, expires_at FROM sessions");
    let cache = redis.dump();
    assert_eq!(table.lines().count(), 5, "{table}");
    assert!(cache.contains("sess:"), "{cache}");
    for s in &sessions {
        let key = s.key().expose();
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = b64(key);
        for (what, dump) in [("postgres", &table), ("redis", &cache)] {
            assert!(
                !dump.to_lowercase().contains(&hex),
                "raw key (hex) in {what}"
            );
            assert!(!dump.contains(&b64), "raw key (base64) in {what}");
            assert!(!dump.contains(&b64[..20]), "raw key prefix in {what}");
        }
    }
    // copy session 0's wrapped key into session 1's row: it must not unwrap there
    let (id0, id1) = (&sessions[0].kid()[8..], &sessions[1].kid()[8..]);
    pg.psql(&format!("UPDATE sessions SET wrapped_key = (SELECT wrapped_key FROM sessions WHERE session_id = '{id0}') WHERE session_id = '{id1}'"));
    redis.cli(&["FLUSHALL"]);
    assert_eq!(purchase_status(&mut client, &sessions[1]).await, 401);
    assert_eq!(purchase_status(&mut client, &sessions[0]).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_wrapping_keys_rotate() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let old = stateful(&pg, &redis, &[]);
    let (session, _) = old.client("C").await.init(INIT, None).await.unwrap();
    drop(old);
    let rotated = stateful(
        &pg,
        &redis,
        &[("SESSION_KEK", KEK2), ("SESSION_KEK_PREVIOUS", KEK)],
    );
    redis.cli(&["FLUSHALL"]);
    let mut client = rotated.client("C").await;
    assert_eq!(
        purchase_status(&mut client, &session).await,
        200,
        "old rows unwrap with the previous KEK"
    );
    let (fresh, _) = client.init(INIT, None).await.unwrap();
    let kek_ids = pg.psql(&format!(
        "SELECT DISTINCT kek_id FROM sessions WHERE session_id IN ('{}', '{}')",
        &session.kid()[8..],
        &fresh.kid()[8..]
    ));
    assert_eq!(
        kek_ids.lines().count(),
        2,
        "new sessions use the new KEK: {kek_ids}"
    );
    drop(rotated);
    // without the previous KEK the old session is gone (401), the new one still works
    let only_new = stateful(&pg, &redis, &[("SESSION_KEK", KEK2)]);
    redis.cli(&["FLUSHALL"]);
    let mut client = only_new.client("C").await;
    assert_eq!(purchase_status(&mut client, &session).await, 401);
    assert_eq!(purchase_status(&mut client, &fresh).await, 200);
}

#[test]
fn migrations_apply_to_an_empty_database_and_are_idempotent() {
    let pg = PgServer::start();
    let url = pg.url();
    let (code, _) = run_to_exit_with_stdout(&["migrate"], &[("DATABASE_URL", &url)]);
    assert_eq!(code.0, 0, "{}", code.1);
    assert!(code.1.contains("applied migration"), "{}", code.1);
    let (again, _) = run_to_exit_with_stdout(&["migrate"], &[("DATABASE_URL", &url)]);
    assert_eq!(again.0, 0);
    assert!(again.1.contains("up to date"), "{}", again.1);
    let columns = pg.psql("SELECT column_name || ':' || data_type FROM information_schema.columns WHERE table_name = 'sessions' ORDER BY ordinal_position");
    for col in [
        "session_id:character varying",
        "wrapped_key:bytea",
        "kek_id:character varying",
        "session_type:character varying",
        "client_id:character varying",
        "principal:character varying",
        "created_at:timestamp with time zone",
        "expires_at:timestamp with time zone",
    ] {
        assert!(
            columns.lines().any(|l| l == col),
            "{col} missing in {columns}"
        );
    }
    let indexes = pg.psql("SELECT indexname FROM pg_indexes WHERE tablename = 'sessions'");
    assert!(indexes.contains("idx_sessions_expires_at"), "{indexes}");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_rows_are_removed_by_the_cleanup_job() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let server = stateful(
        &pg,
        &redis,
        &[
            ("SESSION_TTL_MIN_SEC", "1"),
            ("SESSION_CLEANUP_INTERVAL_MS", "1000"),
        ],
    );
    let mut client = server.client("C").await;
    for _ in 0..3 {
        client.init(INIT, Some(1)).await.unwrap();
    }
    let (keeper, _) = client.init(INIT, Some(3600)).await.unwrap();
    assert_eq!(pg.psql("SELECT count(*) FROM sessions").trim(), "4");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg.psql("SELECT count(*) FROM sessions").trim() != "1" {
        assert!(Instant::now() < deadline, "expired rows were not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        pg.psql("SELECT session_id FROM sessions").trim(),
        &keeper.kid()[8..]
    );
}

#[test]
fn database_without_key_wrapping_key_refuses_to_start() {
    let (code, err) = run_to_exit(
        &["serve"],
        &[
            ("CRYPTO_BACKEND", default_backend().name),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x"),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("SESSION_KEK") && err.contains("keygen"),
        "{err}"
    );
    let (code, err) = run_to_exit(
        &["serve"],
        &[
            ("CRYPTO_BACKEND", default_backend().name),
            ("DATABASE_URL", "postgres://x@127.0.0.1:1/x"),
            ("SESSION_KEK", "c2hvcnQ="),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("exactly 32 bytes"), "{err}");
    let out = std::process::Command::new(BIN)
        .arg("keygen")
        .env("CRYPTO_BACKEND", default_backend().name)
        .output()
        .unwrap();
    let kek = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        domain::encoding::base64_decode(kek.trim()).unwrap().len(),
        32
    );
}

/// Runs flows — including rejections and a Redis outage — with every log level on,
/// then scans the log: no session key, KEK, plaintext or whole session id may appear.
#[tokio::test(flavor = "multi_thread")]
async fn trace_logs_hold_no_secrets_plaintexts_or_whole_session_ids() {
    let (pg, mut redis) = (PgServer::start(), RedisServer::start());
    let log = std::env::temp_dir().join(format!("session-crypto-log-{}.txt", std::process::id()));
    let (db, r) = (pg.url(), redis.url());
    let server = Server::start_logging_to(
        &[
            ("DATABASE_URL", &db),
            ("REDIS_URL", &r),
            ("SESSION_KEK", KEK),
            ("RUST_LOG", "trace"),
            ("REDIS_COMMAND_TIMEOUT_MS", "300"),
            ("INTERNAL_PORT", "0"),
        ],
        &log,
    );
    let mut client = server.client("LOGGED_CLIENT").await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let (s, _) = client.init(INIT, None).await.unwrap();
        client.purchase(&s, MARKED_PAYLOAD).await.unwrap();
        sessions.push(s);
    }
    // rejections log their reasons
    let sealed = sessions[0].seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&server, &sessions[0], &sealed).await, 200);
    assert_eq!(send_sealed(&server, &sessions[0], &sealed).await, 400);
    let mut tampered = sessions[1].seal_request(now(), PAYLOAD).unwrap();
    *tampered.envelope.last_mut().unwrap() ^= 1;
    assert_eq!(send_sealed(&server, &sessions[1], &tampered).await, 400);
    // the key release on the internal listener, and a Redis outage
    let internal = server.internal_url.clone().unwrap();
    let mut conn = http_adapter::client::Connection::open(
        &http_adapter::client::Endpoint::parse(&internal).unwrap(),
    )
    .await
    .unwrap();
    let path = format!("/v1/session/{}", &sessions[2].kid()[8..]);
    assert_eq!(
        conn.send(Method::GET, &path, &[("x-clientid", "LOGGED_CLIENT")], "")
            .await
            .unwrap()
            .status,
        200
    );
    redis.kill();
    assert_eq!(purchase_status(&mut client, &sessions[2]).await, 200);
    drop(server);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "a log written to a file has no terminal colour codes"
    );
    let _ = std::fs::remove_file(&log);
    assert!(
        text.contains("session-crypto starting"),
        "the log was captured"
    );
    assert!(
        text.contains("replayed nonce"),
        "rejection reasons are logged"
    );
    assert!(text.contains("redis unreachable"), "the outage is logged");
    // session ids do reach the log, shortened (the key release names its session)
    assert!(
        text.contains(&sessions[2].kid()[8..18]),
        "short id of the released session"
    );
    let kek = domain::encoding::base64_decode(KEK).unwrap();
    let mut secrets: Vec<String> = vec![
        KEK.to_owned(),
        hex_of(&kek),
        "SECRET-SCHEME-7F3A".into(),
        "4242.42".into(),
    ];
    for s in &sessions {
        secrets.push(hex_of(s.key().expose()));
        secrets.push(b64(s.key().expose()));
        secrets.push(s.kid()[8..].to_owned()); // a whole session id
    }
    for secret in secrets {
        assert!(!text.contains(&secret), "log contains {secret:?}");
    }
}

const MARKED_PAYLOAD: &[u8] = br#"{"schemeCode":"SECRET-SCHEME-7F3A","amount":4242.42}"#;

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_on_one_instance_holds_on_every_instance_within_a_second() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let local = [("SESSION_LOCAL_CACHE_MS", "1000")]; // the default, on both
    let (a, b) = (stateful(&pg, &redis, &local), stateful(&pg, &redis, &local));
    let (session, _) = a.client("C").await.init(INIT, None).await.unwrap();
    let mut on_b = b.client("C").await;
    assert_eq!(
        purchase_status(&mut on_b, &session).await,
        200,
        "B has it cached now"
    );
    a.client("C").await.revoke(&session).await.unwrap();
    let revoked_at = Instant::now();
    while purchase_status(&mut on_b, &session).await != 401 {
        assert!(
            revoked_at.elapsed() < Duration::from_millis(1100),
            "B still serves the revoked session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(revoked_at.elapsed() <= Duration::from_millis(1100));
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) FROM sessions WHERE session_id = '{}'",
            &session.kid()[8..]
        ))
        .trim(),
        "0"
    );
    assert_eq!(
        redis
            .cli(&["EXISTS", &format!("sess:{}", &session.kid()[8..])])
            .trim(),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_revokes_every_session_of_one_client() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let server = stateful(&pg, &redis, &[]);
    let mut victim = server.client("VICTIM").await;
    let (v1, _) = victim.init(INIT, None).await.unwrap();
    let (v2, _) = victim.init(InitRoute::V1, None).await.unwrap();
    let mut other = server.client("OTHER").await;
    let (o1, _) = other.init(INIT, None).await.unwrap();
    let (db, r) = (pg.url(), redis.url());
    let ((code, out), err) = run_to_exit_with_stdout(
        &["revoke", "--client-id", "VICTIM"],
        &[
            ("DATABASE_URL", &db),
            ("REDIS_URL", &r),
            ("CRYPTO_BACKEND", default_backend().name),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked 2 session(s)"), "{out}");
    assert_eq!(purchase_status(&mut victim, &v1).await, 401);
    assert_eq!(purchase_status(&mut victim, &v2).await, 401);
    assert_eq!(purchase_status(&mut other, &o1).await, 200);
    let ((code, _), err) = run_to_exit_with_stdout(
        &["revoke", "--client-id", "X"],
        &[("CRYPTO_BACKEND", default_backend().name)],
    );
    assert_eq!(code, 1);
    assert!(err.contains("revoke needs DATABASE_URL"), "{err}");
}

async fn init_status(server: &Server, client_id: &str) -> (u16, String) {
    match server.client(client_id).await.init(INIT, None).await {
        Ok(_) => (200, String::new()),
        refused => refusal(refused),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn abuse_limits_hold_across_instances_through_redis() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let limits = [
        ("INIT_RATE_LIMIT_PER_CLIENT", "5"),
        ("INIT_RATE_LIMIT_PER_CLIENT_BURST", "5"),
        ("MAX_SESSIONS_PER_CLIENT", "2"),
        ("MAX_ENCRYPTIONS_PER_SESSION", "4"),
    ];
    let (a, b) = (
        stateful(&pg, &redis, &limits),
        stateful(&pg, &redis, &limits),
    );
    let rate_limited = (429, r#"{"error":"RATE_LIMITED"}"#.to_owned());
    let too_many = (429, r#"{"error":"TOO_MANY_SESSIONS"}"#.to_owned());

    // One budget of 5 inits a minute for client R, whichever instance answers.
    for (i, server) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let mut r = server.client("R").await;
        let (s, _) = r.init(INIT, None).await.unwrap();
        r.revoke(&s)
            .await
            .unwrap_or_else(|e| panic!("init {i}: {e}"));
    }
    assert_eq!(init_status(&a, "R").await, rate_limited);
    assert_eq!(init_status(&b, "R").await, rate_limited);
    assert!(
        redis
            .cli(&["TTL", "rl:init:client:R"])
            .trim()
            .parse::<i64>()
            .unwrap()
            > 0
    );

    // Two live sessions for client S in all. Instances share their counts through
    // Redis every 100 ms.
    let shared = Duration::from_millis(300);
    let mut on_a = a.client("S").await;
    let (first, _) = on_a.init(INIT, None).await.unwrap();
    tokio::time::sleep(shared).await;
    assert_eq!(init_status(&b, "S").await.0, 200);
    tokio::time::sleep(shared).await;
    assert_eq!(init_status(&b, "S").await, too_many);
    // A re-reads the total of a client near its cap every half second.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(init_status(&a, "S").await, too_many);
    // The operator's revocation also resets the count.
    let (db, r) = (pg.url(), redis.url());
    let (code, err) = run_to_exit(
        &["revoke", "--client-id", "S"],
        &[
            ("DATABASE_URL", &db),
            ("REDIS_URL", &r),
            ("CRYPTO_BACKEND", default_backend().name),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(purchase_status(&mut on_a, &first).await, 401);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (session, _) = on_a.init(INIT, None).await.unwrap();

    // Four encryptions per key, counted across instances.
    let mut on_b = b.client("S").await;
    assert_eq!(purchase_status(&mut on_a, &session).await, 200);
    assert_eq!(purchase_status(&mut on_b, &session).await, 200);
    assert_eq!(purchase_status(&mut on_a, &session).await, 401);
    assert_eq!(purchase_status(&mut on_b, &session).await, 401);
    assert!(redis.cli(&["KEYS", "enc:*"]).contains("enc:S-"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_idle_timeout_sees_uses_on_every_instance() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let idle = [("SESSION_IDLE_TIMEOUT_SEC", "1")];
    let (a, b) = (stateful(&pg, &redis, &idle), stateful(&pg, &redis, &idle));
    let mut on_a = a.client("C").await;
    let mut on_b = b.client("C").await;
    let (session, _) = on_a.init(INIT, None).await.unwrap();
    // Used on A, then on B 0.6 s later and again 0.6 s after that: 1.2 s after its
    // creation, but never idle for a second, because B sees A's use.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(purchase_status(&mut on_a, &session).await, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(purchase_status(&mut on_b, &session).await, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(purchase_status(&mut on_a, &session).await, 401);
    assert_eq!(purchase_status(&mut on_b, &session).await, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn grouped_inserts_store_every_session_and_refuse_duplicates() {
    use std::sync::Arc;

    use domain::keywrap::KeyWrapper;
    use ports::{SessionKey, SessionKind, SessionRecord, SessionStore, StoreError};
    use postgres_adapter::{PgConfig, PgSessionStore};

    let pg = PgServer::start();
    let config = PgConfig {
        url: pg.url(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(5),
        max_insert_batch: 64,
        insert_writers: 1,
    };
    let pool = postgres_adapter::pool(&config).unwrap();
    postgres_adapter::run_migrations(&pool).await.unwrap();
    let wrapper = Arc::new(KeyWrapper::new(default_backend(), [9; 32], vec![]).unwrap());
    let store = PgSessionStore::new(pool, wrapper, &config);
    let t0 = now();
    let record = move |n: u8| SessionRecord {
        id: format!("S-{:032x}", u128::from(n) + 1),
        key: SessionKey::from_bytes([n; 32]),
        kind: if n.is_multiple_of(2) {
            SessionKind::Anonymous
        } else {
            SessionKind::Authenticated
        },
        client_id: format!("client-{}", n % 3),
        created_at_ms: t0,
        expires_at_ms: t0 + 60_000 + u64::from(n),
    };
    // 200 concurrent inserts through one writer: they go out in groups.
    let inserts: Vec<_> = (0..200u8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.insert(&record(n)).await })
        })
        .collect();
    for insert in inserts {
        insert.await.unwrap().unwrap();
    }
    for n in [0u8, 1, 77, 199] {
        let got = store.get(&record(n).id).await.unwrap().expect("stored");
        let want = record(n);
        assert_eq!(got.key.expose(), want.key.expose());
        assert_eq!(
            (got.kind, &got.client_id, got.expires_at_ms),
            (want.kind, &want.client_id, want.expires_at_ms)
        );
    }
    assert_eq!(pg.psql("SELECT count(*) FROM sessions").trim(), "200");
    // The same id again, alone or next to a new one: refused, and the new one stored.
    let (again, new) = (record(5), record(250));
    let (dup, fresh) = tokio::join!(store.insert(&again), store.insert(&new));
    assert_eq!(dup, Err(StoreError::Duplicate));
    assert_eq!(fresh, Ok(()));
    assert_eq!(pg.psql("SELECT count(*) FROM sessions").trim(), "201");
}
