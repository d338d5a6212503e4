//! Known-answer vectors for the exchanges beyond the worked examples
//! (`vectors/exchanges.json`, docs/PROTOCOL.md Appendix): v2 exchanges on a gateway
//! route — a `GET` whose envelope travels in `X-Envelope`, a request and an answer with
//! non-empty inner content types, a `204` answer sent as 200 with `X-Inner-Status` — and
//! a v1 answer as this server sends it, with its `rsp_` nonce. The keys are the worked
//! examples' (`protocol-v2.json`'s `request_key` / `response_key`, `reference-v1.json`'s
//! `session_key`), and a v2 sealed refusal (§9.1) of the v2 example's request; AES-GCM is
//! deterministic for a given IV, so the file is reproducible:
//!
//! ```text
//! cargo run -p crypto-conformance --bin gen-v2-vectors -- exchanges > vectors/exchanges.json
//! ```
//!
//! [`check`] recomputes every AAD and envelope on a backend and opens each envelope.

use domain::Aad;
use domain::encoding::base64_encode;
use domain::envelope::{open_envelope, seal_envelope_with_iv};
use domain::v2::{self, AadFields, RequestLine};
use ports::crypto::IV_LEN;
use ports::{CryptoProvider, SessionKey};
use serde_json::{Value, json};

use crate::v2_vectors::V2_VECTORS;

/// The file, embedded.
pub const EXCHANGE_VECTORS: &str = include_str!("../../../../vectors/exchanges.json");

/// The v1 reference vectors (their session key).
const V1_VECTORS: &str = include_str!("../../../../vectors/reference-v1.json");

const KID: &str = "session:S-000102030405060708090a0b0c0d0e0f";
const CLIENT_ID: &str = "NODE_CLIENT";

/// One v2 gateway exchange.
struct Case {
    name: &'static str,
    method: &'static str,
    target: &'static str,
    request_content_type: &'static str,
    /// `Idempotency-Key` (quoted), bound as one more request AAD field.
    call_key: Option<&'static str>,
    request_key: (&'static str, &'static str),
    request_iv: [u8; IV_LEN],
    request_plaintext: &'static str,
    /// The status bound by the response AAD (the upstream's).
    status: u16,
    /// Sent as 200 with `X-Inner-Status: <status>` (204, 205, 304).
    inner_status_header: bool,
    response_content_type: &'static str,
    response_key: (&'static str, &'static str),
    response_iv: [u8; IV_LEN],
    response_plaintext: &'static str,
}

const fn iv(first: u8) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    let mut i = 0;
    while i < IV_LEN {
        iv[i] = first + i as u8;
        i += 1;
    }
    iv
}

const CASES: [Case; 3] = [
    Case {
        name: "GET with its envelope in X-Envelope; the answer has a content type",
        method: "GET",
        target: "/api/orders?id=7",
        request_content_type: "",
        call_key: None,
        request_key: ("1706700001000", "8c0d4f3e-2b1a-4c5d-9e8f-7a6b5c4d3e2f"),
        request_iv: iv(0x30),
        request_plaintext: "",
        status: 200,
        inner_status_header: false,
        response_content_type: "application/json; charset=utf-8",
        response_key: ("1706700001042", "rsp_5b1e7c2a-9d4f-4e3b-8a6c-1f2e3d4c5b6a"),
        response_iv: iv(0x40),
        response_plaintext: r#"{"id":"7","item":"book","qty":2}"#,
    },
    Case {
        name: "POST with a non-empty inner content type and an Idempotency-Key, answered 201",
        method: "POST",
        target: "/api/orders",
        request_content_type: "application/x-www-form-urlencoded",
        call_key: Some("\"order-1234\""),
        request_key: ("1706700002000", "f47ac10b-58cc-4372-a567-0e02b2c3d479"),
        request_iv: iv(0x50),
        request_plaintext: "item=book&qty=2",
        status: 201,
        inner_status_header: false,
        response_content_type: "application/json",
        response_key: ("1706700002031", "rsp_9b2f6a1c-3e4d-4f5a-8b7c-6d5e4f3a2b1c"),
        response_iv: iv(0x60),
        response_plaintext: r#"{"id":"8","item":"book","qty":2}"#,
    },
    Case {
        name: "DELETE answered 204: sent as 200 with X-Inner-Status 204, an empty sealed body",
        method: "DELETE",
        target: "/api/orders/8",
        request_content_type: "",
        call_key: None,
        request_key: ("1706700003000", "0e9d8c7b-6a5f-4e4d-9c3b-2a1f0e9d8c7b"),
        request_iv: iv(0x70),
        request_plaintext: "",
        status: 204,
        inner_status_header: true,
        response_content_type: "",
        response_key: ("1706700003017", "rsp_2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"),
        response_iv: iv(0x80),
        response_plaintext: "",
    },
];

