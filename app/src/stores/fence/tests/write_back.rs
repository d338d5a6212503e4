//! Writing back: an episode closed early keeps every nonce claimed during it, and
//! trouble during or after the write-back is fenced as before.

use super::*;

/// A shared store that also lists its nonces on the ledger (as PostgreSQL's table).
struct Recording {
    inner: MemoryNonceStore,
    ledger: SharedLedger,
}

impl NonceStore for Recording {
    async fn claim(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        self.ledger
            .check()
            .map_err(|e| NonceError::Unavailable(e.to_string()))?;
        let decided = self.inner.claim(claim).await?;
        if decided == NonceClaim::Fresh {
            let expires = claim.now_ms + claim.ttl_sec * 1000;
            self.ledger
                .nonces
                .lock()
                .unwrap()
                .insert(claim.key.to_owned(), expires);
        }
        Ok(decided)
    }
}

impl Restore for Arc<Primary> {
    async fn intact(&self) -> Result<bool, String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("down".into());
        }
        Ok(true)
    }
    async fn restore(&self, nonces: &[(String, u64)], now_ms: u64) -> Result<usize, String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("down".into());
        }
        let store = Arc::clone(&self.nonces.lock().unwrap());
        for (key, expires) in nonces {
            let ttl_sec = (expires - now_ms).div_ceil(1000);
            store
                .claim(Claim {
                    key,
                    ttl_sec,
                    now_ms,
                    stamped_ms: now_ms,
                })
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(nonces.len())
    }
}

type Instance = Fenced<Arc<Primary>, Recording, SharedLedger>;

/// An instance on `redis`, with the shared store and board of `ledger`.
fn instance(redis: &Arc<Primary>, ledger: &SharedLedger) -> Instance {
    Fenced::new(
        Arc::clone(redis),
        Recording {
            inner: MemoryNonceStore::new(1000),
            ledger: ledger.clone(),
        },
        Arc::new(Board::new(CONFIG, Some(ledger.clone()))),
    )
}

/// Two instances; Redis goes down, A claims "y" in the shared store alone, Redis comes
/// back. Returns them with the time "y" was stamped.
async fn after_an_outage(redis: &Arc<Primary>, ledger: &SharedLedger) -> (Instance, Instance, u64) {
    let (a, b) = (instance(redis, ledger), instance(redis, ledger));
    let t = now_ms();
    a.board.refresh(t).await.unwrap();
    b.board.refresh(t).await.unwrap();
    redis.down.store(true, Ordering::SeqCst);
    let s = t + CONFIG.lease_ms + CONFIG.margin_ms;
    assert_eq!(a.claim(claim("y", s, s)).await, Ok(NonceClaim::Fresh));
    tokio::time::sleep(Duration::from_millis(50)).await; // the report lands
    redis.down.store(false, Ordering::SeqCst);
    for x in [&a, &b] {
        x.board.refresh(s).await.unwrap();
        assert!(x.board.view(s + 1).shared, "claims go to both stores");
    }
    (a, b, s)
}

fn shared_holds(ledger: &SharedLedger, key: &str) -> bool {
    ledger.nonces.lock().unwrap().contains_key(key)
}

#[tokio::test]
async fn a_write_back_ends_the_episode_and_keeps_what_the_outage_claimed() {
    let (ledger, redis) = (SharedLedger::default(), Arc::new(Primary::default()));
    let (a, b, s) = after_an_outage(&redis, &ledger).await;
    let w = s + CONFIG.lease_ms + CONFIG.margin_ms;
    let done = a.board.write_back(&redis, w, Duration::ZERO).await;
    assert_eq!(done, Ok(WriteBack::Closed(1)));
    for x in [&a, &b] {
        x.board.refresh(w).await.unwrap();
        assert!(!x.board.view(w + 1).shared, "Redis alone again");
    }
    // "y" is in Redis now (its replay is also still behind the episode's fence).
    assert_eq!(
        redis.claim(claim("y", w + 2, s)).await,
        Ok(NonceClaim::Replay)
    );
    let replay = b.claim(claim("y", w + 2, s)).await;
    assert!(
        matches!(replay, Err(NonceError::Fenced { .. })),
        "{replay:?}"
    );
    // New claims go to Redis alone (the shared store does not see them).
    single_use(&b, "z", w + 3).await;
    assert!(!shared_holds(&ledger, "z"));
    // Nothing more to do until the next episode.
    let again = a.board.write_back(&redis, w + 5, Duration::ZERO).await;
    assert_eq!(again, Ok(WriteBack::Idle));
}

