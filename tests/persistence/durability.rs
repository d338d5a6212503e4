//! What PostgreSQL keeps: sessions across restarts, keys wrapped at rest and rotated, grouped inserts (the schema itself: `schema.rs`).

use crate::support::services::{PgServer, RedisServer};
use hyper::Method;
use std::time::Duration;

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
