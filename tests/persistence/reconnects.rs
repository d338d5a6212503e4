//! A Redis connection made anew may reach another primary: a replica promoted after the
//! primary it replaces died, lacking that primary's last writes but holding every
//! bucket marker. The identity watch sees it within a check; the fence must not wait
//! for that when the old connection was seen failing by something other than a claim
//! (a health probe, a cache read, the watch itself): the connection made anew to
//! another primary counts, and the claim that made it decides behind a fence.

use std::sync::Arc;
use std::time::Duration;

use memory::MemoryNonceStore;
use ports::{Claim, NonceClaim, NonceError, NonceStore};
use redis_adapter::{Redis, RedisConfig, RedisNonceStore, Topology};
use session_crypto::stores::fence::{Board, FenceConfig, Fenced, NoLedger, now_ms};

use crate::support::topologies::{MASTER, RedisSentinel};

const FENCE: FenceConfig = FenceConfig {
    window_ms: 300_000,
    margin_ms: 200,
    lease_ms: 1_000,
};

fn claim(key: &str, stamped_ms: u64) -> Claim<'_> {
    Claim {
        key,
        ttl_sec: 600,
        now_ms: now_ms(),
        stamped_ms,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_seen_outside_a_claim_fences_the_primary_found_after_it() {
    let mut sentinel = RedisSentinel::start();
    let redis = Redis::new(&RedisConfig {
        topology: Topology::Sentinel {
            urls: sentinel.urls().split(',').map(String::from).collect(),
            master: MASTER.into(),
        },
        ca_pem: None,
        command_timeout: Duration::from_secs(2),
        // The breaker lets the next command through at once: only the fence stands.
        retry_interval: Duration::from_millis(1),
    })
    .unwrap();
    let primary = RedisNonceStore::new(redis.clone());
    primary.load_markers().await.unwrap();
    let board = Arc::new(Board::new(FENCE, None::<NoLedger>));
    let store = Fenced::new(primary, MemoryNonceStore::new(100), board);

    let t = now_ms();
    assert_eq!(
        store.claim(claim("nonce:C:held", t)).await,
        Ok(NonceClaim::Fresh)
    );
    // The replica holds the markers and the first claim; then it hangs and its link is
    // cut, so the next claim reaches the primary alone.
    assert_eq!(sentinel.primary.cli(&["WAIT", "1", "5000"]).trim(), "1");
    sentinel.replica.pause(true);
    sentinel.primary.cli(&["CLIENT", "KILL", "TYPE", "replica"]);
    let t = now_ms();
    assert_eq!(
        store.claim(claim("nonce:C:lost", t)).await,
        Ok(NonceClaim::Fresh)
    );
    sentinel.primary.kill();
    sentinel.replica.pause(false);
    // A health probe, not a claim, meets the dead connection (and drops it).
    assert!(redis.ping().await.is_err());
    sentinel.fail_over();
    assert!(
        sentinel
            .replica
            .cli(&["--scan", "--pattern", "nonce:*:C:lost"])
            .trim()
            .is_empty(),
        "the promoted replica lacks the last claim"
    );

    // The replay of the lost claim, stamped as it was: the new primary has no record of
    // it, and its markers are the ones this instance knows.
    let replay = store.claim(claim("nonce:C:lost", t)).await;
    assert!(
        matches!(
            replay,
            Ok(NonceClaim::Replay) | Err(NonceError::Fenced { .. })
        ),
        "a replay after the failover: {replay:?}"
    );
    // A request stamped after the fence is served by the new primary.
    tokio::time::sleep(Duration::from_millis(FENCE.margin_ms + 100)).await;
    let t = now_ms();
    assert_eq!(
        store.claim(claim("nonce:C:after", t)).await,
        Ok(NonceClaim::Fresh)
    );
}
