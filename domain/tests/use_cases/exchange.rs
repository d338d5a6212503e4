//! The authenticated exchange: round trip, session states, decryption and payload failures, a full nonce store, and the AAD properties.

use domain::PayloadError;
use domain::client::{ClientSession, Handshake};
use domain::policy::RequestedTtl;
use domain::{
    Aad, ExchangeError, ExchangeRequest, Family, InitError, ServiceConfig, SessionService,
};
use memory::{MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::{NoCache, SessionStore, Stores};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::helpers::*;

#[test]
fn init_then_purchase_round_trip() {
    let svc = service();
    let s = establish(&svc, "NODE_CLIENT", 1);
    let req = s.seal_request(NOW, br#"{"x":1}"#).unwrap();
    let mut body = req.envelope.clone();
    assert_eq!(
        purchase(&svc, &s, &req.idempotency_key, &mut body).unwrap(),
        br#"echo:{"x":1}"#
    );
    assert!(body.iter().all(|&b| b == 0), "request body is wiped");
    // the exact same request again is a replay
    let mut body = req.envelope.clone();
    assert_eq!(
        purchase(&svc, &s, &req.idempotency_key, &mut body),
        Err(ExchangeError::Replay)
    );
}

#[test]
fn purchase_session_states() {
    let svc = service();
    let s = establish(&svc, "OWNER", 1);
    // another client presenting the session: generic 400 family error, not 401/403
    let other = ClientSession::from_key(CRYPTO, &s.kid()[8..], "THIEF", s.key().clone());
    let req = other.seal_request(NOW, b"{}").unwrap();
    let mut body = req.envelope;
    assert_eq!(
        purchase(&svc, &other, &req.idempotency_key, &mut body),
        Err(ExchangeError::ClientMismatch)
    );
    // malformed and unknown ids
    for (sid, want) in [
        ("S-XYZ", ExchangeError::SessionMalformed),
        (
            "S-00000000000000000000000000000000",
            ExchangeError::SessionUnknown,
        ),
    ] {
        let ghost = ClientSession::from_key(CRYPTO, sid, "OWNER", s.key().clone());
        let req = ghost.seal_request(NOW, b"{}").unwrap();
        let mut body = req.envelope;
        assert_eq!(
            purchase(&svc, &ghost, &req.idempotency_key, &mut body),
            Err(want)
        );
    }
    // expiry: usable at expiresAt, gone one ms later, and deleted
    let expires = NOW + 1800 * 1000;
    svc.ports().clock.0.store(expires, Ordering::SeqCst);
    let req = s.seal_request(expires, b"{}").unwrap();
    let mut body = req.envelope;
    assert!(
        run(svc.exchange_plain(
            ExchangeRequest {
                call_key: None,
                kid: Some(s.kid()),
                idempotency_key: Some(&req.idempotency_key),
                client_id: Some("OWNER"),
                line: domain::client::PURCHASE,
                body: &mut body
            },
            echo(&svc)
        ))
        .is_ok()
    );
    svc.ports().clock.0.store(expires + 1, Ordering::SeqCst);
    let req = s.seal_request(expires + 1, b"{}").unwrap();
    let mut body = req.envelope;
    let r = run(svc.exchange_plain(
        ExchangeRequest {
            call_key: None,
            kid: Some(s.kid()),
            idempotency_key: Some(&req.idempotency_key),
            client_id: Some("OWNER"),
            line: domain::client::PURCHASE,
            body: &mut body,
        },
        echo(&svc),
    ));
    assert_eq!(r.unwrap_err(), ExchangeError::SessionExpired);
    assert!(
        run(svc.ports().sessions.get(&s.kid()[8..]))
            .unwrap()
            .is_none()
    );
}

#[test]
fn failed_decryption_does_not_burn_the_nonce() {
    let svc = service();
    let s = establish(&svc, "C", 1);
    let req = s.seal_request(NOW, b"{}").unwrap();
    let mut tampered = req.envelope.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(matches!(
        purchase(&svc, &s, &req.idempotency_key, &mut tampered),
        Err(ExchangeError::Envelope(_))
    ));
    let mut short = vec![0u8; 27];
    assert!(matches!(
        purchase(&svc, &s, &req.idempotency_key, &mut short),
        Err(ExchangeError::Envelope(_))
    ));
    let mut body = req.envelope;
    assert!(purchase(&svc, &s, &req.idempotency_key, &mut body).is_ok());
}

#[test]
fn payload_rejection_is_reported() {
    let svc = service();
    let s = establish(&svc, "C", 1);
    let req = s.seal_request(NOW, b"{}").unwrap();
    let mut body = req.envelope;
    let r = run(
        svc.exchange_plain(request(&s, &req.idempotency_key, &mut body), |_, _| {
            Err(PayloadError::Amount)
        }),
    );
    assert_eq!(r.unwrap_err(), ExchangeError::Payload(PayloadError::Amount));
}

#[test]
fn nonce_store_full_fails_closed() {
    let svc = SessionService::new(
        CRYPTO,
        Stores {
            sessions: MemorySessionStore::new(100),
            cache: NoCache,
            nonces: MemoryNonceStore::new(1),
            clock: FakeClock(AtomicU64::new(NOW)),
            quotas: MemoryQuotas::default(),
        },
        ServiceConfig::default(),
    );
    let pk = Handshake::start(CRYPTO).unwrap().public_key().0.to_vec();
    let (k1, k2) = (key(1), key(2));
    assert!(
        run(svc.init(init_req(
            Family::V1Paths,
            &k1,
            "C",
            pk.clone(),
            RequestedTtl::Absent
        )))
        .is_ok()
    );
    let r = run(svc.init(init_req(
        Family::V1Paths,
        &k2,
        "C",
        pk,
        RequestedTtl::Absent,
    )));
    assert!(matches!(
        r,
        Err(InitError::NonceStore(ports::NonceError::Full))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn envelope_round_trips_any_plaintext(plain in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let s = fixed_session();
        let aad = Aad::new("1", "n", s.kid(), s.client_id());
        let env = domain::seal_envelope(CRYPTO.aead, CRYPTO.random, s.key(), &aad, plain.clone()).unwrap();
        prop_assert_eq!(env.len(), plain.len() + 28);
        let mut buf = env;
        let opened = domain::open_envelope(CRYPTO.aead, s.key(), &aad, &mut buf).unwrap();
        prop_assert_eq!(&*opened, plain.as_slice());
    }

    #[test]
    fn any_change_fails_to_open(
        plain in proptest::collection::vec(any::<u8>(), 0..256),
        field in 0usize..4,
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let fields = ["1706700000000", "123e4567-e89b-42d3-a456-426614174000", "session:S-000102030405060708090a0b0c0d0e0f", "NODE_CLIENT"];
        let s = fixed_session();
        let aad = Aad::new(fields[0], fields[1], fields[2], fields[3]);
        let env = domain::seal_envelope(CRYPTO.aead, CRYPTO.random, s.key(), &aad, plain).unwrap();

        // change one AAD field (append a byte) → fails
        let mut changed = fields.map(str::to_owned);
        changed[field].push('0');
        let aad2 = Aad::new(&changed[0], &changed[1], &changed[2], &changed[3]);
        let mut buf = env.clone();
        prop_assert!(domain::open_envelope(CRYPTO.aead, s.key(), &aad2, &mut buf).is_err());

        // flip one bit anywhere in IV, ciphertext or tag → fails
        let mut buf = env.clone();
        let i = flip.index(buf.len());
        buf[i] ^= 1 << bit;
        prop_assert!(domain::open_envelope(CRYPTO.aead, s.key(), &aad, &mut buf).is_err());

        // truncation → fails
        let mut buf = env[..env.len() - 1].to_vec();
        prop_assert!(domain::open_envelope(CRYPTO.aead, s.key(), &aad, &mut buf).is_err());
    }
}

#[test]
fn a_plaintext_refused_by_its_route_does_not_use_up_the_nonce() {
    let svc = service();
    let s = establish(&svc, "C", 1);
    let req = s.seal_request(NOW, br#"{"x":1}"#).unwrap();
    let mut body = req.envelope.clone();
    let r = run(
        svc.exchange_plain(request(&s, &req.idempotency_key, &mut body), |_, _| {
            Err(PayloadError::Shape("not this route's plaintext"))
        }),
    );
    assert!(matches!(r, Err(ExchangeError::Payload(_))));
    // The same request on the route it was made for still goes through, once.
    let mut body = req.envelope.clone();
    assert!(purchase(&svc, &s, &req.idempotency_key, &mut body).is_ok());
    let mut body = req.envelope;
    assert_eq!(
        purchase(&svc, &s, &req.idempotency_key, &mut body),
        Err(ExchangeError::Replay)
    );
}

#[test]
fn a_request_stamped_a_window_ahead_is_never_accepted_twice() {
    // Defaults: window 300 s, nonce TTL 600 s = exactly 2 × window.
    let svc = service();
    let s = establish(&svc, "C", 1);
    let window = ServiceConfig::default().replay.window_ms();
    let req = s.seal_request(NOW + window, br#"{"x":1}"#).unwrap();
    let mut body = req.envelope.clone();
    assert!(purchase(&svc, &s, &req.idempotency_key, &mut body).is_ok());
    // The last instant the request still passes the window: first use + 2 × window.
    svc.ports()
        .clock
        .0
        .store(NOW + 2 * window, Ordering::SeqCst);
    let mut body = req.envelope;
    assert_eq!(
        purchase(&svc, &s, &req.idempotency_key, &mut body),
        Err(ExchangeError::Replay)
    );
}

#[test]
fn a_response_nonce_is_refused_as_a_request_nonce() {
    let svc = service();
    let s = establish(&svc, "C", 1);
    let req = s.seal_request(NOW, br#"{"x":1}"#).unwrap();
    let mut body = req.envelope;
    let out = run(
        svc.exchange_plain(request(&s, &req.idempotency_key, &mut body), |plain, _| {
            Ok(plain.to_vec())
        }),
    )
    .unwrap();
    // The answer's key and body, sent back as a request: its nonce is marked.
    let mut reflected = out.envelope;
    assert!(matches!(
        purchase(&svc, &s, &out.idempotency_key, &mut reflected),
        Err(ExchangeError::Header(_))
    ));
}
