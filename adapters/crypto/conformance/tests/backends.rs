//! The conformance suite once per backend, then the cross-backend matrix.

use ports::crypto::IV_LEN;
use ports::{CryptoProvider, SessionKey};
use proptest::prelude::*;

static BACKENDS: std::sync::LazyLock<Vec<CryptoProvider>> =
    std::sync::LazyLock::new(crypto_backends::compiled);

/// One module of conformance tests per backend of the list (`cargo nextest` names
/// them `ring::rfc5869`, …).
macro_rules! suite {
    ($($module:ident = $name:literal in $krate:ident if $feature:literal, tls $tls:ident;)*) => {$(
        mod $module {
            use crypto_conformance as c;
            const P: ports::CryptoProvider = crypto_backends::$krate::PROVIDER;
            #[test] fn reference_ecdh() { c::reference_ecdh(&P) }
            #[test] fn reference_session_key() { c::reference_session_key(&P) }
            #[test] fn reference_envelopes() { c::reference_envelopes(&P) }
            #[test] fn rfc5869() { c::rfc5869(&P) }
            #[test] fn aes_gcm_known_answer() { c::aes_gcm_known_answer(&P) }
            #[test] fn generated_keys_agree() { c::generated_keys_agree(&P) }
            #[test] fn refuses_invalid_keys() { c::refuses_invalid_keys(&P) }
            #[test] fn random_fills() { c::random_fills(&P) }
            #[test] fn digests_known_answer() { c::digests_known_answer(&P) }
            #[test] fn ecdsa_round_trip() { c::ecdsa_round_trip(&P) }
            #[test] fn protocol_v2_vectors() { c::v2_vectors::check(&P) }
            #[test] fn exchange_vectors() { c::exchange_vectors::check(&P) }
            #[test] fn name() { assert_eq!(P.name, $name) }
        }
    )*};
}

crypto_backends::backend_list!(suite);

#[test]
fn every_backend_of_the_list_is_compiled_into_the_suite() {
    assert_eq!(BACKENDS.len(), crypto_backends::ALL.len());
}

#[test]
fn cross_matrix_seal_open() {
    let key = SessionKey::from_bytes([0x42; 32]);
    let iv = [7u8; IV_LEN];
    for sealer in BACKENDS.iter() {
        let mut ct = b"{\"schemeCode\":\"AEF\",\"amount\":5000}".to_vec();
        sealer.aead.seal(&key, &iv, b"aad", &mut ct).unwrap();
        for opener in BACKENDS.iter() {
            let mut buf = ct.clone();
            let len = opener
                .aead
                .open(&key, &iv, b"aad", &mut buf)
                .unwrap_or_else(|_| {
                    panic!("{} could not open what {} sealed", opener.name, sealer.name)
                });
            assert_eq!(&buf[..len], b"{\"schemeCode\":\"AEF\",\"amount\":5000}");
        }
    }
}