#[tokio::test]
async fn a_write_back_waits_until_redis_has_been_quiet() {
    let (ledger, redis) = (SharedLedger::default(), Arc::new(Primary::default()));
    let (a, _b, s) = after_an_outage(&redis, &ledger).await;
    let soon = a
        .board
        .write_back(&redis, s + 10, Duration::from_secs(1))
        .await;
    assert_eq!(soon, Ok(WriteBack::Idle));
    assert!(a.board.view(s + 20).shared);
}

#[tokio::test]
async fn trouble_reported_during_a_write_back_keeps_the_episode_open() {
    let (ledger, redis) = (SharedLedger::default(), Arc::new(Primary::default()));
    let (a, b, s) = after_an_outage(&redis, &ledger).await;
    let w = s + CONFIG.lease_ms + CONFIG.margin_ms;
    // While A writes back, B finds Redis down again and claims "q" in the shared
    // store alone, after A read it.
    let trouble = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        redis.down.store(true, Ordering::SeqCst);
        let q = w + 60;
        assert_eq!(b.claim(claim("q", q, q)).await, Ok(NonceClaim::Fresh));
        tokio::time::sleep(Duration::from_millis(20)).await; // the report lands
        redis.down.store(false, Ordering::SeqCst);
    };
    let (done, ()) = tokio::join!(
        a.board.write_back(&redis, w, Duration::from_millis(200)),
        trouble
    );
    assert_eq!(done, Ok(WriteBack::Superseded));
    a.board.refresh(w + 300).await.unwrap();
    assert!(a.board.view(w + 301).shared, "still claiming in both");
    // "q" never reached Redis, and is still refused (by the shared store).
    assert_eq!(
        redis.claim(claim("q", w + 302, w + 60)).await,
        Ok(NonceClaim::Fresh)
    );
    assert_eq!(
        a.claim(claim("q", w + 303, w + 60)).await,
        Ok(NonceClaim::Replay)
    );
}

#[tokio::test]
async fn after_a_close_new_trouble_begins_a_new_episode_with_its_own_fence() {
    let (ledger, redis) = (SharedLedger::default(), Arc::new(Primary::default()));
    let (a, _b, s) = after_an_outage(&redis, &ledger).await;
    let w = s + CONFIG.lease_ms + CONFIG.margin_ms;
    assert_eq!(
        a.board.write_back(&redis, w, Duration::ZERO).await,
        Ok(WriteBack::Closed(1))
    );
    a.board.refresh(w).await.unwrap();
    // "n" is accepted in Redis alone, then Redis loses everything: its replay must be
    // fenced (the old episode's fence is long past "n"'s stamp).
    let n = w + 100;
    assert_eq!(a.claim(claim("n", n, n)).await, Ok(NonceClaim::Fresh));
    assert!(!shared_holds(&ledger, "n"));
    redis.lose_everything();
    let replay = a.claim(claim("n", n + 10, n)).await;
    assert!(
        matches!(replay, Err(NonceError::Fenced { .. })),
        "{replay:?}"
    );
    // The board has a new, open episode.
    tokio::time::sleep(Duration::from_millis(50)).await; // the report lands
    let e = ledger.fence.lock().unwrap().unwrap();
    assert!(e.started_ms > s && e.closed_ms == 0, "{e:?}");
}

/// Started while Redis is unreachable, nothing claimed since: there is nothing to
/// write back, and still nothing may be closed until Redis answers.
#[tokio::test]
async fn an_episode_is_not_closed_while_redis_is_unreachable() {
    let (ledger, redis) = (SharedLedger::default(), Arc::new(Primary::default()));
    redis.down.store(true, Ordering::SeqCst);
    let a = instance(&redis, &ledger);
    let t = now_ms();
    a.board
        .begin_at_start(t, "redis unreachable at start-up")
        .await;
    a.board.refresh(t).await.unwrap();
    let later = t + 5_000;
    assert!(
        a.board
            .write_back(&redis, later, Duration::ZERO)
            .await
            .is_err()
    );
    assert_eq!(ledger.fence.lock().unwrap().unwrap().closed_ms, 0);
    assert!(a.board.view(later).shared);
}
