//! The Redis nonce claim is a plain pipeline — `SET nonce NX`, then `GET` of the
//! bucket's marker — not a transaction; `adapters/redis/src/nonces.rs` argues why that
//! is as safe. These tests check the argument: they run the commands of two racing
//! claims, and a loss of Redis's data (`FLUSHALL`), in every order the pipeline allows,
//! each client behind a proxy that holds every command until the test releases it
//! (tests/support/resp_gate.rs).

use std::time::Duration;

use ports::{Claim, NonceClaim, NonceError, NonceStore};
use redis_adapter::{Redis, RedisConfig, RedisNonceStore, Topology};

use crate::support::now;
use crate::support::redis_server::RedisServer;
use crate::support::resp_gate::RespGate;

/// A nonce store of its own connection, through `gate`, with the markers read.
async fn through(gate: &RespGate) -> RedisNonceStore {
    let redis = Redis::new(&RedisConfig {
        topology: Topology::Standalone(gate.url()),
        ca_pem: None,
        command_timeout: Duration::from_secs(20),
        retry_interval: Duration::from_millis(1),
    })
    .unwrap();
    let store = RedisNonceStore::new(redis);
    store.load_markers().await.unwrap();
    store
}

fn claim(key: &str) -> Claim<'_> {
    let t = now();
    Claim {
        key,
        ttl_sec: 600,
        now_ms: t,
        stamped_ms: t,
    }
}

/// Every merge of `parties` (each one's steps kept in its order).
fn interleavings(parties: &[&str]) -> Vec<String> {
    if parties.iter().all(|p| p.is_empty()) {
        return vec![String::new()];
    }
    let mut all = Vec::new();
    for (i, p) in parties.iter().enumerate() {
        let Some(first) = p.chars().next() else {
            continue;
        };
        let mut rest = parties.to_vec();
        rest[i] = &p[1..];
        all.extend(
            interleavings(&rest)
                .into_iter()
                .map(|tail| format!("{first}{tail}")),
        );
    }
    all
}

/// Runs `order` over the held commands: `A`/`B` releases the next command of that
/// gate, `F` empties Redis.
fn run(order: &str, a: &RespGate, b: Option<&RespGate>, redis: &RedisServer) {
    for step in order.chars() {
        match step {
            'A' => a.release_one(),
            'B' => b.expect("gate B").release_one(),
            _ => assert_eq!(redis.cli(&["FLUSHALL"]).trim(), "OK"),
        }
    }
}

/// Two instances claim one new nonce at once, and Redis may lose its data at any point
/// between their commands: never both fresh — in every one of the 30 orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_claims_and_a_loss_in_every_order_never_both_pass() {
    let redis = RedisServer::start();
    let orders = interleavings(&["AA", "BB", "F"]);
    assert_eq!(orders.len(), 30);
    let mut both_decided = 0;
    for (i, order) in orders.iter().enumerate() {
        let (ga, gb) = (RespGate::start(redis.port), RespGate::start(redis.port));
        let (a, b) = (through(&ga).await, through(&gb).await);
        ga.hold(true);
        gb.hold(true);
        let key = format!("nonce:RACE:{i}");
        let (ka, kb) = (key.clone(), key);
        let ta = tokio::spawn(async move { a.claim(claim(&ka)).await });
        let tb = tokio::spawn(async move { b.claim(claim(&kb)).await });
        // Each claim is one pipeline: both of its commands are at the gate.
        ga.wait_held(2);
        gb.wait_held(2);
        run(order, &ga, Some(&gb), &redis);
        ga.hold(false);
        gb.hold(false);
        let outcomes = [ta.await.unwrap(), tb.await.unwrap()];
        let fresh = outcomes
            .iter()
            .filter(|o| **o == Ok(NonceClaim::Fresh))
            .count();
        assert!(
            fresh <= 1,
            "order {order}: both claims passed: {outcomes:?}"
        );
        for o in &outcomes {
            assert!(
                matches!(o, Ok(_) | Err(NonceError::Unavailable(_))),
                "order {order}: {o:?}"
            );
        }
        if outcomes.iter().all(Result::is_ok) {
            // Decided by Redis alone: exactly one fresh, the other a replay.
            assert_eq!(fresh, 1, "order {order}: {outcomes:?}");
            both_decided += 1;
        }
    }
    // With the loss after every command, both are decided: 6 of the 30 orders.
    assert_eq!(both_decided, 6);
}

/// A nonce claimed before is claimed again while Redis loses its data at any point of
/// the claim: never fresh (a replay, or not trusted and left to the fence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_at_any_point_of_a_claim_never_lets_a_replay_pass() {
    let redis = RedisServer::start();
    for (i, order) in interleavings(&["AA", "F"]).iter().enumerate() {
        let ga = RespGate::start(redis.port);
        let a = through(&ga).await;
        let key = format!("nonce:LOSS:{i}");
        assert_eq!(a.claim(claim(&key)).await, Ok(NonceClaim::Fresh));
        ga.hold(true);
        let again = tokio::spawn(async move { a.claim(claim(&key)).await });
        ga.wait_held(2);
        run(order, &ga, None, &redis);
        ga.hold(false);
        let outcome = again.await.unwrap();
        match order.as_str() {
            "AAF" => assert_eq!(outcome, Ok(NonceClaim::Replay)),
            _ => assert!(
                matches!(outcome, Err(NonceError::Unavailable(_))),
                "order {order}: {outcome:?}"
            ),
        }
    }
}
