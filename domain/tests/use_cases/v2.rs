//! Protocol v2: negotiation, key confirmation, signatures, and what the AAD binds.

use domain::client::{
    ClientError, ClientSession, Handshake, PURCHASE, ResponseHead, SealedRequest, V2Answer,
};
use domain::policy::RequestedTtl;
use domain::v2::{self, AadFields, RequestLine, TranscriptInput};
use domain::{
    EnvelopeError, ExchangeError, ExchangeRequest, Family, InitError, InitOutcome, ReplayPolicy,
    RequestedProtocol, ServerIdentity,
};
use ports::{Protocol, SessionKey};
use proptest::prelude::*;

use crate::helpers::*;

fn v2_init(svc: &Service, hs: &Handshake, idem: &str, client: &str) -> InitOutcome {
    let pk = hs.public_key().0.to_vec();
    let mut req = init_req(Family::Unversioned, idem, client, pk, RequestedTtl::Absent);
    if let Ok(body) = &mut req.body {
        body.protocol = RequestedProtocol::Number(2);
    }
    run(svc.init(req)).unwrap()
}

fn answer(out: &InitOutcome) -> V2Answer<'_> {
    V2Answer::from_outcome(out).expect("a v2 answer carries its proof")
}

fn v2_session(svc: &Service, client: &str, n: u32) -> ClientSession {
    let hs = Handshake::start(CRYPTO).unwrap();
    let out = v2_init(svc, &hs, &key(n), client);
    hs.finish_v2(&answer(&out), client, &[]).unwrap()
}

fn send(
    svc: &Service,
    s: &ClientSession,
    line: RequestLine<'_>,
    sealed: &SealedRequest,
) -> Result<domain::ExchangeOutcome, ExchangeError> {
    let mut body = sealed.envelope.clone();
    run(svc.exchange_plain(
        ExchangeRequest {
            call_key: None,
            kid: Some(s.kid()),
            idempotency_key: Some(&sealed.idempotency_key),
            client_id: Some(s.client_id()),
            line,
            body: &mut body,
        },
        echo(svc),
    ))
}

fn open(
    s: &ClientSession,
    sealed: &SealedRequest,
    out: &domain::ExchangeOutcome,
) -> Result<Vec<u8>, ClientError> {
    let head = ResponseHead {
        status: 200,
        idempotency_key: &out.idempotency_key,
        content_type: "",
    };
    s.open_response(
        sealed,
        head,
        out.envelope.clone(),
        NOW,
        &ReplayPolicy::DEFAULT,
    )
    .map(|p| p.to_vec())
}

