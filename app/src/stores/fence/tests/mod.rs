//! The fence's rules, on a switchable primary and in-memory ledgers.

use memory::MemoryNonceStore;

use super::*;

mod fakes;
mod write_back;

use fakes::{Primary, SharedLedger};

const W: u64 = 300_000;
const CONFIG: FenceConfig = FenceConfig {
    window_ms: W,
    margin_ms: 2_000,
    lease_ms: 1_000,
};

fn claim(key: &str, now_ms: u64, stamped_ms: u64) -> Claim<'_> {
    Claim {
        key,
        ttl_sec: 2 * W / 1000 + 1,
        now_ms,
        stamped_ms,
    }
}

/// `key`, stamped and claimed at `t`: fresh once, then a replay.
async fn single_use<N: NonceStore>(store: &N, key: &str, t: u64) {
    assert_eq!(store.claim(claim(key, t, t)).await, Ok(NonceClaim::Fresh));
    assert_eq!(
        store.claim(claim(key, t + 1, t)).await,
        Ok(NonceClaim::Replay)
    );
}

type Single = Fenced<Arc<Primary>, Arc<MemoryNonceStore>, NoLedger>;

fn single(primary: &Arc<Primary>) -> Single {
    let board = Arc::new(Board::new(CONFIG, None));
    Fenced::new(
        Arc::clone(primary),
        Arc::new(MemoryNonceStore::new(1000)),
        board,
    )
}

impl<T: Losses> Losses for Arc<T> {
    fn losses(&self) -> u64 {
        (**self).losses()
    }
    fn interruptions(&self) -> u64 {
        (**self).interruptions()
    }
}

#[tokio::test]
async fn a_loss_of_the_primary_fences_what_it_held() {
    let primary = Arc::new(Primary::default());
    let store = single(&primary);
    let t = 1_000_000_000;
    assert_eq!(store.claim(claim("a", t, t)).await, Ok(NonceClaim::Fresh));
    primary.lose_everything();
    // Before the fence: the primary no longer knows "a", so it is refused.
    let replay = store.claim(claim("a", t + 10, t)).await;
    assert!(
        matches!(replay, Err(NonceError::Fenced { .. })),
        "{replay:?}"
    );
    // A request stamped after the fence is accepted, once.
    let late = t + 10 + CONFIG.margin_ms;
    single_use(&store, "b", late).await;
    assert_eq!(store.board.refused(), 1);
}

/// "a" is claimed, then `interfere` happens to the primary, unseen by the claims'
/// answers: the replay of "a" is fenced, and a request stamped after the fence is
/// served once.
async fn the_replay_after_is_fenced(interfere: impl FnOnce(&Primary)) {
    let primary = Arc::new(Primary::default());
    let store = single(&primary);
    let t = 1_000_000_000;
    assert_eq!(store.claim(claim("a", t, t)).await, Ok(NonceClaim::Fresh));
    interfere(&primary);
    let replay = store.claim(claim("a", t + 10, t)).await;
    assert!(
        matches!(replay, Err(NonceError::Fenced { .. })),
        "{replay:?}"
    );
    single_use(&store, "b", t + 10 + CONFIG.margin_ms).await;
}

/// A command that failed and was not a claim (a health probe, a cache read) may be
/// followed by a connection to a primary that lacks the last claims yet holds every
/// marker, so that no claim sees a loss: the interruption alone begins the episode.
#[tokio::test]
async fn an_interruption_met_outside_a_claim_fences_what_the_primary_held() {
    the_replay_after_is_fenced(|primary| {
        *primary.nonces.lock().unwrap() = Arc::new(MemoryNonceStore::new(1000));
        primary.interruptions.fetch_add(1, Ordering::SeqCst);
    })
    .await;
}

/// A command that fails while a claim runs may have the connection made anew under
/// it, to a primary without the last claims: the claim's "fresh" is not trusted.
#[tokio::test]
async fn an_interruption_while_a_claim_runs_fences_its_answer() {
    the_replay_after_is_fenced(|primary| {
        primary.interrupt_next_claim.store(true, Ordering::SeqCst);
    })
    .await;
}