/// A sealed refusal (docs/PROTOCOL.md §9.1) of the v2 worked example's purchase request:
/// 400 `CRYPTO_ERROR`, the request not executed.
const REFUSAL_KEY: (&str, &str) = ("1706700000457", "rsp_6fa459ea-ee8a-4ca4-894e-db77e160355e");
const REFUSAL_IV: [u8; IV_LEN] = iv(0x90);
const REFUSAL_PLAINTEXT: &str = r#"{"error":"CRYPTO_ERROR","outcome":"not-executed"}"#;
const REFUSAL_STATUS: u16 = 400;

/// The refusal's AAD and envelope on `p`, for the v2 worked example's request.
fn refusal(p: &CryptoProvider) -> (Aad, Vec<u8>) {
    let v: Value = serde_json::from_str(V2_VECTORS).expect("protocol-v2.json");
    let text = |f: &str| v.pointer(f).and_then(Value::as_str).expect(f).to_owned();
    let (method, target) = (text("/request/method_ascii"), text("/request/target_ascii"));
    let request_key = text("/request/x_idempotency_key_ascii");
    let request_nonce = request_key
        .split_once('.')
        .map(|(_, n)| n)
        .unwrap_or_default();
    let aad = v2::refusal_aad(
        &AadFields {
            line: RequestLine {
                method: &method,
                target: &target,
                content_type: "",
            },
            kid: KID,
            client_id: CLIENT_ID,
            timestamp: REFUSAL_KEY.0,
            nonce: REFUSAL_KEY.1,
        },
        request_nonce,
        REFUSAL_STATUS,
    )
    .unwrap();
    let key = key_from(V2_VECTORS, "/response_key");
    let envelope = seal_envelope_with_iv(
        p.aead,
        &key,
        &REFUSAL_IV,
        &aad,
        REFUSAL_PLAINTEXT.as_bytes().to_vec(),
    )
    .unwrap();
    (aad, envelope)
}

/// The v1 answer: the reference vector's response, under a nonce with this server's
/// `rsp_` prefix, with a purchase answer as the server writes it (§8.2).
const V1_RESPONSE_KEY: (&str, &str) = ("1706700000456", "rsp_0f8fad5b-d9cb-469f-a165-70867728950e");
const V1_RESPONSE_IV: [u8; IV_LEN] = iv(0x0c);
const V1_RESPONSE_PLAINTEXT: &str = r#"{"status":"SUCCESS","transactionId":"TXN-00112233AABBCCDD","schemeCode":"AEF","amount":"5000","timestamp":"2024-01-31T11:20:00.456Z","message":"Transaction processed successfully"}"#;

fn key_from(file: &str, pointer: &str) -> SessionKey {
    let v: Value = serde_json::from_str(file).expect("a vector file is JSON");
    let hex = v.pointer(pointer).and_then(Value::as_str).expect(pointer);
    SessionKey::from_bytes(hex::decode(hex).expect("hex").try_into().expect("32 bytes"))
}

/// One case's AADs and envelopes on `p`.
struct Sealed {
    request_aad: Aad,
    request_envelope: Vec<u8>,
    response_aad: Aad,
    response_envelope: Vec<u8>,
}

fn seal(p: &CryptoProvider, c: &Case) -> Sealed {
    let request_key = key_from(V2_VECTORS, "/request_key");
    let response_key = key_from(V2_VECTORS, "/response_key");
    let request = AadFields {
        line: RequestLine {
            method: c.method,
            target: c.target,
            content_type: c.request_content_type,
        },
        kid: KID,
        client_id: CLIENT_ID,
        timestamp: c.request_key.0,
        nonce: c.request_key.1,
    };
    let response = AadFields {
        line: RequestLine {
            content_type: c.response_content_type,
            ..request.line
        },
        timestamp: c.response_key.0,
        nonce: c.response_key.1,
        ..request
    };
    let request_aad = v2::request_aad_keyed(&request, c.call_key).unwrap();
    let response_aad = v2::response_aad(&response, c.request_key.1, c.status).unwrap();
    let seal = |key, iv, aad, plain: &str| {
        seal_envelope_with_iv(p.aead, key, iv, aad, plain.as_bytes().to_vec()).unwrap()
    };
    Sealed {
        request_envelope: seal(
            &request_key,
            &c.request_iv,
            &request_aad,
            c.request_plaintext,
        ),
        response_envelope: seal(
            &response_key,
            &c.response_iv,
            &response_aad,
            c.response_plaintext,
        ),
        request_aad,
        response_aad,
    }
}

