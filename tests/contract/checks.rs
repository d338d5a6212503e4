//! The contract of each store port, as checks any implementation must pass. Every
//! check uses ids of its own, so one store can run several.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ports::{
    Claim, NonceClaim, NonceStore, Quotas, RateDecision, RateLimit, Reservation, SessionCache,
    SessionKey, SessionKeys, SessionKind, SessionRecord, SessionStore, StoreError,
};

use crate::support::now;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh `S-` + 32 hex id.
fn session_id() -> String {
    format!(
        "S-{:08x}{:08x}{:016x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        now()
    )
}

fn record(id: &str, created_at_ms: u64, ttl_ms: u64) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        keys: SessionKeys::V1(SessionKey::from_bytes([0x5a; 32])),
        kind: SessionKind::Authenticated,
        client_id: "CONTRACT_CLIENT".into(),
        created_at_ms,
        expires_at_ms: created_at_ms + ttl_ms,
        at_rest: Default::default(),
    }
}

/// A protocol v2 session: two directional keys, which must come back as such.
fn v2_record(id: &str, created_at_ms: u64) -> SessionRecord {
    SessionRecord {
        keys: SessionKeys::V2 {
            request: SessionKey::from_bytes([0x11; 32]),
            response: SessionKey::from_bytes([0x22; 32]),
        },
        ..record(id, created_at_ms, 600_000)
    }
}

fn assert_same(found: &SessionRecord, expected: &SessionRecord) {
    assert_eq!(found.id, expected.id);
    assert_eq!(found.keys.protocol(), expected.keys.protocol());
    assert!(
        found.keys.ct_eq(&expected.keys),
        "the keys come back unchanged"
    );
    assert_eq!(found.kind, expected.kind);
    assert_eq!(found.client_id, expected.client_id);
    assert_eq!(found.created_at_ms, expected.created_at_ms);
    assert_eq!(found.expires_at_ms, expected.expires_at_ms);
}

/// Insert, read back, refuse a duplicate without overwriting, delete (also an absent
/// id), and miss an unknown id.
pub(crate) async fn session_store<S: SessionStore>(store: Arc<S>) {
    let t = now();
    let a = record(&session_id(), t, 600_000);
    store.insert(&a).await.unwrap();
    assert_same(&store.get(&a.id).await.unwrap().expect("inserted"), &a);

    // The same id again: never an overwrite. The same record is refused; one that
    // differs (here in its expiry, which PostgreSQL partitions by) is refused, or
    // stored beside the first and then the id is never served.
    assert_eq!(store.insert(&a).await, Err(StoreError::Duplicate));
    assert_same(&store.get(&a.id).await.unwrap().unwrap(), &a);
    let mut other = record(&a.id, t + 1, 900_000);
    other.client_id = "SOMEONE_ELSE".into();
    match store.insert(&other).await {
        Err(StoreError::Duplicate) => {
            assert_same(
                &store.get(&a.id).await.unwrap().expect("the first stays"),
                &a,
            );
        }
        Ok(()) => assert!(
            store.get(&a.id).await.unwrap().is_none(),
            "an id stored twice is not served"
        ),
        Err(e) => panic!("{e}"),
    }

    assert!(store.get(&session_id()).await.unwrap().is_none());
    let v2 = v2_record(&session_id(), t);
    store.insert(&v2).await.unwrap();
    assert_same(&store.get(&v2.id).await.unwrap().expect("inserted"), &v2);
    store.delete(&a.id).await.unwrap();
    assert!(store.get(&a.id).await.unwrap().is_none());
    store.delete(&a.id).await.unwrap();

    // Inserts running at once all land.
    let ids: Vec<String> = (0..20).map(|_| session_id()).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, r) = (Arc::clone(&store), record(id, t, 600_000));
            async move { store.insert(&r).await }
        })
        .collect();
    for result in futures_util::future::join_all(tasks).await {
        result.unwrap();
    }
    for id in &ids {
        assert!(store.get(id).await.unwrap().is_some(), "{id}");
    }
}

/// Put, get, delete, miss.
pub(crate) async fn session_cache<C: SessionCache>(cache: Arc<C>) {
    let a = record(&session_id(), now(), 600_000);
    assert!(cache.get(&a.id).await.unwrap().is_none());
    cache.put(&a).await.unwrap();
    assert_same(&cache.get(&a.id).await.unwrap().expect("cached"), &a);
    cache.delete(&a.id).await.unwrap();
    assert!(cache.get(&a.id).await.unwrap().is_none());
    cache.delete(&a.id).await.unwrap();
    let v2 = v2_record(&session_id(), now());
    cache.put(&v2).await.unwrap();
    assert_same(&cache.get(&v2.id).await.unwrap().expect("cached"), &v2);

    // A revoked session stays out: a later refill (a lookup that read the store before
    // the revocation) is refused.
    let b = record(&session_id(), now(), 600_000);
    cache.put(&b).await.unwrap();
    cache.revoke(&b).await.unwrap();
    assert!(cache.get(&b.id).await.unwrap().is_none());
    assert_eq!(cache.put(&b).await, Err(StoreError::Revoked));
    assert!(cache.get(&b.id).await.unwrap().is_none());
}

