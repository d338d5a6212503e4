//! The use cases end to end on the memory stores, the pure-Rust backend and a fake clock.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use domain::client::{ClientSession, Handshake};
use domain::encoding::base64_decode;
use domain::policy::RequestedTtl;
use domain::purchase::PayloadError;
use domain::{
    Aad, AbuseLimits, ExchangeError, ExchangeRequest, Family, HeaderError, InitBody, InitError,
    InitRequest, ReplayPolicy, ServiceConfig, SessionService, V1TtlPolicy,
};
use memory::{MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::{Clock, CryptoProvider, NoCache, Quotas, RateLimit, SessionKind, SessionStore, Stores};
use proptest::prelude::*;

const NOW: u64 = 1_706_700_000_000;
const CRYPTO: CryptoProvider = crypto_rustcrypto::PROVIDER;

#[derive(Debug)]
struct FakeClock(AtomicU64);
impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn monotonic_ns(&self) -> u64 {
        0
    }
}

type Service =
    SessionService<Stores<MemorySessionStore, NoCache, MemoryNonceStore, FakeClock, MemoryQuotas>>;

fn service_with(config: ServiceConfig) -> Service {
    SessionService::new(
        CRYPTO,
        Stores {
            sessions: MemorySessionStore::new(100),
            cache: NoCache,
            nonces: MemoryNonceStore::new(10_000),
            clock: FakeClock(AtomicU64::new(NOW)),
            quotas: MemoryQuotas::default(),
        },
        config,
    )
}

fn service() -> Service {
    service_with(ServiceConfig::default())
}

fn run<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

fn key(n: u32) -> String {
    format!("{NOW}.nonce-{n:0>16}")
}

fn init_req<'a>(
    family: Family,
    idem: &'a str,
    client: &'a str,
    pk: Vec<u8>,
    ttl: RequestedTtl,
) -> InitRequest<'a> {
    InitRequest {
        family,
        idempotency_key: Some(idem),
        client_id: Some(client),
        authorization: None,
        remote_ip: None,
        body: Ok(InitBody {
            client_public_key: pk,
            ttl,
        }),
    }
}

/// init through the service, then derive the client session.
fn establish(svc: &Service, client: &str, n: u32) -> ClientSession {
    let hs = Handshake::start(CRYPTO).unwrap();
    let k = key(n);
    let out = run(svc.init(init_req(
        Family::Unversioned,
        &k,
        client,
        hs.public_key().0.to_vec(),
        RequestedTtl::Absent,
    )))
    .unwrap();
    hs.finish(out.session_id.as_str(), &out.server_public_key.0, client)
        .unwrap()
}

fn echo(
    svc: &Service,
) -> impl FnOnce(&[u8], &domain::ResponseContext) -> Result<Vec<u8>, PayloadError> + '_ {
    |plain: &[u8], _: &domain::ResponseContext| {
        let _ = svc;
        Ok([b"echo:".as_slice(), plain].concat())
    }
}

fn purchase(
    svc: &Service,
    s: &ClientSession,
    idem: &str,
    body: &mut [u8],
) -> Result<Vec<u8>, ExchangeError> {
    let out = run(svc.exchange(
        ExchangeRequest {
            kid: Some(s.kid()),
            idempotency_key: Some(idem),
            client_id: Some(s.client_id()),
            body,
        },
        echo(svc),
    ))?;
    let plain = s
        .open_response(
            &out.idempotency_key,
            out.envelope,
            NOW,
            &ReplayPolicy::DEFAULT,
        )
        .unwrap();
    Ok(plain.to_vec())
}

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
            Family::V1,
            RequestedTtl::Number(300.0),
            None,
            1800,
            "aes-256-gcm",
        ),
        (
            Family::V1,
            RequestedTtl::Absent,
            Some("Bearer x"),
            3600,
            "aes-256-gcm",
        ),
        (
            Family::V1,
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
        let kind = if want == 3600 && family == Family::V1 {
            SessionKind::Authenticated
        } else {
            SessionKind::Anonymous
        };
        assert_eq!(rec.kind, kind);
    }
    // without trust, Authorization buys nothing
    let svc = service();
    let k = key(200);
    let mut req = init_req(Family::V1, &k, "C", pk, RequestedTtl::Absent);
    req.authorization = Some("Bearer anything");
    assert_eq!(run(svc.init(req)).unwrap().expires_in_sec, 1800);
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
        run(svc.exchange(
            ExchangeRequest {
                kid: Some(s.kid()),
                idempotency_key: Some(&req.idempotency_key),
                client_id: Some("OWNER"),
                body: &mut body
            },
            echo(&svc)
        ))
        .is_ok()
    );
    svc.ports().clock.0.store(expires + 1, Ordering::SeqCst);
    let req = s.seal_request(expires + 1, b"{}").unwrap();
    let mut body = req.envelope;
    let r = run(svc.exchange(
        ExchangeRequest {
            kid: Some(s.kid()),
            idempotency_key: Some(&req.idempotency_key),
            client_id: Some("OWNER"),
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
    let r = run(svc.exchange(
        ExchangeRequest {
            kid: Some(s.kid()),
            idempotency_key: Some(&req.idempotency_key),
            client_id: Some("C"),
            body: &mut body,
        },
        |_, _| Err(PayloadError::Amount),
    ));
    assert_eq!(r.unwrap_err(), ExchangeError::Payload(PayloadError::Amount));
}

#[test]
fn release_key_rules() {
    use domain::ReleaseError;
    let svc = service();
    let s = establish(&svc, "C", 1);
    let id = &s.kid()[8..];
    assert_eq!(
        run(svc.release_key(id, None)).unwrap_err(),
        ReleaseError::MissingClientId
    );
    assert_eq!(
        run(svc.release_key("S-1", Some("C"))).unwrap_err(),
        ReleaseError::MalformedId
    );
    assert_eq!(
        run(svc.release_key("S-00000000000000000000000000000000", Some("C"))).unwrap_err(),
        ReleaseError::NotFound
    );
    assert_eq!(
        run(svc.release_key(id, Some("X"))).unwrap_err(),
        ReleaseError::Forbidden
    );
    assert_eq!(
        run(svc.release_key(id, Some("C")))
            .unwrap()
            .record
            .key
            .expose(),
        s.key().expose()
    );
    svc.ports()
        .clock
        .0
        .store(NOW + 1800 * 1000 + 1, Ordering::SeqCst);
    assert_eq!(
        run(svc.release_key(id, Some("X"))).unwrap_err(),
        ReleaseError::Forbidden
    );
    assert_eq!(
        run(svc.release_key(id, Some("C"))).unwrap_err(),
        ReleaseError::Expired
    );
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
            Family::V1,
            &k1,
            "C",
            pk.clone(),
            RequestedTtl::Absent
        )))
        .is_ok()
    );
    let r = run(svc.init(init_req(Family::V1, &k2, "C", pk, RequestedTtl::Absent)));
    assert!(matches!(
        r,
        Err(InitError::NonceStore(ports::NonceError::Full))
    ));
}

