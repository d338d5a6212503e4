//! The sessions table's schema: migrations on an empty database, the move into
//! partitions, and partitions dropped once every session in them has expired.

use crate::support::services::{PgServer, RedisServer};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::support::*;

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
