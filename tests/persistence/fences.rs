//! Redis losing its data under load must not reopen the replay window: with three
//! instances under load and every accepted request replayed at once to another
//! instance, Redis crashes (and restarts empty) or is flushed; afterwards every request
//! accepted in the window before, during and after the fault is replayed again to
//! another instance. Not one replay may be accepted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::load::{Fleet, Load, replay_all, sessions_lost};
use crate::support::services::{PgServer, RedisServer};

/// Seconds of load before and after the fault: `FAULT_WINDOW_SECS`, 10 by default.
fn window() -> Duration {
    crate::support::secs_from_env("FAULT_WINDOW_SECS", 10)
}

async fn fault_under_load(what: &str, fault: impl FnOnce(&mut RedisServer)) {
    let (pg, mut redis) = (PgServer::start(), RedisServer::start());
    let fleet = Arc::new(Fleet::new(
        (0..3).map(|_| stateful(&pg, &redis, &[])).collect(),
    ));
    let started = Instant::now();
    let load = Load::start(Arc::clone(&fleet), 4);
    tokio::time::sleep(window()).await;
    let before = load.tally.accepted();
    let at = Instant::now();
    fault(&mut redis);
    tokio::time::sleep(window()).await;
    let tally = load.stop().await;
    let immediate = tally.replays_accepted.load(Ordering::Relaxed);
    let (replayed, accepted_later) = replay_all(&fleet, &tally, started).await;
    let lost = sessions_lost(&fleet, &tally).await;
    let gap = tally.longest_gap(at - Duration::from_secs(1));
    eprintln!(
        "{what}: {} accepted ({before} before the fault), {} replays sent at once \
         ({immediate} accepted), {replayed} replayed afterwards ({accepted_later} accepted), \
         errors {:?}, longest time without an accepted request {gap:?}, sessions lost {lost}",
        tally.accepted(),
        tally.replays.load(Ordering::Relaxed) - replayed,
        tally.errors(),
    );
    assert!(before > 100, "the load ran: {before}");
    assert_eq!(immediate + accepted_later, 0, "{what}: replays accepted");
    assert!(
        gap <= Duration::from_secs(10),
        "{what}: recovery took {gap:?}"
    );
    assert_eq!(lost, 0, "{what}: acknowledged sessions lost");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_crash_under_load_reopens_no_replay() {
    fault_under_load("crash", |redis| {
        redis.kill();
        std::thread::sleep(Duration::from_millis(500));
        redis.start_server();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_flushall_under_load_reopens_no_replay() {
    fault_under_load("FLUSHALL", |redis| {
        redis.cli(&["FLUSHALL"]);
    })
    .await;
}
