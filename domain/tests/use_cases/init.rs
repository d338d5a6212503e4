//! Creating sessions: replay and window, nonces that must not burn, headers, TTL rules, a failed store write.

use domain::client::Handshake;
use domain::policy::RequestedTtl;
use domain::{Family, HeaderError, InitError, ServiceConfig, SessionService, V1TtlPolicy};
use memory::{MemoryNonceStore, MemoryQuotas};
use ports::{SessionKind, SessionStore, Stores};
use std::sync::atomic::AtomicU64;

use crate::helpers::*;

#[test]
fn init_replay_and_window() {
    let svc = service();
    let hs = Handshake::start(CRYPTO).unwrap();
    let pk = hs.public_key().0.to_vec();
    let k = key(1);
    assert!(
        run(svc.init(init_req(
            Family::Unversioned,
            &k,
            "C",
            pk.clone(),
            RequestedTtl::Absent
        )))
        .is_ok()
    );
    assert_eq!(
        run(svc.init(init_req(
            Family::Unversioned,
            &k,
            "C",
            pk.clone(),
            RequestedTtl::Absent
        )))
        .unwrap_err(),
        InitError::Replay
    );
    // per-client nonce scope: another client may use the same nonce
    assert!(
        run(svc.init(init_req(
            Family::Unversioned,
            &k,
            "D",
            pk.clone(),
            RequestedTtl::Absent
        )))
        .is_ok()
    );
    for (ts, ok) in [
        (NOW - 300_000, true),
        (NOW + 300_000, true),
        (NOW - 300_001, false),
        (NOW + 300_001, false),
    ] {
        let k = format!("{ts}.window-nonce-{ts}");
        let r = run(svc.init(init_req(
            Family::Unversioned,
            &k,
            "C",
            pk.clone(),
            RequestedTtl::Absent,
        )));
        assert_eq!(r.is_ok(), ok, "{ts}");
        if !ok {
            assert_eq!(r.unwrap_err(), InitError::OutsideWindow);
        }
    }
}

#[test]
fn rejected_init_does_not_burn_the_nonce() {
    let svc = service();
    let k = key(7);
    let mut off_curve = Handshake::start(CRYPTO).unwrap().public_key().0.to_vec();
    off_curve[64] ^= 1;
    let r = run(svc.init(init_req(
        Family::Unversioned,
        &k,
        "C",
        off_curve,
        RequestedTtl::Absent,
    )));
    assert!(matches!(r, Err(InitError::PublicKey(_))));
    let bad_ttl = run(svc.init(init_req(
        Family::Unversioned,
        &k,
        "C",
        vec![4; 65],
        RequestedTtl::Number(1.5),
    )));
    assert!(bad_ttl.is_err());
    let pk = Handshake::start(CRYPTO).unwrap().public_key().0.to_vec();
    let r = run(svc.init(init_req(
        Family::Unversioned,
        &k,
        "C",
        pk.clone(),
        RequestedTtl::Number(1.5),
    )));
    assert_eq!(r.unwrap_err(), InitError::Ttl);
    // the same key is still usable by a correct request
    assert!(
        run(svc.init(init_req(
            Family::Unversioned,
            &k,
            "C",
            pk,
            RequestedTtl::Absent
        )))
        .is_ok()
    );
}

#[test]
fn missing_and_malformed_headers() {
    let svc = service();
    let pk = Handshake::start(CRYPTO).unwrap().public_key().0.to_vec();
    let mut req = init_req(
        Family::Unversioned,
        "",
        "C",
        pk.clone(),
        RequestedTtl::Absent,
    );
    assert_eq!(
        run(svc.init(req)).unwrap_err(),
        InitError::Header(HeaderError::Missing("X-Idempotency-Key"))
    );
    req = init_req(
        Family::Unversioned,
        "x",
        "C",
        pk.clone(),
        RequestedTtl::Absent,
    );
    req.client_id = None;
    assert_eq!(
        run(svc.init(req)).unwrap_err(),
        InitError::Header(HeaderError::Missing("X-ClientId"))
    );
    let k = format!("{NOW}.");
    let req = init_req(Family::Unversioned, &k, "C", pk, RequestedTtl::Absent);
    assert!(matches!(
        run(svc.init(req)).unwrap_err(),
        InitError::Header(HeaderError::IdempotencyKey(_))
    ));
}

