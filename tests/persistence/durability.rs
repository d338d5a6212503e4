//! What PostgreSQL keeps: sessions across restarts, keys wrapped at rest and rotated, migrations, cleanup, grouped inserts.

use crate::support::services::{PgServer, RedisServer};
use hyper::Method;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::support::*;

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
    // The flush also emptied the record of used nonces: requests stamped before the
    // server saw the loss (plus the fence) are refused, later ones are served.
    assert_eq!(
        purchase_status(&mut client, &session).await,
        503,
        "stamped inside the fence: 503, try again"
    );
    tokio::time::sleep(FENCE_PASSED).await;
    assert_eq!(
        purchase_status(&mut client, &session).await,
        200,
        "served from PostgreSQL"
    );
    assert!(
        redis
            .cli(&["EXISTS", &format!("sess:{{{}}}", &session.kid()[8..])])
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
    redis.delete_keys("sess:*");
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
    redis.delete_keys("sess:*");
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
    redis.delete_keys("sess:*");
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
    // The expiry index only where rows are trimmed by expiry (the default partition);
    // every other partition leaves whole.
    let indexes = pg.psql(
        "SELECT tablename || '.' || indexname FROM pg_indexes WHERE tablename LIKE 'sessions%'",
    );
    assert!(
        indexes.contains("sessions_default.idx_sessions_default_expires_at"),
        "{indexes}"
    );
    assert!(!indexes.contains("expires_at_idx"), "{indexes}");
    assert!(
        !indexes.contains("sessions.idx_sessions_expires_at"),
        "{indexes}"
    );
}

/// The cleanup job drops a partition whose sessions have all expired, and deletes the
/// expired rows that no partition covers (the default partition); live sessions stay.
#[tokio::test(flavor = "multi_thread")]
async fn expired_partitions_are_dropped_by_the_cleanup_job() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let server = stateful(&pg, &redis, &[("SESSION_CLEANUP_INTERVAL_MS", "1000")]);
    let mut client = server.client("C").await;
    let (keeper, _) = client.init(INIT, Some(3600)).await.unwrap();
    let partition = |sql: &str| {
        pg.psql(&format!(
            "SELECT count(*) FROM session_crypto_partitions WHERE {sql}"
        ))
    };
    assert_ne!(
        partition("to_at > now()").trim(),
        "0",
        "partitions made ahead"
    );
    // An expired hour with its partition and two sessions, and an expired session
    // outside every partition.
    pg.psql(
        "SELECT session_crypto_ensure_partition(date_trunc('hour', now()) - interval '3 hours', \
                                                date_trunc('hour', now()) - interval '2 hours')",
    );
    for (id, expired) in [
        (
            "S-old-1",
            "date_trunc('hour', now()) - interval '150 minutes'",
        ),
        (
            "S-old-2",
            "date_trunc('hour', now()) - interval '160 minutes'",
        ),
        ("S-older", "now() - interval '30 days'"),
    ] {
        pg.psql(&format!(
            "INSERT INTO sessions (session_id, wrapped_key, kek_id, session_type, client_id, expires_at) \
             VALUES ('{id}', '\\x00', 'k', 'anonymous', 'C', {expired})"
        ));
    }
    assert_eq!(pg.psql("SELECT count(*) FROM sessions_default").trim(), "1");
    assert_eq!(partition("to_at <= now()").trim(), "1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg.psql("SELECT count(*) FROM sessions").trim() != "1"
        || partition("to_at <= now()").trim() != "0"
    {
        assert!(
            Instant::now() < deadline,
            "expired sessions were not removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        pg.psql("SELECT session_id FROM sessions").trim(),
        &keeper.kid()[8..]
    );
}

/// Sessions written before the table was partitioned move into partitions by the
/// migration, and keep working.
#[tokio::test(flavor = "multi_thread")]
async fn the_partitioning_migration_keeps_existing_sessions() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let first = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../migrations/2026-11-22-000000_create_sessions/up.sql"
    ))
    .unwrap();
    pg.psql(&first);
    pg.psql(
        "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
         run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP); \
         INSERT INTO __diesel_schema_migrations (version) VALUES ('20261122000000')",
    );
    for (id, expires) in [
        ("S-a", "now() + interval '1 hour'"),
        ("S-b", "now() + interval '3 days'"),
    ] {
        pg.psql(&format!(
            "INSERT INTO sessions (session_id, wrapped_key, kek_id, session_type, client_id, expires_at) \
             VALUES ('{id}', '\\x00', 'k', 'anonymous', 'C', {expires})"
        ));
    }
    let server = stateful(&pg, &redis, &[("ADMIN_PORT", "0")]);
    assert_eq!(pg.psql("SELECT count(*) FROM sessions").trim(), "2");
    // A deployment that ran an earlier release: its Redis may hold nonces under the
    // old key names, so the first instance fences at start-up.
    assert!(
        server
            .metrics()
            .await
            .contains("session_crypto_nonce_fence_episodes_total 1"),
        "fenced at start-up"
    );
    tokio::time::sleep(FENCE_PASSED).await;
    assert_eq!(pg.psql("SELECT count(*) FROM sessions_default").trim(), "0");
    assert_eq!(
        pg.psql("SELECT relkind FROM pg_class WHERE relname = 'sessions'")
            .trim(),
        "p",
        "partitioned"
    );
    // Rows from before protocol versions are v1 sessions.
    assert_eq!(
        pg.psql("SELECT string_agg(DISTINCT protocol::text, ',') FROM sessions WHERE session_id IN ('S-a', 'S-b')")
            .trim(),
        "1"
    );
    // New sessions work alongside, in both versions; a v2 row holds both keys wrapped.
    for protocol in ports::Protocol::ALL {
        let mut client = server.client("C").await.with_protocol(protocol);
        let (s, _) = client.init(INIT, None).await.unwrap();
        assert_eq!(purchase_status(&mut client, &s).await, 200);
        let row = pg.psql(&format!(
            "SELECT protocol, length(wrapped_key) FROM sessions WHERE session_id = '{}'",
            &s.kid()[8..]
        ));
        let want = domain::keywrap::wrapped_len(protocol);
        assert_eq!(
            row.trim(),
            format!("{}|{want}", protocol.number()),
            "{protocol:?}"
        );
    }
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
        // Every third session is a v2 one: the grouped insert carries both versions.
        keys: if n.is_multiple_of(3) {
            ports::SessionKeys::V2 {
                request: SessionKey::from_bytes([n; 32]),
                response: SessionKey::from_bytes([!n; 32]),
            }
        } else {
            ports::SessionKeys::V1(SessionKey::from_bytes([n; 32]))
        },
        kind: if n.is_multiple_of(2) {
            SessionKind::Anonymous
        } else {
            SessionKind::Authenticated
        },
        client_id: format!("client-{}", n % 3),
        created_at_ms: t0,
        expires_at_ms: t0 + 60_000 + u64::from(n),
        at_rest: Default::default(),
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
    for n in [0u8, 1, 77, 198, 199] {
        let got = store.get(&record(n).id).await.unwrap().expect("stored");
        let want = record(n);
        assert!(got.keys.ct_eq(&want.keys), "session {n}: keys and version");
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