fn v1_answer(p: &CryptoProvider) -> (Aad, Vec<u8>) {
    let key = key_from(V1_VECTORS, "/session_key");
    let aad = Aad::new(V1_RESPONSE_KEY.0, V1_RESPONSE_KEY.1, KID, CLIENT_ID);
    let envelope = seal_envelope_with_iv(
        p.aead,
        &key,
        &V1_RESPONSE_IV,
        &aad,
        V1_RESPONSE_PLAINTEXT.as_bytes().to_vec(),
    )
    .unwrap();
    (aad, envelope)
}

/// The file's content, computed on the pure-Rust backend.
pub fn generate() -> Value {
    let p = crypto_rustcrypto::PROVIDER;
    let gateway: Vec<Value> = CASES
        .iter()
        .map(|c| {
            let s = seal(&p, c);
            let mut request = json!({
                "method_ascii": c.method,
                "target_ascii": c.target,
                "inner_content_type_ascii": c.request_content_type,
                "x_idempotency_key_ascii": format!("{}.{}", c.request_key.0, c.request_key.1),
                "aad": hex::encode(s.request_aad.as_bytes()),
                "iv": hex::encode(c.request_iv),
                "plaintext_ascii": c.request_plaintext,
                "envelope": hex::encode(&s.request_envelope),
            });
            if let Some(key) = c.call_key {
                request["idempotency_key_header_ascii"] = json!(key);
            }
            if c.method == "GET" {
                // No body: the envelope travels in this header (docs/PROTOCOL.md §20).
                request["x_envelope_ascii"] = json!(base64_encode(&s.request_envelope));
            }
            let mut response = json!({
                "http_status": if c.inner_status_header { 200 } else { c.status },
                "status": c.status,
                "inner_content_type_ascii": c.response_content_type,
                "x_idempotency_key_ascii": format!("{}.{}", c.response_key.0, c.response_key.1),
                "aad": hex::encode(s.response_aad.as_bytes()),
                "iv": hex::encode(c.response_iv),
                "plaintext_ascii": c.response_plaintext,
                "envelope": hex::encode(&s.response_envelope),
            });
            if c.inner_status_header {
                response["x_inner_status_ascii"] = json!(c.status.to_string());
            }
            json!({"name": c.name, "request": request, "response": response})
        })
        .collect();
    let (refusal_aad, refusal_envelope) = refusal(&p);
    let (aad, envelope) = v1_answer(&p);
    json!({
        "description": "Exchanges beyond the worked examples (docs/PROTOCOL.md, Appendix): v2 gateway exchanges (§20) under the v2 worked example's keys (protocol-v2.json request_key and response_key), and a v1 answer as this server sends it, with an rsp_ nonce, under the v1 worked example's session_key (reference-v1.json). Hex unless the field name ends in _b64 or _ascii. http_status is the status on the wire; status is the one the response AAD binds (the upstream's). A request's inner_content_type_ascii is its X-Inner-Content-Type header, an answer's the answer's; empty means the header is absent. Generated by `cargo run -p crypto-conformance --bin gen-v2-vectors -- exchanges`.",
        "x_kid_ascii": KID,
        "client_id_ascii": CLIENT_ID,
        "gateway": gateway,
        "v2_refusal": {
            "answers": "the request of protocol-v2.json (POST /transaction/purchase, its nonce)",
            "status": REFUSAL_STATUS,
            "x_sealed_refusal_ascii": "1",
            "x_idempotency_key_ascii": format!("{}.{}", REFUSAL_KEY.0, REFUSAL_KEY.1),
            "aad": hex::encode(refusal_aad.as_bytes()),
            "iv": hex::encode(REFUSAL_IV),
            "plaintext_ascii": REFUSAL_PLAINTEXT,
            "envelope": hex::encode(&refusal_envelope),
        },
        "v1_response": {
            "x_idempotency_key_ascii": format!("{}.{}", V1_RESPONSE_KEY.0, V1_RESPONSE_KEY.1),
            "aad_ascii": String::from_utf8_lossy(aad.as_bytes()),
            "iv": hex::encode(V1_RESPONSE_IV),
            "plaintext_ascii": V1_RESPONSE_PLAINTEXT,
            "envelope": hex::encode(&envelope),
        },
    })
}

