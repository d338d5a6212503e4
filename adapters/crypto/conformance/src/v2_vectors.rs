//! Protocol v2 known-answer vectors (`vectors/protocol-v2.json`, docs/PROTOCOL.md
//! "Worked example"): [`generate`] computes them from fixed inputs — the v1 vectors'
//! key pairs, a fixed signing key, fixed IVs and nonces — with the pure-Rust backend,
//! whose ECDSA is deterministic (RFC 6979), so the file is reproducible byte for byte:
//!
//! ```text
//! cargo run -p crypto-conformance --bin gen-v2-vectors > vectors/protocol-v2.json
//! ```
//!
//! [`check`] recomputes every derived field on any backend from the file's inputs and
//! verifies its signature (ring and aws-lc-rs sign with random nonces, so their
//! signatures differ from the file's but must verify, and the file's must verify on
//! them).

use domain::encoding::{base64_decode, base64_encode};
use domain::envelope::{open_envelope, seal_envelope_with_iv};
use domain::v2::{
    self, AadFields, RequestLine, ServerIdentity, TranscriptInput, key_schedule, signing_key_id,
};
use ports::crypto::IV_LEN;
use ports::{CryptoProvider, P256PublicKey, SharedSecret};
use serde_json::{Value, json};

/// The file, embedded.
pub const V2_VECTORS: &str = include_str!("../../../../vectors/protocol-v2.json");

const CLIENT_SCALAR: [u8; 32] = [0x11; 32];
const SERVER_SCALAR: [u8; 32] = [0x22; 32];
const SIGNING_SCALAR: [u8; 32] = [0x33; 32];
const SESSION_ID: &str = "S-000102030405060708090a0b0c0d0e0f";
const CLIENT_ID: &str = "NODE_CLIENT";
const EXPIRES_IN_SEC: u64 = 1800;
const METHOD: &str = "POST";
const TARGET: &str = "/transaction/purchase";
const REQUEST_TS: &str = "1706700000000";
const REQUEST_NONCE: &str = "123e4567-e89b-42d3-a456-426614174000";
const REQUEST_IV: [u8; IV_LEN] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const REQUEST_PLAINTEXT: &str = r#"{"schemeCode":"AEF","amount":5000}"#;
const RESPONSE_TS: &str = "1706700000456";
const RESPONSE_NONCE: &str = "rsp_0f8fad5b-d9cb-469f-a165-70867728950e";
const RESPONSE_IV: [u8; IV_LEN] = [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];
const RESPONSE_PLAINTEXT: &str = r#"{"status":"SUCCESS","transactionId":"TXN-00112233AABBCCDD"}"#;
const STATUS: u16 = 200;

/// The inputs of one vector set (what a client and server start from).
struct Inputs {
    client_scalar: [u8; 32],
    server_scalar: [u8; 32],
    signing_scalar: [u8; 32],
}

/// Everything derived from the inputs on backend `p` (the signature excepted).
struct Derived {
    client_public: P256PublicKey,
    server_public: P256PublicKey,
    shared: SharedSecret,
    transcript: Vec<u8>,
    transcript_hash: v2::TranscriptHash,
    schedule: v2::Schedule,
    confirm: [u8; 32],
    signing: ServerIdentity,
    request_aad: Vec<u8>,
    response_aad: Vec<u8>,
    request_envelope: Vec<u8>,
    response_envelope: Vec<u8>,
}

fn line(content_type: &str) -> RequestLine<'_> {
    RequestLine {
        method: METHOD,
        target: TARGET,
        content_type,
    }
}