#[tokio::test]
async fn a_request_stamped_ahead_survives_a_loss_in_the_shared_store() {
    let primary = Arc::new(Primary::default());
    let store = single(&primary);
    let t = 1_000_000_000;
    // Stamped a minute ahead: also written to the shared store.
    let ahead = t + 60_000;
    assert_eq!(
        store.claim(claim("f", t, ahead)).await,
        Ok(NonceClaim::Fresh)
    );
    primary.lose_everything();
    // Later, within the window, after the fence: the shared store still has it.
    let later = t + 30_000;
    assert_eq!(
        store.claim(claim("f", later, ahead)).await,
        Ok(NonceClaim::Replay)
    );
}

#[tokio::test]
async fn nonces_claimed_during_an_outage_stay_claimed_after_it() {
    let primary = Arc::new(Primary::default());
    let store = single(&primary);
    let t = 1_000_000_000;
    primary.down.store(true, Ordering::SeqCst);
    // The outage begins: requests stamped before the fence are refused.
    let early = store.claim(claim("x", t, t)).await;
    assert!(matches!(early, Err(NonceError::Fenced { .. })), "{early:?}");
    let s = t + CONFIG.margin_ms;
    assert_eq!(store.claim(claim("y", s, s)).await, Ok(NonceClaim::Fresh));
    primary.down.store(false, Ordering::SeqCst);
    // Redis is back but never saw "y": still a replay, for two windows after.
    for dt in [1, W, 2 * W] {
        assert_eq!(
            store.claim(claim("y", s + dt, s)).await,
            Ok(NonceClaim::Replay)
        );
    }
    // Long after, claims go to Redis alone again.
    single_use(&store, "z", s + 3 * W).await;
}

/// Two instances on one Redis and one ledger; only the first loses Redis.
#[tokio::test]
async fn an_instance_that_lost_redis_fences_the_others_through_the_ledger() {
    let redis = Arc::new(Primary::default());
    let cut_off = Arc::new(Primary::default());
    cut_off.down.store(true, Ordering::SeqCst);
    let ledger = SharedLedger::default();
    let shared = Arc::new(MemoryNonceStore::new(1000));
    let a = Fenced::new(
        Arc::clone(&cut_off),
        Arc::clone(&shared),
        Arc::new(Board::new(CONFIG, Some(ledger.clone()))),
    );
    let b = Fenced::new(
        Arc::clone(&redis),
        Arc::clone(&shared),
        Arc::new(Board::new(CONFIG, Some(ledger.clone()))),
    );
    let t = now_ms();
    a.board.refresh(t).await.unwrap();
    b.board.refresh(t).await.unwrap();
    // B accepted "r" in Redis alone just before A lost Redis.
    assert_eq!(b.claim(claim("r", t, t)).await, Ok(NonceClaim::Fresh));
    // A: Redis unreachable. The replay of "r" is stamped before the fence.
    let at_a = a.claim(claim("r", t + 5, t)).await;
    assert!(matches!(at_a, Err(NonceError::Fenced { .. })), "{at_a:?}");
    tokio::time::sleep(Duration::from_millis(50)).await; // the report lands
    // Until A reads that B took the episode in, B may be claiming in Redis alone
    // for a whole lease after its last read: A refuses what B may have accepted.
    a.board.refresh(t + 10).await.unwrap();
    let s = t + 100 + CONFIG.margin_ms;
    let early = a.claim(claim("s", s, s)).await;
    assert!(matches!(early, Err(NonceError::Fenced { .. })), "{early:?}");
    // B reads the board (and so takes the episode in); A reads that B did.
    b.board.refresh(t + 20).await.unwrap();
    b.board.refresh(t + 30).await.unwrap();
    a.board.refresh(t + 40).await.unwrap();
    // From now on B writes the shared store too, and A's fence ends a margin
    // after B took the episode in, not a lease after.
    let q = t + 40 + CONFIG.margin_ms;
    assert_eq!(b.claim(claim("q", q, q)).await, Ok(NonceClaim::Fresh));
    assert_eq!(a.claim(claim("q", q + 1, q)).await, Ok(NonceClaim::Replay));
    assert_eq!(a.claim(claim("p", q + 2, q)).await, Ok(NonceClaim::Fresh));
    assert_eq!(b.claim(claim("p", q + 3, q)).await, Ok(NonceClaim::Replay));
}

