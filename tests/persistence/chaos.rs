//! Chaos under load: three instances on a Redis Cluster and PostgreSQL, a load
//! generator, and an injector that replays every accepted request to another instance
//! at once (and all of them again at the end). Meanwhile a Redis primary is killed and
//! restarted, PostgreSQL is stopped and started, and one instance is killed and
//! restarted. Not one replay may be accepted, no acknowledged session may be lost, and
//! requests must be accepted again within 10 s of each repair.
//!
//! `CHAOS_PHASE_SECS` (default 4, the short form CI runs) is the length of each phase:
//! before a fault, during it, after its repair. The long form:
//! `CHAOS_PHASE_SECS=30 cargo nextest run --all-features --test persistence chaos --no-capture`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::load::{Fleet, Load, replay_all, sessions_lost};
use crate::support::services::PgServer;
use crate::support::topologies::RedisCluster;

fn phase() -> Duration {
    crate::support::secs_from_env("CHAOS_PHASE_SECS", 4)
}

/// The fence as it ships (the other persistence tests shorten it).
const DEFAULT_FENCE: [(&str, &str); 2] = [
    ("REPLAY_FENCE_MARGIN_MS", "2000"),
    ("REPLAY_FENCE_LEASE_MS", "10000"),
];

#[tokio::test(flavor = "multi_thread")]
async fn chaos_under_load_accepts_no_replay_and_loses_no_session() {
    let (pg, mut cluster) = (PgServer::start(), RedisCluster::start(3));
    let fleet = Arc::new(Fleet::new(
        (0..3)
            .map(|_| stateful(&pg, &cluster, &DEFAULT_FENCE))
            .collect(),
    ));
    let started = Instant::now();
    let load = Load::start(Arc::clone(&fleet), 4);
    let p = phase();
    tokio::time::sleep(p).await;
    let mut report = Vec::new();

    // Each fault: (name, longest time without an accepted request from its start,
    // time from its repair to the next accepted request).
    let mut fault = async |name: &'static str, repaired: Instant, at: Instant| {
        tokio::time::sleep(p).await;
        let recovered = load.tally.first_after(repaired);
        report.push((name, load.tally.longest_gap(at), recovered));
    };

    // PostgreSQL stops, then starts. Nonces go on in Redis alone for a lease.
    let at = Instant::now();
    pg.stop_server();
    tokio::time::sleep(p).await;
    pg.start_server();
    fault("postgres stopped and started", Instant::now(), at).await;

    // A Redis primary dies (its replica takes over), then comes back (as a replica).
    let victim = cluster.primaries()[0];
    let at = Instant::now();
    cluster.nodes[victim].kill();
    tokio::time::sleep(p).await;
    cluster.nodes[victim].start_server();
    fault("redis primary killed and restarted", Instant::now(), at).await;

    // One instance is killed, then started again.
    let at = Instant::now();
    fleet.kill(2);
    tokio::time::sleep(p).await;
    fleet.restart(2, stateful(&pg, &cluster, &DEFAULT_FENCE));
    fault("instance killed and restarted", Instant::now(), at).await;

    let tally = load.stop().await;
    let immediate = tally.replays_accepted.load(Ordering::Relaxed);
    let (replayed, later) = replay_all(&fleet, &tally, started).await;
    let lost = sessions_lost(&fleet, &tally).await;
    eprintln!(
        "chaos ({p:?} phases): {} accepted, {} replays sent at once ({immediate} accepted), \
         {replayed} replayed at the end ({later} accepted), errors by kind {:?}, \
         sessions lost {lost}",
        tally.accepted(),
        tally.replays.load(Ordering::Relaxed) - replayed,
        tally.errors(),
    );
    for (fault, gap, recovered) in &report {
        eprintln!(
            "  {fault}: longest time without an accepted request {gap:?}, \
             first accepted {recovered:?} after the repair"
        );
    }
    assert!(tally.accepted() > 100, "the load ran");
    assert_eq!(immediate + later, 0, "replays accepted");
    assert_eq!(lost, 0, "acknowledged sessions lost");
    for (fault, _, recovered) in report {
        assert!(
            recovered.is_some_and(|t| t <= Duration::from_secs(10)),
            "{fault}: recovery {recovered:?}"
        );
    }
}