/// A claim of `key` stamped at `now_ms`.
fn claim(key: &str, ttl_sec: u64, now_ms: u64) -> Claim<'_> {
    Claim {
        key,
        ttl_sec,
        now_ms,
        stamped_ms: now_ms,
    }
}

/// Single use: fresh once, then a replay until the TTL has passed; keys independent;
/// of sixteen concurrent claims of one key exactly one is fresh.
pub(crate) async fn nonce_store<N: NonceStore + 'static>(store: Arc<N>) {
    let key = format!("nonce:CONTRACT:{}", session_id());
    let t = now();
    assert_eq!(
        store.claim(claim(&key, 600, t)).await,
        Ok(NonceClaim::Fresh)
    );
    assert_eq!(
        store.claim(claim(&key, 600, t + 1)).await,
        Ok(NonceClaim::Replay)
    );
    let other = format!("{key}-other");
    assert_eq!(
        store.claim(claim(&other, 600, t)).await,
        Ok(NonceClaim::Fresh)
    );

    let contested = format!("{key}-contested");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, key) = (Arc::clone(&store), contested.clone());
            tokio::spawn(async move { store.claim(claim(&key, 600, now())).await })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(NonceClaim::Fresh) => fresh += 1,
            Ok(NonceClaim::Replay) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(fresh, 1, "exactly one of the concurrent claims is fresh");

    let short = format!("{key}-short");
    assert_eq!(
        store.claim(claim(&short, 1, now())).await,
        Ok(NonceClaim::Fresh)
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        store.claim(claim(&short, 1, now())).await,
        Ok(NonceClaim::Fresh),
        "a claim lapses after its TTL"
    );
}

/// The rate limit (burst, then a wait; keys independent), the session cap (a refusal,
/// a release that makes room) and the use counters (counts as they were before the
/// call; the last use moves unless the session was idle).
pub(crate) async fn quotas<Q: Quotas>(q: Arc<Q>) {
    let t = now();
    let limit = RateLimit {
        per_minute: 60,
        burst: 2,
    };
    let key = format!("ip:contract-{}", session_id());
    for _ in 0..2 {
        assert_eq!(q.rate(&key, limit, t).await, Ok(RateDecision::Allowed));
    }
    match q.rate(&key, limit, t).await {
        Ok(RateDecision::Limited { retry_after_ms }) => {
            assert!((1..=1_000).contains(&retry_after_ms), "{retry_after_ms}")
        }
        other => panic!("expected a wait, got {other:?}"),
    }
    let other_key = format!("{key}-other");
    assert_eq!(
        q.rate(&other_key, limit, t).await,
        Ok(RateDecision::Allowed)
    );

    let client = format!("CONTRACT-{}", session_id());
    let (s1, s2, s3) = (session_id(), session_id(), session_id());
    let expires = t + 600_000;
    assert_eq!(
        q.reserve_session(Reservation {
            client_id: &client,
            session_id: &s1,
            expires_at_ms: expires,
            cap: 2,
            now_ms: t
        })
        .await,
        Ok(true)
    );
    assert_eq!(
        q.reserve_session(Reservation {
            client_id: &client,
            session_id: &s2,
            expires_at_ms: expires,
            cap: 2,
            now_ms: t
        })
        .await,
        Ok(true)
    );
    assert_eq!(
        q.reserve_session(Reservation {
            client_id: &client,
            session_id: &s3,
            expires_at_ms: expires,
            cap: 2,
            now_ms: t
        })
        .await,
        Ok(false)
    );
    q.release_session(&client, &s1, expires).await.unwrap();
    assert_eq!(
        q.reserve_session(Reservation {
            client_id: &client,
            session_id: &s3,
            expires_at_ms: expires,
            cap: 2,
            now_ms: t
        })
        .await,
        Ok(true)
    );

    // Without an idle limit: only the count matters.
    let counted = record(&session_id(), t, 600_000);
    assert_eq!(q.touch(&counted, 2, t, 0).await.unwrap().uses, 0);
    assert_eq!(q.touch(&counted, 2, t + 1, 0).await.unwrap().uses, 2);
    assert_eq!(q.touch(&counted, 1, t + 2, 0).await.unwrap().uses, 4);

    // With one: the first use reports the creation, later ones the last use.
    let idle = record(&session_id(), t - 5_000, 600_000);
    let first = q.touch(&idle, 2, t, 60_000).await.unwrap();
    assert_eq!((first.uses, first.last_used_ms), (0, t - 5_000));
    let second = q.touch(&idle, 2, t + 10, 60_000).await.unwrap();
    assert_eq!((second.uses, second.last_used_ms), (2, t));
}
