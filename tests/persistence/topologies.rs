//! The multi-instance checks of `instances.rs` on a Redis Cluster and behind Sentinel,
//! and the failovers of both, followed by running instances without a restart.

use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::instances::*;
use crate::support::services::{PgServer, RedisServer};
use crate::support::topologies::{RedisCluster, RedisSentinel};
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_on_a_redis_cluster_share_every_state() {
    let (pg, cluster) = (PgServer::start(), RedisCluster::start(3));
    sessions_and_replay_protection_are_shared(&pg, &cluster).await;
    a_revocation_holds_everywhere_within_a_second(&pg, &cluster).await;
    abuse_limits_hold_across_instances(&pg, &cluster).await;
    the_idle_timeout_sees_uses_on_every_instance(&pg, &cluster).await;
    // The nonce buckets spread over every primary.
    let with_nonces = cluster
        .primaries()
        .into_iter()
        .filter(|&i| {
            !cluster.nodes[i]
                .cli(&["--scan", "--pattern", "nonce:*"])
                .trim()
                .is_empty()
        })
        .count();
    assert_eq!(with_nonces, 3, "nonces on every primary");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_behind_sentinel_share_every_state() {
    let (pg, sentinel) = (PgServer::start(), RedisSentinel::start());
    sessions_and_replay_protection_are_shared(&pg, &sentinel).await;
    a_revocation_holds_everywhere_within_a_second(&pg, &sentinel).await;
    abuse_limits_hold_across_instances(&pg, &sentinel).await;
    the_idle_timeout_sees_uses_on_every_instance(&pg, &sentinel).await;
}

/// Purchases on every instance until each has succeeded once after `since`; returns
/// how long that took.
async fn until_served(servers: &[Server], session: &domain::client::ClientSession) -> Duration {
    let started = Instant::now();
    for server in servers {
        let mut client = server.client("C").await;
        while purchase_status(&mut client, session).await != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "an instance did not recover"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    started.elapsed()
}

/// Requests accepted before a failover are replays after it on every instance, and
/// every instance serves again without a restart.
async fn replays_stay_refused_across(
    servers: &[Server],
    session: &domain::client::ClientSession,
    accepted: &[domain::client::SealedRequest],
) {
    for (i, server) in servers.iter().enumerate() {
        for sealed in accepted {
            // A replay (400), or stamped inside the fence (503): refused either way.
            let status = send_sealed(server, session, sealed).await;
            assert!(
                status == 400 || status == 503,
                "instance {i} answered {status} to a replay after the failover"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sentinel_failover_is_followed_without_a_restart_and_replays_stay_refused() {
    let (pg, mut sentinel) = (PgServer::start(), RedisSentinel::start());
    let servers: Vec<Server> = (0..3).map(|_| stateful(&pg, &sentinel, &[])).collect();
    let (session, _) = servers[0].client("C").await.init(INIT, None).await.unwrap();
    let mut accepted = Vec::new();
    for server in &servers {
        let sealed = session.seal_request(now(), PAYLOAD).unwrap();
        assert_eq!(send_sealed(server, &session, &sealed).await, 200);
        accepted.push(sealed);
    }
    // The replica hangs and its replication link is cut, so the last writes before the
    // failover never reach it: the primary it replaces held nonces it does not have.
    sentinel.replica.pause(true);
    sentinel.primary.cli(&["CLIENT", "KILL", "TYPE", "replica"]);
    for server in &servers {
        let sealed = session.seal_request(now(), PAYLOAD).unwrap();
        assert_eq!(send_sealed(server, &session, &sealed).await, 200);
        accepted.push(sealed);
    }
    sentinel.primary.kill();
    sentinel.replica.pause(false);
    sentinel.fail_over();
    let took = until_served(&servers, &session).await;
    eprintln!("served again {took:?} after the sentinels promoted the replica");
    replays_stay_refused_across(&servers, &session, &accepted).await;
    // New nonces land on the new primary.
    assert!(
        !sentinel
            .replica
            .cli(&["--scan", "--pattern", "nonce:*"])
            .trim()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_failover_is_followed_and_replays_stay_refused() {
    let (pg, mut cluster) = (PgServer::start(), RedisCluster::start(3));
    let servers: Vec<Server> = (0..3).map(|_| stateful(&pg, &cluster, &[])).collect();
    let (session, _) = servers[0].client("C").await.init(INIT, None).await.unwrap();
    let mut accepted = Vec::new();
    for _ in 0..10 {
        for server in &servers {
            let sealed = session.seal_request(now(), PAYLOAD).unwrap();
            assert_eq!(send_sealed(server, &session, &sealed).await, 200);
            accepted.push(sealed);
        }
    }
    let victim = cluster.primaries()[0];
    cluster.nodes[victim].kill();
    let started = Instant::now();
    cluster.wait_ok();
    eprintln!("cluster failed over in {:?}", started.elapsed());
    let took = until_served(&servers, &session).await;
    eprintln!("served again {took:?} after the failover");
    replays_stay_refused_across(&servers, &session, &accepted).await;
}

/// `rediss://` with a password and a private certificate authority (REDIS_CA_FILE).
#[tokio::test(flavor = "multi_thread")]
async fn redis_over_tls_with_a_password_and_a_private_ca() {
    let pki = TestPki::new("redis-tls");
    let (pg, redis) = (
        PgServer::start(),
        RedisServer::start_tls(&pki, "tls-secret"),
    );
    assert!(redis.url().starts_with("rediss://:tls-secret@"));
    let ca = pki.ca.display().to_string();
    let server = stateful(&pg, &redis, &[("REDIS_CA_FILE", &ca)]);
    let (session, _) = server.client("C").await.init(INIT, None).await.unwrap();
    let sealed = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&server, &session, &sealed).await, 200);
    assert_eq!(send_sealed(&server, &session, &sealed).await, 400);
    let nonce = sealed.idempotency_key.split_once('.').unwrap().1;
    assert_eq!(
        redis.keys(&format!("nonce:*:C:{nonce}")).len(),
        1,
        "claimed in Redis"
    );
    assert_eq!(redis.keys(&cache_key(&session)).len(), 1, "cached in Redis");
}

/// Two instances on `redis` (over TLS, CA from `pki`): a purchase accepted by one is a
/// replay on the other, and its nonce is in Redis. Returns the session.
async fn two_instances_share_nonces_over_tls(
    pg: &PgServer,
    redis: &impl RedisUnderTest,
    pki: &TestPki,
) -> domain::client::ClientSession {
    let ca = pki.ca.display().to_string();
    let (a, b) = (
        stateful(pg, redis, &[("REDIS_CA_FILE", &ca)]),
        stateful(pg, redis, &[("REDIS_CA_FILE", &ca)]),
    );
    let (session, _) = a.client("C").await.init(INIT, None).await.unwrap();
    let sealed = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&a, &session, &sealed).await, 200);
    assert_eq!(
        send_sealed(&b, &session, &sealed).await,
        400,
        "replay on the other"
    );
    let nonce = sealed.idempotency_key.split_once('.').unwrap().1;
    assert_eq!(redis.keys(&format!("nonce:*:C:{nonce}")).len(), 1);
    session
}

/// A Redis Cluster over TLS (clients, replication and the cluster bus) with passwords
/// and a private CA: nonces and the cache are shared by two instances.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_cluster_over_tls_with_a_private_ca() {
    let pki = TestPki::new("cluster-tls");
    let (pg, cluster) = (PgServer::start(), RedisCluster::start_tls(3, &pki));
    assert!(cluster.urls().starts_with("rediss://"));
    let session = two_instances_share_nonces_over_tls(&pg, &cluster, &pki).await;
    assert_eq!(cluster.keys(&cache_key(&session)).len(), 1);
}

/// Sentinel over TLS (clients, replication, the sentinels) with passwords and a private
/// CA: the primary is found and used through the sentinels.
#[tokio::test(flavor = "multi_thread")]
async fn sentinel_over_tls_with_a_private_ca() {
    let pki = TestPki::new("sentinel-tls");
    let (pg, sentinel) = (PgServer::start(), RedisSentinel::start_tls(&pki));
    assert!(sentinel.urls().starts_with("rediss://"));
    two_instances_share_nonces_over_tls(&pg, &sentinel, &pki).await;
}
