//! A Redis Cluster slot migration under load (`CLUSTER SETSLOT … IMPORTING/MIGRATING`,
//! `MIGRATE` key by key, `SETSLOT … NODE`): claims on a migrating slot follow the
//! cluster's `ASK`/`MOVED` redirections, so no episode of Redis trouble begins, nothing
//! is refused, and every replay is still refused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::support::services::{PgServer, RedisServer};
use crate::support::topologies::{PASSWORD, RedisCluster};
use crate::support::*;

/// How many nonce buckets (of 256) have their slots migrated.
const BUCKETS: u16 = 32;

/// A primary: its node id, port and slot ranges.
type Shard = (String, u16, Vec<(u16, u16)>);

/// Every primary, from `CLUSTER NODES`.
fn primaries(cluster: &RedisCluster) -> Vec<Shard> {
    let any = &cluster.nodes[cluster.primaries()[0]];
    any.cli(&["CLUSTER", "NODES"])
        .lines()
        .filter(|l| l.contains("master") && !l.contains("fail"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f[1]
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap();
            let ranges = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (r.parse().unwrap(), r.parse().unwrap()),
                })
                .collect();
            (f[0].to_owned(), port, ranges)
        })
        .collect()
}

fn node(cluster: &RedisCluster, port: u16) -> &RedisServer {
    cluster.nodes.iter().find(|n| n.port == port).unwrap()
}

/// Moves the slots of the first [`BUCKETS`] nonce buckets to another primary, one key
/// at a time with `pause` between keys; returns how many keys moved.
fn migrate(cluster: &RedisCluster, pause: Duration) -> usize {
    let shards = primaries(cluster);
    let mut moves = Vec::new();
    for b in 0..BUCKETS {
        let slot: u16 = node(cluster, shards[0].1)
            .cli(&["CLUSTER", "KEYSLOT", &format!("fence:{{{b:02x}}}")])
            .trim()
            .parse()
            .unwrap();
        let src = shards
            .iter()
            .position(|(_, _, r)| r.iter().any(|&(a, z)| (a..=z).contains(&slot)))
            .unwrap();
        let dst = (src + 1) % shards.len();
        moves.push((slot, src, dst));
    }
    for &(slot, src, dst) in &moves {
        let (s, d) = (&shards[src], &shards[dst]);
        let slot = slot.to_string();
        assert!(
            node(cluster, d.1)
                .cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &s.0])
                .contains("OK")
        );
        assert!(
            node(cluster, s.1)
                .cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &d.0])
                .contains("OK")
        );
    }
    let mut moved = 0;
    for &(slot, src, dst) in &moves {
        let (s, d) = (&shards[src], &shards[dst]);
        loop {
            let keys =
                node(cluster, s.1).cli(&["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "10"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            for k in keys {
                let out = node(cluster, s.1).cli(&[
                    "MIGRATE",
                    "127.0.0.1",
                    &d.1.to_string(),
                    k,
                    "0",
                    "5000",
                    "AUTH",
                    PASSWORD,
                ]);
                assert!(
                    out.contains("OK") || out.contains("NOKEY"),
                    "MIGRATE {k}: {out}"
                );
                moved += 1;
                std::thread::sleep(pause);
            }
        }
    }
    for &(slot, _, dst) in &moves {
        let slot = slot.to_string();
        for (_, port, _) in &shards {
            node(cluster, *port).cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &shards[dst].0]);
        }
    }
    moved
}

/// A metric's value in the exposition text (0 when absent).
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_migration_under_load_begins_no_episode_and_refuses_nothing() {
    let (pg, cluster) = (PgServer::start(), RedisCluster::start(3));
    let server = Arc::new(stateful(&pg, &cluster, &[("ADMIN_PORT", "0")]));
    let (session, _) = server.client("C").await.init(INIT, None).await.unwrap();
    let session = Arc::new(session);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (server, session, stop) =
                (Arc::clone(&server), Arc::clone(&session), Arc::clone(&stop));
            let (accepted, refused) = (Arc::clone(&accepted), Arc::clone(&refused));
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let sealed = session.seal_request(now(), PAYLOAD).unwrap();
                    match send_sealed(&server, &session, &sealed).await {
                        200 => accepted.lock().unwrap().push(sealed),
                        status => refused.lock().unwrap().push(status),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let c = Arc::new(cluster);
    let moved = tokio::task::spawn_blocking({
        let c = Arc::clone(&c);
        move || migrate(&c, Duration::from_millis(20))
    })
    .await
    .unwrap();
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let accepted = std::mem::take(&mut *accepted.lock().unwrap());
    let refused = std::mem::take(&mut *refused.lock().unwrap());
    let metrics = server.metrics().await;
    eprintln!(
        "slot migration of {BUCKETS} buckets ({moved} keys) in {took:?}: {} accepted, refused {refused:?}, episodes {}",
        accepted.len(),
        counter(&metrics, "session_crypto_nonce_fence_episodes_total"),
    );
    assert!(moved >= usize::from(BUCKETS), "every bucket's marker moved");
    assert!(accepted.len() > 50, "the load ran");
    assert_eq!(refused, Vec::<u16>::new(), "nothing refused");
    assert_eq!(
        counter(&metrics, "session_crypto_nonce_fence_episodes_total"),
        0
    );
    let mut replays_accepted = 0;
    for sealed in &accepted {
        if send_sealed(&server, &session, sealed).await == 200 {
            replays_accepted += 1;
        }
    }
    assert_eq!(replays_accepted, 0, "replays accepted");
}