fn field<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vector {pointer}"))
}

fn opens(p: &CryptoProvider, key: &SessionKey, aad: &Aad, envelope: &[u8]) -> Option<Vec<u8>> {
    let mut body = envelope.to_vec();
    open_envelope(p.aead, key, aad, &mut body)
        .ok()
        .map(|plain| plain.to_vec())
}

/// Recomputes every AAD and envelope of the file on `p`, opens each with its own key
/// and AAD, and checks that none opens under the other direction's key or with another
/// status or content type bound.
///
/// # Panics
/// On the first mismatch, naming the case, the field and the backend.
pub fn check(p: &CryptoProvider) {
    let v: Value = serde_json::from_str(EXCHANGE_VECTORS).expect("vectors/exchanges.json is JSON");
    let name = p.name;
    let request_key = key_from(V2_VECTORS, "/request_key");
    let response_key = key_from(V2_VECTORS, "/response_key");
    for (i, c) in CASES.iter().enumerate() {
        let s = seal(p, c);
        let at = |f: &str| format!("/gateway/{i}/{f}");
        assert_eq!(field(&v, &at("name")), c.name);
        for (f, got) in [
            ("request/aad", s.request_aad.as_bytes()),
            ("request/envelope", &s.request_envelope[..]),
            ("response/aad", s.response_aad.as_bytes()),
            ("response/envelope", &s.response_envelope[..]),
        ] {
            assert_eq!(
                hex::encode(got),
                field(&v, &at(f)),
                "{} {f} on {name}",
                c.name
            );
        }
        assert_eq!(
            opens(p, &request_key, &s.request_aad, &s.request_envelope).as_deref(),
            Some(c.request_plaintext.as_bytes()),
            "{} request on {name}",
            c.name
        );
        assert_eq!(
            opens(p, &response_key, &s.response_aad, &s.response_envelope).as_deref(),
            Some(c.response_plaintext.as_bytes()),
            "{} response on {name}",
            c.name
        );
        assert!(opens(p, &response_key, &s.request_aad, &s.request_envelope).is_none());
        // What the AAD binds: the wire status instead of the inner one, or the content
        // type dropped, and the answer no longer opens.
        let tampered = Case {
            status: if c.inner_status_header {
                200
            } else {
                c.status + 1
            },
            ..*c
        };
        assert!(
            opens(
                p,
                &response_key,
                &seal(p, &tampered).response_aad,
                &s.response_envelope
            )
            .is_none(),
            "{}: the status is bound on {name}",
            c.name
        );
        if !c.response_content_type.is_empty() {
            let stripped = Case {
                response_content_type: "",
                ..*c
            };
            assert!(
                opens(
                    p,
                    &response_key,
                    &seal(p, &stripped).response_aad,
                    &s.response_envelope
                )
                .is_none(),
                "{}: the content type is bound on {name}",
                c.name
            );
        }
    }
    let (refusal_aad, refusal_envelope) = refusal(p);
    assert_eq!(
        hex::encode(refusal_aad.as_bytes()),
        field(&v, "/v2_refusal/aad")
    );
    assert_eq!(
        hex::encode(&refusal_envelope),
        field(&v, "/v2_refusal/envelope"),
        "refusal on {name}"
    );
    assert_eq!(
        opens(p, &response_key, &refusal_aad, &refusal_envelope).as_deref(),
        Some(REFUSAL_PLAINTEXT.as_bytes())
    );
    // Under the response AAD (as if it were an answer) it does not open.
    let mut as_answer = b"\x00\x19session-crypto/2 response".to_vec();
    as_answer.extend_from_slice(&refusal_aad.as_bytes()[26..]);
    assert!(
        opens(
            p,
            &response_key,
            &Aad::from_bytes(as_answer),
            &refusal_envelope
        )
        .is_none()
    );
    let (aad, envelope) = v1_answer(p);
    assert_eq!(
        field(&v, "/v1_response/aad_ascii").as_bytes(),
        aad.as_bytes()
    );
    assert_eq!(
        hex::encode(&envelope),
        field(&v, "/v1_response/envelope"),
        "v1 on {name}"
    );
    let key = key_from(V1_VECTORS, "/session_key");
    assert_eq!(
        opens(p, &key, &aad, &envelope).as_deref(),
        Some(V1_RESPONSE_PLAINTEXT.as_bytes())
    );
}
