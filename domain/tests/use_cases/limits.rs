//! Abuse limits: init rate limits, the session cap, the encryption cap, the idle timeout, sampling.

use domain::policy::RequestedTtl;
use domain::{AbuseLimits, ExchangeError, ExchangeRequest, Family, InitError};
use ports::{Quotas, RateLimit, SessionStore};
use std::sync::atomic::Ordering;

use crate::helpers::*;

#[test]
fn init_rate_limits_answer_retry_after_and_consume_no_nonce() {
    let per_minute_2 = RateLimit {
        per_minute: 2,
        burst: 2,
    };
    let svc = limited(AbuseLimits {
        init_per_ip: per_minute_2,
        ..AbuseLimits::OFF
    });
    init_from(&svc, "192.0.2.1", "A", 1).unwrap();
    init_from(&svc, "192.0.2.1", "B", 2).unwrap();
    assert_eq!(
        init_from(&svc, "192.0.2.1", "C", 3),
        Err(InitError::RateLimited {
            scope: "per-IP",
            retry_after_ms: 30_000
        })
    );
    // Another address has its own budget; the refused request kept its nonce.
    init_from(&svc, "192.0.2.2", "C", 3).unwrap();
    // Even malformed requests count against the address.
    svc.ports().clock.0.store(NOW + 30_000, Ordering::SeqCst);
    let mut bad = init_req(
        Family::Unversioned,
        "junk",
        "A",
        vec![],
        RequestedTtl::Absent,
    );
    bad.remote_ip = Some("192.0.2.1".parse().unwrap());
    assert!(matches!(run(svc.init(bad)), Err(InitError::Header(_))));
    assert!(matches!(
        init_from(&svc, "192.0.2.1", "A", 4),
        Err(InitError::RateLimited { .. })
    ));

    let svc = limited(AbuseLimits {
        init_per_client: per_minute_2,
        ..AbuseLimits::OFF
    });
    init_from(&svc, "192.0.2.1", "A", 1).unwrap();
    init_from(&svc, "192.0.2.2", "A", 2).unwrap();
    assert_eq!(
        init_from(&svc, "192.0.2.3", "A", 3),
        Err(InitError::RateLimited {
            scope: "per-client",
            retry_after_ms: 30_000
        })
    );
    init_from(&svc, "192.0.2.3", "B", 3).unwrap();
    svc.ports().clock.0.store(NOW + 30_000, Ordering::SeqCst);
    init_from(&svc, "192.0.2.3", "A", 3).expect("same nonce, after Retry-After");
}

#[test]
fn sessions_per_client_are_capped_and_a_revocation_frees_a_slot() {
    let svc = limited(AbuseLimits {
        max_sessions_per_client: 2,
        ..AbuseLimits::OFF
    });
    let first = establish(&svc, "A", 1);
    establish(&svc, "A", 2);
    assert_eq!(
        init_from(&svc, "192.0.2.1", "A", 3),
        Err(InitError::TooManySessions)
    );
    init_from(&svc, "192.0.2.1", "B", 4).unwrap();
    // A replayed init gives its reservation back.
    assert_eq!(init_from(&svc, "192.0.2.1", "B", 4), Err(InitError::Replay));
    assert_eq!(svc.ports().quotas.sessions_of("B", NOW), 1);

    let req = first.seal_request(NOW, b"{}").unwrap();
    let mut body = req.envelope;
    run(svc.revoke(
        ExchangeRequest {
            call_key: None,
            kid: Some(first.kid()),
            idempotency_key: Some(&req.idempotency_key),
            client_id: Some("A"),
            line: domain::client::PURCHASE,
            body: &mut body,
        },
        |_| Ok(()),
    ))
    .unwrap();
    // The refused request consumed no nonce: the same one now goes through.
    init_from(&svc, "192.0.2.1", "A", 3).unwrap();
    // Expired sessions stop counting.
    svc.ports()
        .clock
        .0
        .store(NOW + 1800 * 1000 + 1, Ordering::SeqCst);
    init_from(&svc, "192.0.2.1", "A", 5).unwrap();
}