fn derive(p: &CryptoProvider, inputs: &Inputs) -> Derived {
    let client = p
        .key_agreement
        .import_private_scalar(&inputs.client_scalar)
        .unwrap();
    let server = p
        .key_agreement
        .import_private_scalar(&inputs.server_scalar)
        .unwrap();
    let (client_public, server_public) = (client.public_key(), server.public_key());
    let shared = client.agree(&server_public).unwrap();
    let server_shared = server.agree(&client_public).unwrap();
    assert!(shared.ct_eq(&server_shared), "{}: ECDH both ways", p.name);
    let input = TranscriptInput {
        client_id: CLIENT_ID,
        session_id: SESSION_ID,
        client_public_key: &client_public,
        server_public_key: &server_public,
    };
    let transcript = input.encode().unwrap();
    let transcript_hash = input.hash(p.digests).unwrap();
    let schedule = key_schedule(p.hkdf, &shared, &transcript_hash).unwrap();
    let confirm = v2::confirm_tag(
        p.digests,
        &schedule.confirm_key,
        &transcript_hash,
        EXPIRES_IN_SEC,
    );
    let signing = ServerIdentity::from_scalar(*p, &inputs.signing_scalar).unwrap();
    let kid = format!("session:{SESSION_ID}");
    let request_fields = AadFields {
        line: line(""),
        kid: &kid,
        client_id: CLIENT_ID,
        timestamp: REQUEST_TS,
        nonce: REQUEST_NONCE,
    };
    let response_fields = AadFields {
        timestamp: RESPONSE_TS,
        nonce: RESPONSE_NONCE,
        ..request_fields
    };
    let request_aad = v2::request_aad(&request_fields).unwrap();
    let response_aad = v2::response_aad(&response_fields, REQUEST_NONCE, STATUS).unwrap();
    let request_envelope = seal_envelope_with_iv(
        p.aead,
        schedule.keys.request(),
        &REQUEST_IV,
        &request_aad,
        REQUEST_PLAINTEXT.as_bytes().to_vec(),
    )
    .unwrap();
    let response_envelope = seal_envelope_with_iv(
        p.aead,
        schedule.keys.response(),
        &RESPONSE_IV,
        &response_aad,
        RESPONSE_PLAINTEXT.as_bytes().to_vec(),
    )
    .unwrap();
    Derived {
        client_public,
        server_public,
        shared,
        transcript,
        transcript_hash,
        schedule,
        confirm,
        signing,
        request_aad: request_aad.as_bytes().to_vec(),
        response_aad: response_aad.as_bytes().to_vec(),
        request_envelope,
        response_envelope,
    }
}

const INPUTS: Inputs = Inputs {
    client_scalar: CLIENT_SCALAR,
    server_scalar: SERVER_SCALAR,
    signing_scalar: SIGNING_SCALAR,
};

/// The vector file's content, computed with the pure-Rust backend.
pub fn generate() -> Value {
    let p = crypto_rustcrypto::PROVIDER;
    let d = derive(&p, &INPUTS);
    let signature = d.signing.sign(&d.transcript_hash).unwrap();
    let kid = format!("session:{SESSION_ID}");
    json!({
        "description": "Protocol v2 known-answer vectors (docs/PROTOCOL.md, part III, worked example). Hex unless the field name ends in _b64 or _ascii. Generated by `cargo run -p crypto-conformance --bin gen-v2-vectors`; signatures made with RFC 6979 deterministic ECDSA (any valid signature is acceptable on the wire).",
        "protocol": 2,
        "suite_ascii": v2::SUITE,
        "client_private_scalar": hex::encode(CLIENT_SCALAR),
        "server_private_scalar": hex::encode(SERVER_SCALAR),
        "client_public_key_b64": base64_encode(d.client_public.as_bytes()),
        "server_public_key_b64": base64_encode(d.server_public.as_bytes()),
        "shared_secret": hex::encode(d.shared.expose()),
        "session_id_ascii": SESSION_ID,
        "client_id_ascii": CLIENT_ID,
        "expires_in_sec": EXPIRES_IN_SEC,
        "transcript": hex::encode(&d.transcript),
        "transcript_hash": hex::encode(d.transcript_hash.0),
        "request_key": hex::encode(d.schedule.keys.request().expose()),
        "response_key": hex::encode(d.schedule.keys.response().expose()),
        "confirm_key": hex::encode(*d.schedule.confirm_key),
        "confirm_input": hex::encode(v2::confirm_input(&d.transcript_hash, EXPIRES_IN_SEC)),
        "confirm_b64": base64_encode(&d.confirm),
        "init_response_ascii": serde_json::to_string(&json!({
            "sessionId": SESSION_ID,
            "serverPublicKey": base64_encode(d.server_public.as_bytes()),
            "encAlg": "A256GCM",
            "expiresInSec": EXPIRES_IN_SEC,
            "protocol": 2,
            "suite": v2::SUITE,
            "confirm": base64_encode(&d.confirm),
            "signature": base64_encode(&signature),
            "signingKeyId": d.signing.key_id(),
        })).unwrap(),
        "signing": {
            "private_scalar": hex::encode(SIGNING_SCALAR),
            "public_key_b64": base64_encode(d.signing.public_key().as_bytes()),
            "key_id_ascii": signing_key_id(p.digests, &d.signing.public_key()),
            "signature_input": hex::encode(v2::signature_input(&d.transcript_hash)),
            "signature_b64": base64_encode(&signature),
        },
        "request": {
            "method_ascii": METHOD,
            "target_ascii": TARGET,
            "inner_content_type_ascii": "",
            "x_kid_ascii": kid,
            "x_idempotency_key_ascii": format!("{REQUEST_TS}.{REQUEST_NONCE}"),
            "aad": hex::encode(&d.request_aad),
            "iv": hex::encode(REQUEST_IV),
            "plaintext_ascii": REQUEST_PLAINTEXT,
            "envelope": hex::encode(&d.request_envelope),
        },
        "response": {
            "status": STATUS,
            "inner_content_type_ascii": "",
            "x_idempotency_key_ascii": format!("{RESPONSE_TS}.{RESPONSE_NONCE}"),
            "aad": hex::encode(&d.response_aad),
            "iv": hex::encode(RESPONSE_IV),
            "plaintext_ascii": RESPONSE_PLAINTEXT,
            "envelope": hex::encode(&d.response_envelope),
        },
    })
}