#[test]
fn reference_vector_session_key() {
    // PROTOCOL.md §3.5: HKDF over the vector's Z.
    let z: [u8; 32] =
        hex::decode("ccfc261f58193c98ca4ad4a53bbac6f0ee29bc4d48438090446908622ca79af6")
            .unwrap()
            .try_into()
            .unwrap();
    let key = domain::derive_session_key(
        CRYPTO.hkdf,
        &ports::SharedSecret::from_bytes(z),
        "S-000102030405060708090a0b0c0d0e0f",
        "NODE_CLIENT",
    )
    .unwrap();
    assert_eq!(
        key.expose().to_vec(),
        base64_decode("chrTmynfAw5zwu3wrw/xudpoWn3Hz3yAbSejyymhCuM=").unwrap()
    );
}

fn fixed_session() -> ClientSession {
    ClientSession::from_key(
        CRYPTO,
        "S-000102030405060708090a0b0c0d0e0f",
        "NODE_CLIENT",
        ports::SessionKey::from_bytes([9; 32]),
    )
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
fn wrapped_keys_unwrap_only_for_their_session_and_across_rotation() {
    use domain::keywrap::{KeyWrapper, UnwrapError, WRAPPED_KEY_LEN};
    let old = KeyWrapper::new(CRYPTO, [1; 32], vec![]).unwrap();
    let key = ports::SessionKey::from_bytes([0x5a; 32]);
    let w = old
        .wrap("S-000102030405060708090a0b0c0d0e0f", &key)
        .unwrap();
    assert_eq!(w.bytes.len(), WRAPPED_KEY_LEN);
    assert!(
        !w.bytes.windows(32).any(|win| win == key.expose()),
        "no raw key inside"
    );
    assert_eq!(w.kek_id.len(), 16);
    assert_eq!(
        old.unwrap("S-000102030405060708090a0b0c0d0e0f", &w.kek_id, &w.bytes)
            .unwrap()
            .expose(),
        key.expose()
    );
    // moved to another row
    assert_eq!(
        old.unwrap("S-ffffffffffffffffffffffffffffffff", &w.kek_id, &w.bytes)
            .unwrap_err(),
        UnwrapError::Authentication
    );
    // rotation: the new KEK wraps, the previous one still unwraps
    let rotated = KeyWrapper::new(CRYPTO, [2; 32], vec![[1; 32]]).unwrap();
    assert_ne!(rotated.current_id(), old.current_id());
    assert!(
        rotated
            .unwrap("S-000102030405060708090a0b0c0d0e0f", &w.kek_id, &w.bytes)
            .is_ok()
    );
    assert_eq!(
        rotated.wrap("S-1", &key).unwrap().kek_id,
        rotated.current_id()
    );
    // a KEK that is gone
    let fresh = KeyWrapper::new(CRYPTO, [3; 32], vec![]).unwrap();
    assert!(matches!(
        fresh.unwrap("S-000102030405060708090a0b0c0d0e0f", &w.kek_id, &w.bytes),
        Err(UnwrapError::UnknownKek(_))
    ));
}

/// A store that is down, and a cache that records what it holds.
#[derive(Debug, Default)]
struct DownStore;
impl SessionStore for DownStore {
    async fn insert(&self, _: &ports::SessionRecord) -> Result<(), ports::StoreError> {
        Err(ports::StoreError::Unavailable("down".into()))
    }
    async fn get(&self, _: &str) -> Result<Option<ports::SessionRecord>, ports::StoreError> {
        Err(ports::StoreError::Unavailable("down".into()))
    }
    async fn delete(&self, _: &str) -> Result<(), ports::StoreError> {
        Err(ports::StoreError::Unavailable("down".into()))
    }
}

#[derive(Debug, Default)]
struct RecordingCache(std::sync::Mutex<Vec<String>>);
impl ports::SessionCache for RecordingCache {
    async fn put(&self, r: &ports::SessionRecord) -> Result<(), ports::StoreError> {
        self.0.lock().unwrap().push(r.id.clone());
        Ok(())
    }
    async fn get(&self, _: &str) -> Result<Option<ports::SessionRecord>, ports::StoreError> {
        Ok(None)
    }
    async fn delete(&self, id: &str) -> Result<(), ports::StoreError> {
        self.0.lock().unwrap().retain(|k| k != id);
        Ok(())
    }
}

#[test]
fn a_failed_store_write_answers_store_error_and_leaves_no_cache_entry() {
    let svc = SessionService::new(
        CRYPTO,
        Stores {
            sessions: DownStore,
            cache: RecordingCache::default(),
            nonces: MemoryNonceStore::new(100),
            clock: FakeClock(AtomicU64::new(NOW)),
            quotas: MemoryQuotas::default(),
        },
        ServiceConfig::default(),
    );
    let pk = Handshake::start(CRYPTO).unwrap().public_key().0.to_vec();
    let k = key(1);
    let r = run(svc.init(init_req(
        Family::Unversioned,
        &k,
        "C",
        pk,
        RequestedTtl::Absent,
    )));
    assert!(matches!(r, Err(InitError::Store(_))), "{r:?}");
    // the cache write went out with the store write, and was withdrawn
    assert!(svc.ports().cache.0.lock().unwrap().is_empty());
}

#[test]
fn debug_output_redacts_keys_secrets_and_ids() {
    use domain::keywrap::KeyWrapper;
    let key_bytes = [0xa7u8; 32];
    let hex_key: String = key_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let svc = service();
    let session = establish(&svc, "C", 1);
    let id = session.kid()[8..].to_owned();
    let record = run(svc.ports().sessions.get(&id)).unwrap().unwrap();
    let wrapper = KeyWrapper::new(CRYPTO, key_bytes, vec![key_bytes]).unwrap();
    let outputs = [
        format!("{:?}", ports::SessionKey::from_bytes(key_bytes)),
        format!("{:?}", ports::SharedSecret::from_bytes(key_bytes)),
        format!(
            "{:?}",
            ClientSession::from_key(CRYPTO, &id, "C", ports::SessionKey::from_bytes(key_bytes))
        ),
        format!("{wrapper:?}"),
        format!("{record:?}"),
        format!("{:?}", domain::SessionId::parse(&id).unwrap()),
    ];
    let record_key: String = record
        .key
        .expose()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for out in &outputs {
        assert!(
            !out.contains(&hex_key) && !out.contains("167, 167"),
            "key bytes in {out}"
        );
        assert!(!out.contains(&record_key), "session key in {out}");
        assert!(!out.contains(&id), "whole session id in {out}");
    }
    assert!(outputs[0].contains("REDACTED") && outputs[1].contains("REDACTED"));
}

fn limited(limits: AbuseLimits) -> Service {
    service_with(ServiceConfig {
        limits,
        ..ServiceConfig::default()
    })
}

/// A purchase sealed at the service's current time, its answer left unopened.
fn buy(svc: &Service, s: &ClientSession) -> Result<(), ExchangeError> {
    let now = svc.ports().clock.now_ms();
    let req = s.seal_request(now, b"{}").unwrap();
    let mut body = req.envelope;
    run(svc.exchange(
        ExchangeRequest {
            kid: Some(s.kid()),
            idempotency_key: Some(&req.idempotency_key),
            client_id: Some(s.client_id()),
            body: &mut body,
        },
        echo(svc),
    ))
    .map(|_| ())
}

/// An init from `ip` with nonce number `n`, stamped with the service's current time.
fn init_from(svc: &Service, ip: &str, client: &str, n: u32) -> Result<(), InitError> {
    let k = format!("{}.nonce-{n:0>16}", svc.ports().clock.now_ms());
    let pk = Handshake::start(CRYPTO).unwrap().public_key().0.to_vec();
    let mut req = init_req(Family::Unversioned, &k, client, pk, RequestedTtl::Absent);
    req.remote_ip = Some(ip.parse().unwrap());
    run(svc.init(req)).map(|_| ())
}

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
            kid: Some(first.kid()),
            idempotency_key: Some(&req.idempotency_key),
            client_id: Some("A"),
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
