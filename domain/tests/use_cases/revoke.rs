//! Revocation: final, even against a lookup that read the store before it committed.

use std::sync::atomic::AtomicU64;

use domain::{ExchangeError, ServiceConfig, SessionService};
use memory::{LocalSessionCache, MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::{SessionCache, SessionStore, Stores};

use crate::helpers::*;

#[test]
fn a_cache_refill_racing_a_revocation_does_not_bring_the_session_back() {
    // The in-process cache keeps time by the wall clock, so this service does too.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let svc = SessionService::new(
        CRYPTO,
        Stores {
            sessions: MemorySessionStore::new(100),
            cache: LocalSessionCache::new(3_600_000, 100),
            nonces: MemoryNonceStore::new(100),
            clock: FakeClock(AtomicU64::new(now)),
            quotas: MemoryQuotas::default(),
        },
        ServiceConfig::default(),
    );
    let ports = svc.ports();
    let hs = domain::client::Handshake::start(CRYPTO).unwrap();
    let key = format!("{now}.nonce-0000000000000001");
    let out = run(svc.init(init_req(
        domain::Family::Unversioned,
        &key,
        "C",
        hs.public_key().0.to_vec(),
        domain::policy::RequestedTtl::Absent,
    )))
    .unwrap();
    let s = hs
        .finish(out.session_id.as_str(), &out.server_public_key.0, "C")
        .unwrap();
    let id = out.session_id.as_str().to_owned();

    // Another instance misses its cache and reads the store before the revocation...
    run(ports.cache.delete(&id)).unwrap();
    let stale = run(ports.sessions.get(&id)).unwrap().unwrap();
    // ...the revocation commits (store, then cache)...
    let req = s.seal_request(now, br#"{"action":"revoke"}"#).unwrap();
    let mut body = req.envelope;
    run(svc.revoke(request(&s, &req.idempotency_key, &mut body), |_| Ok(()))).unwrap();
    // ...and then the other lookup refills the cache with what it read.
    let _ = run(ports.cache.put(&stale));

    let req = s.seal_request(now, br#"{"x":1}"#).unwrap();
    let mut body = req.envelope;
    let r = run(
        svc.exchange_plain(request(&s, &req.idempotency_key, &mut body), |plain, _| {
            Ok(plain.to_vec())
        }),
    );
    assert_eq!(
        r.unwrap_err(),
        ExchangeError::SessionUnknown,
        "the revocation holds"
    );
}