#[test]
fn cross_matrix_key_agreement_and_derivation() {
    for client in BACKENDS.iter() {
        for server in BACKENDS.iter() {
            let c = client.key_agreement.generate().unwrap();
            let s = server.key_agreement.generate().unwrap();
            let (cp, sp) = (c.public_key(), s.public_key());
            let zc = c.agree(&sp).unwrap();
            let zs = s.agree(&cp).unwrap();
            let kc = domain::derive_session_key(
                client.hkdf,
                &zc,
                "S-000102030405060708090a0b0c0d0e0f",
                "X",
            )
            .unwrap();
            let ks = domain::derive_session_key(
                server.hkdf,
                &zs,
                "S-000102030405060708090a0b0c0d0e0f",
                "X",
            )
            .unwrap();
            assert_eq!(
                kc.expose(),
                ks.expose(),
                "client {} / server {}",
                client.name,
                server.name
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For random inputs the backends agree with each other byte for byte.
    #[test]
    fn backends_are_byte_identical(
        ikm in proptest::collection::vec(any::<u8>(), 0..80),
        salt in proptest::collection::vec(any::<u8>(), 0..80),
        info in proptest::collection::vec(any::<u8>(), 0..80),
        len in 1usize..100,
        key in any::<[u8; 32]>(),
        iv in any::<[u8; 12]>(),
        aad in proptest::collection::vec(any::<u8>(), 0..64),
        plain in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let outputs: Vec<(Vec<u8>, Vec<u8>)> = BACKENDS.iter().map(|p| {
            let mut okm = vec![0u8; len];
            p.hkdf.derive(&salt, &ikm, &[&info], &mut okm).unwrap();
            let mut ct = plain.clone();
            p.aead.seal(&SessionKey::from_bytes(key), &iv, &aad, &mut ct).unwrap();
            (okm, ct)
        }).collect();
        for other in &outputs[1..] {
            prop_assert_eq!(&outputs[0], other);
        }
    }

    /// The domain's point validation and every backend's agreement accept exactly the
    /// same mutated uncompressed (`0x04`) public keys. A changed prefix byte is always
    /// refused by the domain; backends may differ there (aws-lc-rs accepts SEC1 hybrid
    /// points, `0x06`/`0x07`), which is why the domain validates before any backend.
    #[test]
    fn validation_verdicts_agree(byte in 0usize..65, xor in 1u8..=255) {
        let mut point = BACKENDS[0].key_agreement.generate().unwrap().public_key();
        point.0[byte] ^= xor;
        let verdict = domain::p256::validate_public_key(&point.0);
        if byte == 0 {
            prop_assert_eq!(verdict, Err(domain::p256::PublicKeyError::NotUncompressed));
            return Ok(());
        }
        let domain_ok = verdict.is_ok();
        for p in BACKENDS.iter() {
            let ours = p.key_agreement.generate().unwrap();
            prop_assert_eq!(ours.agree(&point).is_ok(), domain_ok, "{} byte {} xor {}", p.name, byte, xor);
        }
    }
}

#[test]
fn cross_matrix_ecdsa() {
    for signer in BACKENDS.iter() {
        let key = signer.ecdsa.signing_key(&[0x5c; 32]).unwrap();
        let sig = key.sign(b"session-crypto transcript").unwrap();
        for verifier in BACKENDS.iter() {
            assert!(
                verifier
                    .ecdsa
                    .verify(&key.public_key(), b"session-crypto transcript", &sig),
                "{} refused what {} signed",
                verifier.name,
                signer.name
            );
        }
    }
}

/// A whole v2 session with the client on one backend and the server on another, for
/// every pair: init (with a signing key), key confirmation and signature checked by
/// the client, one exchange each way.
#[test]
fn cross_matrix_protocol_v2() {
    use domain::client::{Handshake, PURCHASE, ResponseHead, V2Answer};
    use domain::{
        ExchangeRequest, Family, InitBody, InitRequest, RequestedProtocol, RequestedTtl,
        ServerIdentity, ServiceConfig, SessionService,
    };
    use memory::{MemoryNonceStore, MemoryQuotas, MemorySessionStore};
    use ports::{NoCache, Stores, SystemClock};

    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let mut n = 0u32;
    for server in BACKENDS.iter() {
        let identity = ServerIdentity::from_scalar(*server, &[0x33; 32]).unwrap();
        let pinned = identity.public_key();
        let svc = SessionService::new(
            *server,
            Stores {
                sessions: MemorySessionStore::new(100),
                cache: NoCache,
                nonces: MemoryNonceStore::new(1000),
                clock: SystemClock,
                quotas: MemoryQuotas::new(100),
            },
            ServiceConfig::default(),
        )
        .with_identity(Some(identity));
        for client in BACKENDS.iter() {
            n += 1;
            let hs = Handshake::start(*client).unwrap();
            let key = format!("{}.cross-matrix-nonce-{n:04}", now());
            let out = futures_executor::block_on(svc.init(InitRequest {
                family: Family::Unversioned,
                idempotency_key: Some(&key),
                client_id: Some("CROSS"),
                authorization: None,
                remote_ip: None,
                declared_json: true,
                body: Ok(InitBody {
                    client_public_key: hs.public_key().0.to_vec(),
                    ttl: RequestedTtl::Absent,
                    protocol: RequestedProtocol::Number(2),
                }),
            }))
            .unwrap();
            let session = hs
                .finish_v2(&V2Answer::from_outcome(&out).unwrap(), "CROSS", &[pinned])
                .unwrap_or_else(|e| panic!("client {} / server {}: {e}", client.name, server.name));
            let mut sealed = session.seal_request(now(), b"{\"x\":1}").unwrap();
            let mut body = std::mem::take(&mut sealed.envelope);
            let answer = futures_executor::block_on(svc.exchange(
                ExchangeRequest {
                    call_key: None,
                    kid: Some(session.kid()),
                    idempotency_key: Some(&sealed.idempotency_key),
                    client_id: Some("CROSS"),
                    line: PURCHASE,
                    body: &mut body,
                },
                &|plain: &[u8], _: &domain::ResponseContext| {
                    Ok::<_, domain::PayloadError>([b"echo:".as_slice(), plain].concat())
                },
            ))
            .unwrap_or_else(|e| panic!("client {} / server {}: {e}", client.name, server.name));
            let head = ResponseHead {
                status: 200,
                idempotency_key: &answer.idempotency_key,
                content_type: "",
            };
            let plain = session
                .open_response(
                    &sealed,
                    head,
                    answer.envelope,
                    now(),
                    &domain::ReplayPolicy::DEFAULT,
                )
                .unwrap();
            assert_eq!(
                &plain[..],
                b"echo:{\"x\":1}",
                "{} / {}",
                client.name,
                server.name
            );
        }
    }
}

/// `vectors/protocol-v2.json` and `vectors/exchanges.json` are exactly what their
/// documented commands print, so the files can be regenerated and checked by anyone.
#[test]
fn the_generated_vector_files_are_reproducible() {
    use crypto_conformance::{exchange_vectors, v2_vectors};
    for (generated, file, command) in [
        (
            v2_vectors::generate(),
            v2_vectors::V2_VECTORS,
            "cargo run -p crypto-conformance --bin gen-v2-vectors > vectors/protocol-v2.json",
        ),
        (
            exchange_vectors::generate(),
            exchange_vectors::EXCHANGE_VECTORS,
            "cargo run -p crypto-conformance --bin gen-v2-vectors -- exchanges > vectors/exchanges.json",
        ),
    ] {
        let printed = serde_json::to_string_pretty(&generated).unwrap();
        assert_eq!(format!("{printed}\n"), file, "regenerate: {command}");
    }
}

/// The worked example of docs/PROTOCOL.md shows the vector file's values (so the
/// document and the file cannot drift apart).
#[test]
fn the_protocol_documents_worked_example_is_the_vector_file() {
    let doc = include_str!("../../../../docs/PROTOCOL.md");
    let v: serde_json::Value =
        serde_json::from_str(crypto_conformance::v2_vectors::V2_VECTORS).unwrap();
    for pointer in [
        "/shared_secret",
        "/transcript_hash",
        "/request_key",
        "/response_key",
        "/confirm_key",
        "/confirm_b64",
        "/signing/public_key_b64",
        "/signing/key_id_ascii",
        "/signing/signature_b64",
        "/request/aad",
        "/request/envelope",
        "/response/aad",
        "/response/envelope",
    ] {
        let value = v.pointer(pointer).and_then(|x| x.as_str()).unwrap();
        assert!(
            doc.contains(value),
            "docs/PROTOCOL.md lacks {pointer} = {value}"
        );
    }
    let transcript = v["transcript"].as_str().unwrap();
    assert!(
        doc.contains(&transcript[..66]),
        "the transcript's first bytes"
    );
}
