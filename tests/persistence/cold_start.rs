//! The nonce fence at start-up (docs/operations.md, "The edges"): a deployment
//! restarted onto a Redis that went back to an older snapshot while no instance watched
//! refuses every replay; one started while Redis is unreachable serves requests stamped
//! a margin after start-up, without waiting for an earlier request (when the instances
//! before it stopped cleanly; after a crash, a lease after their last read).

use crate::support::services::{PgServer, RedisServer};
use crate::support::topologies::RedisSentinel;
use std::time::Duration;

use crate::helpers::*;
use crate::support::*;

/// The fence's default timing (the `stateful` servers shorten it).
const DEFAULT_FENCE: [(&str, &str); 2] = [
    ("REPLAY_FENCE_MARGIN_MS", "2000"),
    ("REPLAY_FENCE_LEASE_MS", "10000"),
];

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_start_onto_an_older_redis_snapshot_refuses_every_replay() {
    let (pg, mut redis) = (PgServer::start(), RedisServer::start());
    let a = stateful(&pg, &redis, &[]);
    let (session, _) = a.client("C").await.init(INIT, None).await.unwrap();
    // The deployment records the Redis primary it runs on (checked every second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&a, &session, &before).await, 200);
    assert_eq!(redis.cli(&["SAVE"]).trim(), "OK");
    // Accepted after the snapshot: only the Redis process's memory holds its nonce.
    let after = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&a, &session, &after).await, 200);
    assert_eq!(send_sealed(&a, &session, &after).await, 400, "a replay");

    // The whole deployment stops; Redis restarts from its older snapshot. The bucket
    // markers are all there (the snapshot has them): only its identity tells.
    drop(a);
    redis.kill();
    redis.start_server();
    let nonce = after.idempotency_key.split_once('.').unwrap().1;
    assert!(
        redis.keys(&format!("nonce:*:C:{nonce}")).is_empty(),
        "the snapshot lacks the last claim"
    );
    assert_eq!(redis.keys("fence:*").len(), 256, "every marker is there");

    let b = stateful(&pg, &redis, &[]);
    replays_refused_new_requests_served(&b, &session, [&before, &after]).await;
}

/// On an instance started onto a Redis that lacks the last claims: the replays of
/// requests accepted before (the last one lost with Redis) are refused; new requests
/// are served once the margin after start-up has passed, and the replays stay refused
/// (stamped inside the fence: 503) while in the window.
async fn replays_refused_new_requests_served(
    b: &Server,
    session: &domain::client::ClientSession,
    [held, lost]: [&domain::client::SealedRequest; 2],
) {
    for (sealed, what) in [(held, "Redis holds"), (lost, "Redis lost")] {
        let status = send_sealed(b, session, sealed).await;
        assert!(
            status == 400 || status == 503,
            "the replay of a request {what} got {status}"
        );
    }
    tokio::time::sleep(FENCE_PASSED).await;
    let fresh = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(b, session, &fresh).await, 200);
    assert_eq!(send_sealed(b, session, lost).await, 503);
}

/// The same with Sentinel: while the deployment is down, the sentinels promote a replica
/// that missed the last writes (it hung while they were made). Every marker is on it;
/// its `run_id` is not the recorded one.
#[tokio::test(flavor = "multi_thread")]
async fn a_cold_start_onto_a_sentinel_replica_that_lagged_refuses_every_replay() {
    let (pg, mut sentinel) = (PgServer::start(), RedisSentinel::start());
    let a = stateful(&pg, &sentinel, &[]);
    let (session, _) = a.client("C").await.init(INIT, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // the primary is recorded
    let before = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&a, &session, &before).await, 200);
    // The replica hangs and its replication link is cut (what was already sent stays
    // in its socket; nothing after it reaches it).
    sentinel.replica.pause(true);
    sentinel.primary.cli(&["CLIENT", "KILL", "TYPE", "replica"]);
    let after = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&a, &session, &after).await, 200);
    assert_eq!(send_sealed(&a, &session, &after).await, 400, "a replay");

    assert!(a.terminate().success(), "the deployment stops cleanly");
    sentinel.primary.kill();
    sentinel.replica.pause(false);
    sentinel.fail_over();
    let nonce = after.idempotency_key.split_once('.').unwrap().1;
    assert!(
        sentinel
            .replica
            .keys(&format!("nonce:*:C:{nonce}"))
            .is_empty(),
        "the promoted replica lacks the last claim"
    );
    assert_eq!(sentinel.replica.keys("fence:*").len(), 256);

    let b = stateful(&pg, &sentinel, &[]);
    replays_refused_new_requests_served(&b, &session, [&before, &after]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn started_while_redis_is_unreachable_a_request_stamped_after_start_up_is_served() {
    let (pg, mut redis) = (PgServer::start(), RedisServer::start());
    // A deployment that has run before, stopped cleanly (SIGTERM: it records that it
    // claims no more, so nobody waits out its lease).
    let before = stateful(&pg, &redis, &DEFAULT_FENCE);
    tokio::time::sleep(Duration::from_millis(300)).await; // a read of the board
    assert!(before.terminate().success());
    redis.kill();
    let server = stateful(&pg, &redis, &DEFAULT_FENCE);
    // Three seconds after start-up (more than the 2 s margin), with no request before:
    // an init and a purchase are served, their nonces in PostgreSQL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut client = server.client("C").await;
    let (session, _) = client
        .init(INIT, None)
        .await
        .expect("an init stamped after start-up + margin");
    let sealed = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&server, &session, &sealed).await, 200);
    assert_eq!(send_sealed(&server, &session, &sealed).await, 400, "replay");
}

/// What a restart of the whole deployment onto an emptied Redis costs (docs/operations.md,
/// "What each fault costs"), from steady state (a fresh deployment each time, no
/// episode going on): new sessions are served a margin after start-up when the instance
/// before stopped cleanly, and a lease + margin after its last read when it crashed.
/// Prints the measured times.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_restarted_onto_an_emptied_redis_serves_new_sessions_a_margin_after_start_up()
{
    let (margin, lease) = (Duration::from_secs(2), Duration::from_secs(10));
    for clean in [true, false] {
        let (pg, redis) = (PgServer::start(), RedisServer::start());
        let before = stateful(&pg, &redis, &DEFAULT_FENCE);
        tokio::time::sleep(Duration::from_millis(1500)).await; // board read, primaries recorded
        if clean {
            assert!(before.terminate().success());
        } else {
            drop(before); // SIGKILL
        }
        assert_eq!(redis.cli(&["FLUSHALL"]).trim(), "OK");
        let server = stateful(&pg, &redis, &DEFAULT_FENCE);
        let listening = std::time::Instant::now();
        let first = loop {
            let mut client = server.client("RESTART").await;
            if client.init(INIT, None).await.is_ok() {
                break listening.elapsed();
            }
            assert!(
                listening.elapsed() < Duration::from_secs(30),
                "never served"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!(
            "restart onto an emptied Redis after a {}: first init served {:.2} s after the new instance listened",
            if clean { "clean stop" } else { "crash" },
            first.as_secs_f64(),
        );
        let bound = if clean {
            margin + Duration::from_secs(1)
        } else {
            lease + margin + Duration::from_secs(1)
        };
        assert!(first <= bound, "{first:?} > {bound:?}");
    }
}