#[test]
fn a_v2_session_has_directional_keys_and_round_trips() {
    let svc = service();
    let s = v2_session(&svc, "C", 1);
    assert_eq!(s.protocol(), Protocol::V2);
    assert!(!s.keys().request().ct_eq(s.keys().response()));
    let stored = run(ports::SessionStore::get(
        &svc.ports().sessions,
        &s.kid()[8..],
    ))
    .unwrap()
    .unwrap();
    assert!(
        stored.keys.ct_eq(s.keys()),
        "server and client derived the same keys"
    );
    let sealed = s.seal_request(NOW, br#"{"x":1}"#).unwrap();
    let out = send(&svc, &s, PURCHASE, &sealed).unwrap();
    assert_eq!(open(&s, &sealed, &out).unwrap(), br#"echo:{"x":1}"#);
}

#[test]
fn an_init_without_protocol_is_v1_and_unknown_versions_are_refused_without_a_nonce() {
    let svc = service();
    let hs = Handshake::start(CRYPTO).unwrap();
    let pk = hs.public_key().0.to_vec();
    let out = run(svc.init(init_req(
        Family::Unversioned,
        &key(1),
        "C",
        pk.clone(),
        RequestedTtl::Absent,
    )))
    .unwrap();
    assert_eq!((out.protocol, out.echo_protocol), (Protocol::V1, false));
    assert!(out.proof.is_none());
    let k10 = key(10);
    for (n, bad) in [
        RequestedProtocol::Number(0),
        RequestedProtocol::Number(3),
        RequestedProtocol::Invalid,
    ]
    .into_iter()
    .enumerate()
    {
        for family in [Family::Unversioned, Family::V1Paths] {
            let mut req = init_req(family, &k10, "C", pk.clone(), RequestedTtl::Absent);
            if let Ok(body) = &mut req.body {
                body.protocol = bad;
            }
            assert_eq!(
                run(svc.init(req)).unwrap_err(),
                InitError::UnsupportedProtocol,
                "{n}"
            );
        }
    }
    // The refused inits consumed nothing: the same nonce still works.
    let mut req = init_req(Family::V1Paths, &k10, "C", pk, RequestedTtl::Absent);
    if let Ok(body) = &mut req.body {
        body.protocol = RequestedProtocol::Number(2);
    }
    let out = run(svc.init(req)).unwrap();
    assert_eq!((out.protocol, out.echo_protocol), (Protocol::V2, true));
}

#[test]
fn a_v2_request_cannot_be_sent_to_another_route_or_method_and_keeps_its_nonce() {
    let svc = service();
    let s = v2_session(&svc, "C", 1);
    let sealed = s.seal_request(NOW, br#"{"x":1}"#).unwrap();
    for line in [
        RequestLine {
            target: "/session/revoke",
            ..PURCHASE
        },
        RequestLine {
            method: "PUT",
            ..PURCHASE
        },
        RequestLine {
            target: "/transaction/purchase?x=1",
            ..PURCHASE
        },
        RequestLine {
            content_type: "text/plain",
            ..PURCHASE
        },
    ] {
        assert_eq!(
            send(&svc, &s, line, &sealed).unwrap_err(),
            ExchangeError::Envelope(EnvelopeError::Authentication),
            "{line:?}"
        );
    }
    // None of them used up the nonce: the request still goes through where it was sent.
    send(&svc, &s, PURCHASE, &sealed).unwrap();
    assert_eq!(
        send(&svc, &s, PURCHASE, &sealed).unwrap_err(),
        ExchangeError::Replay
    );
}

#[test]
fn a_v2_response_is_neither_a_request_nor_the_answer_to_another_request() {
    let svc = service();
    let s = v2_session(&svc, "C", 1);
    let first = s.seal_request(NOW, br#"{"x":1}"#).unwrap();
    let second = s.seal_request(NOW, br#"{"x":2}"#).unwrap();
    let a1 = send(&svc, &s, PURCHASE, &first).unwrap();
    let a2 = send(&svc, &s, PURCHASE, &second).unwrap();
    // Swapped answers do not open.
    assert!(matches!(
        open(&s, &first, &a2),
        Err(ClientError::Envelope(_))
    ));
    assert!(matches!(
        open(&s, &second, &a1),
        Err(ClientError::Envelope(_))
    ));
    // An answer sent back as a request: refused (its nonce is a response nonce; with
    // a fresh nonce it is sealed under the other key and another AAD label).
    let as_request = SealedRequest {
        idempotency_key: a1.idempotency_key.clone(),
        envelope: a1.envelope.clone(),
        ..first.clone()
    };
    assert!(send(&svc, &s, PURCHASE, &as_request).is_err());
    let fresh = SealedRequest {
        idempotency_key: format!("{NOW}.fresh-nonce-0000000001"),
        envelope: a1.envelope.clone(),
        ..first.clone()
    };
    assert_eq!(
        send(&svc, &s, PURCHASE, &fresh).unwrap_err(),
        ExchangeError::Envelope(EnvelopeError::Authentication)
    );
    // The right pairs open.
    assert_eq!(open(&s, &first, &a1).unwrap(), br#"echo:{"x":1}"#);
    assert_eq!(open(&s, &second, &a2).unwrap(), br#"echo:{"x":2}"#);
}

#[test]
fn signatures_are_checked_against_the_pinned_key() {
    let identity = ServerIdentity::from_scalar(CRYPTO, &[0x33; 32]).unwrap();
    let pinned = identity.public_key();
    let svc = service().with_identity(Some(identity));
    let hs = Handshake::start(CRYPTO).unwrap();
    let out = v2_init(&svc, &hs, &key(1), "C");
    let (kid, _) = out.proof.as_ref().unwrap().signature.as_ref().unwrap();
    assert_eq!(kid, svc.identity().unwrap().key_id());
    hs.finish_v2(&answer(&out), "C", &[pinned]).unwrap();

    // Pinned to another key: refused.
    let other = ServerIdentity::from_scalar(CRYPTO, &[0x44; 32])
        .unwrap()
        .public_key();
    let hs = Handshake::start(CRYPTO).unwrap();
    let out = v2_init(&svc, &hs, &key(2), "C");
    assert_eq!(
        hs.finish_v2(&answer(&out), "C", &[other]).unwrap_err(),
        ClientError::Signature
    );
    // An unsigned answer while a key is pinned: refused.
    let unsigned = service();
    let hs = Handshake::start(CRYPTO).unwrap();
    let out = v2_init(&unsigned, &hs, &key(3), "C");
    assert_eq!(
        hs.finish_v2(&answer(&out), "C", &[pinned]).unwrap_err(),
        ClientError::Signature
    );
}

#[test]
fn during_a_rotation_a_signature_by_any_pinned_key_is_accepted() {
    let current = ServerIdentity::from_scalar(CRYPTO, &[0x33; 32]).unwrap();
    let signer = current.public_key();
    let [next, stranger] = [0x44, 0x55].map(|b| {
        ServerIdentity::from_scalar(CRYPTO, &[b; 32])
            .unwrap()
            .public_key()
    });
    let svc = service().with_identity(Some(current));
    // The signer anywhere in the set: accepted.
    for (n, pins) in [(10, [signer, next]), (11, [next, signer])] {
        let hs = Handshake::start(CRYPTO).unwrap();
        let out = v2_init(&svc, &hs, &key(n), "C");
        hs.finish_v2(&answer(&out), "C", &pins).unwrap();
    }
    // A set without the signer: refused, however many keys it holds.
    let hs = Handshake::start(CRYPTO).unwrap();
    let out = v2_init(&svc, &hs, &key(2), "C");
    assert_eq!(
        hs.finish_v2(&answer(&out), "C", &[next, stranger])
            .unwrap_err(),
        ClientError::Signature
    );
}

#[test]
fn a_swapped_server_key_is_caught_by_confirmation_and_by_the_signature() {
    // The active attacker: answers the client with its own key pair, keeping the
    // server's session id, lifetime and confirm (it cannot compute a valid one).
    let identity = ServerIdentity::from_scalar(CRYPTO, &[0x33; 32]).unwrap();
    let pinned = identity.public_key();
    let svc = service().with_identity(Some(identity));
    let hs = Handshake::start(CRYPTO).unwrap();
    let out = v2_init(&svc, &hs, &key(1), "C");
    let attacker = Handshake::start(CRYPTO).unwrap().public_key();
    let mut forged = answer(&out);
    forged.server_public_key = &attacker.0;
    assert_eq!(
        Handshake::start(CRYPTO)
            .unwrap()
            .finish_v2(&forged, "C", &[])
            .unwrap_err(),
        ClientError::Confirmation
    );
    assert_eq!(
        hs.finish_v2(&forged, "C", &[pinned]).unwrap_err(),
        ClientError::Signature
    );
}

fn fields_strategy() -> impl Strategy<Value = [String; 9]> {
    // method, target, content type, kid, client, timestamp, nonce, request nonce, status
    (
        "[A-Z]{1,7}",
        "/[a-z/?=&]{0,40}",
        "[a-z/+;= -]{0,30}",
        "session:S-[0-9a-f]{32}",
        "[!-~]{1,20}",
        "[0-9]{1,16}",
        "[A-Za-z0-9_-]{16,40}",
        "[A-Za-z0-9_-]{16,40}",
        "[1-5][0-9]{2}",
    )
        .prop_map(|(a, b, c, d, e, f, g, h, i)| [a, b, c, d, e, f, g, h, i])
}

fn aad_of(f: &[String; 9], response: bool) -> Vec<u8> {
    let fields = AadFields {
        line: RequestLine {
            method: &f[0],
            target: &f[1],
            content_type: &f[2],
        },
        kid: &f[3],
        client_id: &f[4],
        timestamp: &f[5],
        nonce: &f[6],
    };
    let aad = if response {
        v2::response_aad(&fields, &f[7], f[8].parse().unwrap()).unwrap()
    } else {
        v2::request_aad(&fields).unwrap()
    };
    aad.as_bytes().to_vec()
}

proptest! {
    /// Any change to any field of a v2 AAD — or of the direction — and the envelope no
    /// longer opens.
    #[test]
    fn any_change_to_a_v2_aad_field_fails_to_open(
        fields in fields_strategy(),
        which in 0usize..10,
        replacement in "[ -~]{0,20}",
        response in any::<bool>(),
    ) {
        let key = SessionKey::from_bytes([9; 32]);
        let aad = domain::Aad::from_bytes(aad_of(&fields, response));
        let sealed = domain::envelope::seal_envelope_with_iv(
            CRYPTO.aead, &key, &[1; 12], &aad, b"secret".to_vec(),
        ).unwrap();
        let (changed, changed_direction) = if which == 9 {
            (fields.clone(), !response)
        } else {
            let mut f = fields.clone();
            // The request AAD has no request nonce or status: change a bound field.
            let which = if response { which } else { which % 7 };
            let status_field = which == 8;
            f[which] = if status_field {
                let old: u16 = f[8].parse().unwrap();
                (100 + (old - 100 + 1 + replacement.len() as u16 % 499) % 500).to_string()
            } else {
                replacement.clone()
            };
            prop_assume!(f[which] != fields[which]);
            (f, response)
        };
        let other = domain::Aad::from_bytes(aad_of(&changed, changed_direction));
        let mut body = sealed.clone();
        prop_assert!(domain::envelope::open_envelope(CRYPTO.aead, &key, &other, &mut body).is_err());
        let mut body = sealed;
        prop_assert!(domain::envelope::open_envelope(CRYPTO.aead, &key, &aad, &mut body).is_ok());
    }

    /// Any change to the transcript (client id, session id, either public key) or to
    /// the granted lifetime breaks the confirmation MAC.
    #[test]
    fn transcript_changes_break_confirmation(which in 0usize..5, client in "[!-~]{1,20}") {
        let a = Handshake::start(CRYPTO).unwrap().public_key();
        let b = Handshake::start(CRYPTO).unwrap().public_key();
        let c = Handshake::start(CRYPTO).unwrap().public_key();
        let base = TranscriptInput {
            client_id: &client,
            session_id: "S-000102030405060708090a0b0c0d0e0f",
            client_public_key: &a,
            server_public_key: &b,
        };
        let confirm_key = [7u8; 32];
        let th = base.hash(CRYPTO.digests).unwrap();
        let tag = v2::confirm_tag(CRYPTO.digests, &confirm_key, &th, 1800);
        let other_client = format!("{client}x");
        let mut changed = base;
        let mut ttl = 1800;
        match which {
            0 => changed.client_id = &other_client,
            1 => changed.session_id = "S-000102030405060708090a0b0c0d0e0e",
            2 => changed.client_public_key = &c,
            3 => changed.server_public_key = &c,
            _ => ttl = 3600,
        }
        let th2 = changed.hash(CRYPTO.digests).unwrap();
        let input = v2::confirm_input(&th2, ttl);
        prop_assert!(!CRYPTO.digests.hmac_sha256_verify(&confirm_key, &[&input], &tag));
    }
}