#[test]
fn ttl_rules_per_family() {
    let svc = service_with(ServiceConfig {
        v1_ttl: V1TtlPolicy {
            trust_upstream_auth: true,
            ..V1TtlPolicy::DEFAULT
        },
        ..ServiceConfig::default()
    });
    let pk = Handshake::start(CRYPTO).unwrap().public_key().0.to_vec();
    let cases = [
        (
            Family::Unversioned,
            RequestedTtl::Number(60.0),
            None,
            300,
            "A256GCM",
        ),
        (
            Family::Unversioned,
            RequestedTtl::Number(99_999.0),
            None,
            3600,
            "A256GCM",
        ),
        (
            Family::V1Paths,
            RequestedTtl::Number(300.0),
            None,
            1800,
            "aes-256-gcm",
        ),
        (
            Family::V1Paths,
            RequestedTtl::Absent,
            Some("Bearer x"),
            3600,
            "aes-256-gcm",
        ),
        (
            Family::V1Paths,
            RequestedTtl::Absent,
            Some(""),
            1800,
            "aes-256-gcm",
        ),
    ];
    for (i, (family, ttl, auth, want, alg)) in cases.into_iter().enumerate() {
        let k = key(100 + i as u32);
        let mut req = init_req(family, &k, "C", pk.clone(), ttl);
        req.authorization = auth;
        let out = run(svc.init(req)).unwrap();
        assert_eq!((out.expires_in_sec, out.enc_alg), (want, alg), "case {i}");
        let rec = run(svc.ports().sessions.get(out.session_id.as_str()))
            .unwrap()
            .unwrap();
        assert_eq!(rec.expires_at_ms, NOW + want * 1000);
        let kind = if want == 3600 && family == Family::V1Paths {
            SessionKind::Authenticated
        } else {
            SessionKind::Anonymous
        };
        assert_eq!(rec.kind, kind);
    }
    // without trust, Authorization buys nothing
    let svc = service();
    let k = key(200);
    let mut req = init_req(Family::V1Paths, &k, "C", pk, RequestedTtl::Absent);
    req.authorization = Some("Bearer anything");
    assert_eq!(run(svc.init(req)).unwrap().expires_in_sec, 1800);
}

#[test]
fn a_failed_store_write_answers_store_error_and_leaves_no_cache_entry() {
    let svc = with_store_and_cache(DownStore, RecordingCache::default());
    let r = init_once(&svc);
    assert!(matches!(r, Err(InitError::Store(_))), "{r:?}");
    // the cache write went out before the store write, and was withdrawn
    assert!(svc.ports().cache.0.lock().unwrap().is_empty());
}

/// A store whose insert reports whether the cache already held the session.
struct CheckingStore(
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    std::sync::Mutex<Vec<bool>>,
);
impl SessionStore for CheckingStore {
    async fn insert(&self, r: &ports::SessionRecord) -> Result<(), ports::StoreError> {
        let cached = self.0.lock().unwrap().contains(&r.id);
        self.1.lock().unwrap().push(cached);
        Ok(())
    }
    async fn get(&self, _: &str) -> Result<Option<ports::SessionRecord>, ports::StoreError> {
        Ok(None)
    }
    async fn delete(&self, _: &str) -> Result<(), ports::StoreError> {
        Ok(())
    }
}

/// The cache entry of a new session exists before its durable write: a revocation can
/// find the session only in the store, so its tombstone always lands after the entry
/// (which is why the entry needs no check for one).
#[test]
fn a_new_session_is_cached_before_it_is_stored() {
    let cache = RecordingCache::default();
    let sessions = CheckingStore(std::sync::Arc::clone(&cache.0), Default::default());
    let svc = with_store_and_cache(sessions, cache);
    let out = init_once(&svc);
    assert!(out.is_ok(), "{out:?}");
    assert_eq!(*svc.ports().sessions.1.lock().unwrap(), vec![true]);
}

/// A service over this session store and cache (memory nonces and quotas).
fn with_store_and_cache<S: SessionStore + 'static, C: ports::SessionCache + 'static>(
    sessions: S,
    cache: C,
) -> SessionService<Stores<S, C, MemoryNonceStore, FakeClock, MemoryQuotas>> {
    SessionService::new(
        CRYPTO,
        Stores {
            sessions,
            cache,
            nonces: MemoryNonceStore::new(100),
            clock: FakeClock(AtomicU64::new(NOW)),
            quotas: MemoryQuotas::default(),
        },
        ServiceConfig::default(),
    )
}

/// One unversioned init of client `C`.
fn init_once<P: ports::Ports>(svc: &SessionService<P>) -> Result<domain::InitOutcome, InitError> {
    let pk = Handshake::start(CRYPTO).unwrap().public_key().0.to_vec();
    let k = key(1);
    run(svc.init(init_req(
        Family::Unversioned,
        &k,
        "C",
        pk,
        RequestedTtl::Absent,
    )))
}