#[test]
fn a_session_key_is_refused_once_its_encryption_cap_is_reached() {
    // Each purchase is two encryptions: the client's request and the answer.
    let svc = limited(AbuseLimits {
        max_encryptions_per_session: 5,
        ..AbuseLimits::OFF
    });
    let s = establish(&svc, "A", 1);
    buy(&svc, &s).unwrap();
    buy(&svc, &s).unwrap();
    assert_eq!(buy(&svc, &s), Err(ExchangeError::KeyExhausted));
    // Ended: the client must start a new session.
    assert_eq!(buy(&svc, &s), Err(ExchangeError::SessionUnknown));
    assert!(
        run(svc.ports().sessions.get(&s.kid()[8..]))
            .unwrap()
            .is_none()
    );
    let fresh = establish(&svc, "A", 2);
    buy(&svc, &fresh).unwrap();

    // Forgeries and replays are not counted.
    let svc = limited(AbuseLimits {
        max_encryptions_per_session: 4,
        ..AbuseLimits::OFF
    });
    let s = establish(&svc, "A", 1);
    let req = s.seal_request(NOW, b"{}").unwrap();
    let (mut once, mut again) = (req.envelope.clone(), req.envelope.clone());
    purchase(&svc, &s, &req.idempotency_key, &mut once).unwrap();
    assert_eq!(
        purchase(&svc, &s, &req.idempotency_key, &mut again),
        Err(ExchangeError::Replay)
    );
    buy(&svc, &s).expect("2 + 2 encryptions: at the cap, not over it");
}

#[test]
fn an_idle_session_ends_but_a_busy_one_lives_to_its_ttl() {
    let svc = limited(AbuseLimits {
        idle_timeout_sec: 60,
        ..AbuseLimits::OFF
    });
    let busy = establish(&svc, "A", 1);
    let idle = establish(&svc, "A", 2);
    let never_used = establish(&svc, "A", 3);
    for step in 1..=3 {
        svc.ports()
            .clock
            .0
            .store(NOW + step * 50_000, Ordering::SeqCst);
        buy(&svc, &busy).unwrap();
    }
    svc.ports().clock.0.store(NOW + 50_000, Ordering::SeqCst);
    buy(&svc, &idle).unwrap();
    svc.ports().clock.0.store(NOW + 110_001, Ordering::SeqCst);
    assert_eq!(buy(&svc, &idle), Err(ExchangeError::SessionIdle));
    assert_eq!(buy(&svc, &idle), Err(ExchangeError::SessionUnknown));
    // Idle since its creation.
    assert_eq!(buy(&svc, &never_used), Err(ExchangeError::SessionIdle));
    buy(&svc, &busy).unwrap();
}

#[test]
fn large_encryption_caps_are_counted_by_unbiased_sampling() {
    // The default cap samples one purchase in 64, recorded with weight 2 × 64.
    let svc = limited(AbuseLimits {
        max_encryptions_per_session: 1 << 24,
        ..AbuseLimits::OFF
    });
    let s = establish(&svc, "A", 1);
    let purchases = 4000;
    for _ in 0..purchases {
        buy(&svc, &s).unwrap();
    }
    let record = run(svc.ports().sessions.get(&s.kid()[8..]))
        .unwrap()
        .unwrap();
    let counted = run(svc.ports().quotas.touch(&record, 0, NOW, 0))
        .unwrap()
        .uses;
    assert_eq!(counted % 128, 0, "whole samples only");
    // 62.5 samples expected (σ ≈ 7.8): anything in 30..=100 is within about 4σ.
    let samples = counted / 128;
    assert!(
        (30..=100).contains(&samples),
        "{samples} samples for {purchases} purchases"
    );
}
