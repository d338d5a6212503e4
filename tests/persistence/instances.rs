//! Several instances on one PostgreSQL and Redis: shared sessions, replay protection, revocation and limits.

use crate::support::services::{PgServer, RedisServer};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::support::*;

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

/// Issue 12 item 5: a purchase on B that misses Redis, reads PostgreSQL before A's
/// revocation commits and refills `sess:<id>` after A's deletion used to leave the
/// revoked session alive everywhere. Many trials of the race, each forcing B's miss.
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_racing_a_cache_refill_on_another_instance_is_final() {
    const TRIALS: usize = 60;
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let no_local = [("SESSION_LOCAL_CACHE_MS", "0")];
    let (a, b) = (
        stateful(&pg, &redis, &no_local),
        stateful(&pg, &redis, &no_local),
    );
    let mut on_a = a.client("C").await;
    let mut on_b = b.client("C").await;
    let mut revoker = a.client("C").await;
    for trial in 0..TRIALS {
        let (session, _) = on_a.init(INIT, None).await.unwrap();
        let id = session.kid()[8..].to_owned();
        // B's next lookup misses Redis and goes to PostgreSQL.
        redis.cli(&["DEL", &format!("sess:{id}")]);
        let (revoked, _) = tokio::join!(revoker.revoke(&session), async {
            // Spread B's lookup over the revocation's window.
            tokio::time::sleep(Duration::from_micros(100 * (trial as u64 % 20))).await;
            purchase_status(&mut on_b, &session).await
        });
        revoked.unwrap();
        assert_eq!(
            purchase_status(&mut on_b, &session).await,
            401,
            "trial {trial}: B serves the revoked session"
        );
        assert_eq!(
            purchase_status(&mut on_a, &session).await,
            401,
            "trial {trial}: A serves the revoked session"
        );
        assert_eq!(
            redis.cli(&["EXISTS", &format!("sess:{id}")]).trim(),
            "0",
            "trial {trial}: the revoked session is back in Redis"
        );
    }
}