/// An instance on a Redis of its own and `shared`, reading `ledger`.
fn on_board(
    shared: MemoryNonceStore,
    ledger: &SharedLedger,
) -> Fenced<Arc<Primary>, Arc<MemoryNonceStore>, SharedLedger> {
    Fenced::new(
        Arc::new(Primary::default()),
        Arc::new(shared),
        Arc::new(Board::new(CONFIG, Some(ledger.clone()))),
    )
}

/// An instance that cannot read the board keeps claiming in Redis alone for a
/// lease (a short PostgreSQL outage costs nothing), then fails closed.
#[tokio::test]
async fn a_board_that_cannot_be_read_allows_redis_alone_for_one_lease() {
    let ledger = SharedLedger::default();
    let b = on_board(MemoryNonceStore::new(1000), &ledger);
    let t = now_ms();
    b.board.refresh(t).await.unwrap();
    ledger.down.store(true, Ordering::SeqCst);
    assert!(b.board.refresh(t + 500).await.is_err());
    single_use(&b, "a", t + CONFIG.lease_ms).await;
    // Past the lease the shared store decides too: here it holds everything, so
    // only its answer can make a claim a replay.
    b.shared.claim(claim("b", t, t)).await.unwrap();
    let late = t + CONFIG.lease_ms + 1;
    assert_eq!(
        b.claim(claim("b", late, late)).await,
        Ok(NonceClaim::Replay)
    );
}

#[tokio::test]
async fn without_a_fresh_board_an_instance_fails_closed_on_the_shared_store() {
    let ledger = SharedLedger::default();
    let b = on_board(MemoryNonceStore::new(0), &ledger);
    let t = now_ms();
    b.board.refresh(t).await.unwrap();
    assert_eq!(b.claim(claim("a", t, t)).await, Ok(NonceClaim::Fresh));
    // The board has not been read for longer than the lease: Redis alone is not
    // enough (another instance may be claiming elsewhere), and the shared store
    // (here: one that holds nothing) decides.
    let late = t + CONFIG.lease_ms + 1;
    assert_eq!(b.claim(claim("b", late, late)).await, Err(NonceError::Full));
}

/// A deployment restarted onto a Redis that may have lost data fences a margin after
/// the new instance's start when the old instance left cleanly, and a lease after the
/// old one's last read when it crashed (it may have claimed in Redis alone until then).
#[tokio::test]
async fn a_start_up_episode_ends_a_margin_after_start_unless_an_instance_crashed_just_before() {
    for clean in [true, false] {
        let ledger = SharedLedger::default();
        let old = on_board(MemoryNonceStore::new(1000), &ledger);
        let t = now_ms();
        old.board.refresh(t).await.unwrap();
        if clean {
            old.board.leave(t + 10).await;
            // Reads after leaving no longer renew the lease.
            old.board.refresh(t + 20).await.unwrap();
        }
        drop(old);
        let new = on_board(MemoryNonceStore::new(1000), &ledger);
        let start = t + 100;
        new.board.begin_at_start(start, "test").await;
        new.board.refresh(start).await.unwrap();
        // What the old instance may have accepted just before: refused.
        let replay = new.claim(claim("r", start + 1, t + 5)).await;
        assert!(
            matches!(replay, Err(NonceError::Fenced { .. })),
            "{replay:?}"
        );
        let after_margin = start + CONFIG.margin_ms;
        let fresh = new.claim(claim("n", after_margin, after_margin)).await;
        if clean {
            assert_eq!(fresh, Ok(NonceClaim::Fresh), "a margin after start-up");
        } else {
            assert!(
                matches!(fresh, Err(NonceError::Fenced { retry_after_ms, .. })
                if retry_after_ms == t + CONFIG.lease_ms - start),
                "{fresh:?}"
            );
            let later = t + CONFIG.lease_ms + CONFIG.margin_ms;
            single_use(&new, "m", later).await;
        }
    }
}