fn text<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vector {pointer}"))
}

fn hex_field(v: &Value, pointer: &str) -> Vec<u8> {
    hex::decode(text(v, pointer)).expect("hex vector")
}

/// Recomputes every field of the file on `p` and checks it, verifies the file's
/// signature and a fresh one of `p`, and opens both envelopes.
///
/// # Panics
/// On the first mismatch, naming the field and the backend.
pub fn check(p: &CryptoProvider) {
    let v: Value = serde_json::from_str(V2_VECTORS).expect("vectors/protocol-v2.json is JSON");
    let scalar = |pointer: &str| -> [u8; 32] { hex_field(&v, pointer).try_into().unwrap() };
    let inputs = Inputs {
        client_scalar: scalar("/client_private_scalar"),
        server_scalar: scalar("/server_private_scalar"),
        signing_scalar: scalar("/signing/private_scalar"),
    };
    let d = derive(p, &inputs);
    let name = p.name;
    let b64 = |pointer: &str| base64_decode(text(&v, pointer)).expect("base64 vector");
    for (field, got) in [
        (
            "/client_public_key_b64",
            d.client_public.as_bytes().to_vec(),
        ),
        (
            "/server_public_key_b64",
            d.server_public.as_bytes().to_vec(),
        ),
        ("/confirm_b64", d.confirm.to_vec()),
        ("/signing/public_key_b64", d.signing.public_key().0.to_vec()),
    ] {
        assert_eq!(got, b64(field), "{field} on {name}");
    }
    for (field, got) in [
        ("/shared_secret", d.shared.expose().to_vec()),
        ("/transcript", d.transcript.clone()),
        ("/transcript_hash", d.transcript_hash.0.to_vec()),
        ("/request_key", d.schedule.keys.request().expose().to_vec()),
        (
            "/response_key",
            d.schedule.keys.response().expose().to_vec(),
        ),
        ("/confirm_key", d.schedule.confirm_key.to_vec()),
        (
            "/confirm_input",
            v2::confirm_input(&d.transcript_hash, EXPIRES_IN_SEC),
        ),
        (
            "/signing/signature_input",
            v2::signature_input(&d.transcript_hash),
        ),
        ("/request/aad", d.request_aad.clone()),
        ("/request/envelope", d.request_envelope.clone()),
        ("/response/aad", d.response_aad.clone()),
        ("/response/envelope", d.response_envelope.clone()),
    ] {
        assert_eq!(hex::encode(got), text(&v, field), "{field} on {name}");
    }
    assert_eq!(
        d.signing.key_id(),
        text(&v, "/signing/key_id_ascii"),
        "key id on {name}"
    );
    let input = v2::signature_input(&d.transcript_hash);
    let public = d.signing.public_key();
    let file_signature = b64("/signing/signature_b64");
    assert!(
        p.ecdsa.verify(&public, &input, &file_signature),
        "the file's signature on {name}"
    );
    let own = d.signing.sign(&d.transcript_hash).unwrap();
    assert!(
        p.ecdsa.verify(&public, &input, &own),
        "own signature on {name}"
    );
    // And both envelopes open with the keys of their direction only.
    let open = |key: &ports::SessionKey, aad: &[u8], env: &str| {
        let mut body = hex_field(&v, env);
        open_envelope(
            p.aead,
            key,
            &domain::Aad::from_bytes(aad.to_vec()),
            &mut body,
        )
        .map(|plain| plain.to_vec())
    };
    let keys = &d.schedule.keys;
    assert_eq!(
        open(keys.request(), &d.request_aad, "/request/envelope").unwrap(),
        REQUEST_PLAINTEXT.as_bytes()
    );
    assert_eq!(
        open(keys.response(), &d.response_aad, "/response/envelope").unwrap(),
        RESPONSE_PLAINTEXT.as_bytes()
    );
    assert!(
        open(keys.response(), &d.request_aad, "/request/envelope").is_err(),
        "a request under the response key on {name}"
    );
    assert!(
        open(keys.request(), &d.response_aad, "/response/envelope").is_err(),
        "a response under the request key on {name}"
    );
}
