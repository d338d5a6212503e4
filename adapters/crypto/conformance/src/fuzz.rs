//! The bodies of the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs` are one-line calls),
//! kept here so the committed seed corpus is replayed by an ordinary `#[test]` on
//! stable (`tests/fuzz_corpus.rs`). Each function panics only on a real bug.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use domain::headers::{ClientId, IdempotencyKey};
use domain::p256::{PublicKeyError, validate_public_key};
use domain::{Aad, ServiceConfig, SessionService};
use http_adapter::routes::init::parse_init_body;
use http_adapter::{Api, ApiConfig, Listener};
use http_adapter::{Dependency, HealthCheck, HealthReport};
use http_body_util::{BodyExt, Full};
use memory::{MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::crypto::IV_LEN;
use ports::{CryptoProvider, NoCache, P256PublicKey, SessionKey, Stores, SystemClock};

/// Every backend of the list compiled into this build (the fuzz crate and the tests
/// compile all of them).
pub static BACKENDS: std::sync::LazyLock<Vec<CryptoProvider>> =
    std::sync::LazyLock::new(crypto_backends::compiled);

/// The fixed session of the fuzz targets: the docs/PROTOCOL.md §12 vector session.
pub const SESSION_KEY: [u8; 32] = [
    0x72, 0x1a, 0xd3, 0x9b, 0x29, 0xdf, 0x03, 0x0e, 0x73, 0xc2, 0xed, 0xf0, 0xaf, 0x0f, 0xf1, 0xb9,
    0xda, 0x68, 0x5a, 0x7d, 0xc7, 0xcf, 0x7c, 0x80, 0x6d, 0x27, 0xa3, 0xcb, 0x29, 0xa1, 0x0a, 0xe3,
];
/// The vector's `X-Kid`.
pub const KID: &str = "session:S-000102030405060708090a0b0c0d0e0f";

/// Splits `[len a][len b] a b rest` (lengths one byte each).
pub fn split3(data: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (&la, rest) = data.split_first()?;
    let (&lb, rest) = rest.split_first()?;
    let (a, rest) = rest.split_at_checked(usize::from(la))?;
    let (b, rest) = rest.split_at_checked(usize::from(lb))?;
    Some((a, b, rest))
}

/// Builds a `decrypt_envelope` input.
pub fn encode3(a: &[u8], b: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut v = vec![
        u8::try_from(a.len()).unwrap_or(255),
        u8::try_from(b.len()).unwrap_or(255),
    ];
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    v.extend_from_slice(rest);
    v
}

/// A purchase body with arbitrary `X-Idempotency-Key` and `X-ClientId`, through header
/// parsing, AAD building and opening under the fixed session, on every backend: the
/// backends must agree, and whatever opens must re-seal (same IV) to exactly the body.
pub fn decrypt_envelope(data: &[u8]) {
    let Some((key, client, body)) = split3(data) else {
        return;
    };
    let (Ok(key), Ok(client)) = (std::str::from_utf8(key), std::str::from_utf8(client)) else {
        return;
    };
    let (Ok(key), Ok(client)) = (IdempotencyKey::parse(key), ClientId::parse(client)) else {
        return;
    };
    let aad = Aad::new(key.timestamp_text(), key.nonce(), KID, client.as_str());
    let session_key = SessionKey::from_bytes(SESSION_KEY);
    let results: Vec<Option<Vec<u8>>> = BACKENDS
        .iter()
        .map(|p| {
            let mut buf = body.to_vec();
            domain::open_envelope(p.aead, &session_key, &aad, &mut buf)
                .ok()
                .map(|plain| plain.to_vec())
        })
        .collect();
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "backends disagree on an envelope"
    );
    if let Some(plain) = &results[0] {
        let iv: [u8; IV_LEN] = body[..IV_LEN].try_into().unwrap_or_default();
        for p in BACKENDS.iter() {
            let resealed = domain::envelope::seal_envelope_with_iv(
                p.aead,
                &session_key,
                &iv,
                &aad,
                plain.clone(),
            )
            .unwrap_or_default();
            assert_eq!(
                resealed, body,
                "{} opened something it did not seal",
                p.name
            );
        }
    }
}

/// The `X-Idempotency-Key` grammar of docs/PROTOCOL.md §4.1, written out plainly: the
/// oracle the parser (`domain::IdempotencyKey::parse`) is checked against, by the fuzz
/// target and by a proptest.
pub fn idempotency_key_grammar(s: &str) -> bool {
    let Some((ts, nonce)) = s.split_once('.') else {
        return false;
    };
    (1..=16).contains(&ts.len())
        && ts.bytes().all(|c| c.is_ascii_digit())
        && (16..=128).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// The `X-Idempotency-Key` grammar: accepts exactly the grammar, and what it accepts
/// splits back into the same text.
pub fn idempotency_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match IdempotencyKey::parse(text) {
        Ok(k) => {
            assert!(idempotency_key_grammar(text), "accepted {text:?}");
            assert_eq!(format!("{}.{}", k.timestamp_text(), k.nonce()), text);
            assert_eq!(
                k.timestamp_text().parse::<u64>().ok(),
                Some(k.timestamp_ms())
            );
        }
        Err(_) => assert!(!idempotency_key_grammar(text), "refused {text:?}"),
    }
}

/// The init body and public-key validation: a key the domain accepts is usable by every
/// backend, and an uncompressed (`0x04`) key it refuses — off the curve, or a coordinate
/// out of range — is refused by every backend too.
///
/// Other encodings are refused by the domain whatever the backends think: the fuzzer
/// found that aws-lc-rs accepts SEC1 *hybrid* points (`0x06`/`0x07`) in agreement, which
/// the protocol does not allow (regression seed `regression-hybrid-point`).
pub fn init_request(data: &[u8]) {
    let Ok(body) = parse_init_body(data) else {
        return;
    };
    let _ = domain::TtlPolicy::DEFAULT.resolve(body.ttl);
    let verdict = validate_public_key(&body.client_public_key);
    let Ok(raw) = <[u8; 65]>::try_from(body.client_public_key.as_slice()) else {
        assert!(verdict.is_err(), "accepted a key that is not 65 bytes");
        return;
    };
    if raw[0] != 0x04 {
        assert_eq!(verdict, Err(PublicKeyError::NotUncompressed));
        return;
    }
    for p in BACKENDS.iter() {
        let ours = p.key_agreement.generate().expect("key generation");
        assert_eq!(
            ours.agree(&P256PublicKey(raw)).is_ok(),
            verdict.is_ok(),
            "{} disagrees with the validation ({verdict:?})",
            p.name
        );
    }
}

#[derive(Debug)]
struct NoDependencies;

impl HealthCheck for NoDependencies {
    async fn report(&self) -> HealthReport {
        HealthReport {
            session_store: "memory",
            postgres: Dependency::Disabled,
            redis: Dependency::Disabled,
            nonces_full: false,
            sessions_full: false,
        }
    }
}

type FuzzApi = Api<
    Stores<MemorySessionStore, NoCache, MemoryNonceStore, SystemClock, MemoryQuotas>,
    NoDependencies,
>;

fn api() -> &'static (Arc<FuzzApi>, tokio::runtime::Runtime) {
    static API: OnceLock<(Arc<FuzzApi>, tokio::runtime::Runtime)> = OnceLock::new();
    API.get_or_init(|| {
        let service = SessionService::new(
            // The first backend of the list (the default).
            BACKENDS[0],
            Stores {
                sessions: MemorySessionStore::new(100_000),
                cache: NoCache,
                nonces: MemoryNonceStore::new(100_000),
                clock: SystemClock,
                quotas: MemoryQuotas::default(),
            },
            ServiceConfig::default(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        (
            Api::new(service, NoDependencies, ApiConfig::default()),
            runtime,
        )
    })
}

const PATHS: [&str; 8] = [
    "/session/init",
    "/v1/session/init",
    "/transaction/purchase",
    "/health",
    "/ready",
    "/v1/session/S-000102030405060708090a0b0c0d0e0f",
    "/",
    "/v1/session/",
];

/// A whole request through the router on the memory stores: byte 0 picks method and
/// listener (and, with its high bits, one of 32 peer addresses, so the per-IP rate
/// limit is reached too), byte 1 the path, then `name: value` lines up to an empty line, then the
/// body. Never panics; every answer has an expected status, and every error body on a
/// route family is that family's JSON shape.
pub fn http_request(data: &[u8]) {
    let [sel, path, rest @ ..] = data else { return };
    let method = ["GET", "POST", "OPTIONS", "PUT"][usize::from(sel & 3)];
    let listener = if sel & 4 == 0 {
        Listener::Public
    } else {
        Listener::Internal
    };
    let path = PATHS[usize::from(*path) % PATHS.len()];
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut req = hyper::Request::builder().method(method).uri(path);
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(&line[..colon]),
            hyper::header::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        req = req.header(name, value);
    }
    let Ok(req) = req.body(Full::new(Bytes::copy_from_slice(body))) else {
        return;
    };
    let (api, runtime) = api();
    let peer = std::net::IpAddr::from([198, 51, 100, sel >> 3]);
    let resp = runtime.block_on(api.handle(listener, peer, req));
    let status = resp.status().as_u16();
    assert!(
        [
            200, 204, 400, 401, 403, 404, 405, 408, 409, 410, 413, 429, 500, 503
        ]
        .contains(&status),
        "unexpected status {status}"
    );
    if status >= 400 {
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(ct.as_deref(), Some("application/json"));
        let bytes = runtime
            .block_on(resp.into_body().collect())
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("error bodies are JSON");
        assert!(v["error"].is_string(), "{v}");
    }
}

/// The gateway's forwarding (docs/PROTOCOL.md §20), two properties. `data` is a path
/// after the route's prefix, then a NUL, then client header names, one per line.
///
/// 1. **Confinement**: a path the gateway accepts, read the way an upstream may read it
///    — percent-decoded, each segment's `;` parameters stripped (servlet containers),
///    dot segments removed (RFC 3986 §5.2.4) — stays under the route's base path.
/// 2. **Identity**: no client header that goes upstream folds (case, `_` as `-`) into a
///    name the gateway sets itself, into the `x-session-*` space, or into a name with a
///    `_` at all (which CGI/WSGI would fold), whatever the route passes.
pub fn gateway_forwarding(data: &[u8]) {
    let (path, names) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    // Only what a request's path can be: the HTTP layer splits the query off at the
    // first `?`, and a fragment is never sent.
    if let Ok(rest) = std::str::from_utf8(path)
        && !rest.contains(['?', '#'])
        && let Some(target) = http_adapter::gateway::confined_target("/public", rest)
    {
        let resolved = resolve_like_an_upstream(&target);
        assert!(
            resolved == "/public" || resolved.starts_with("/public/"),
            "{rest:?} was forwarded as {target:?}, which resolves to {resolved:?}"
        );
    }
    let client: Vec<hyper::header::HeaderName> = names
        .split(|&b| b == b'\n')
        .filter_map(|n| hyper::header::HeaderName::from_bytes(n).ok())
        .collect();
    // The widest setting: the route lists every client header in `pass_headers` (more
    // than its validation allows).
    let (forwarded, own) = http_adapter::gateway::forwarded_names(&client, &client);
    let fold = |n: &str| n.to_ascii_lowercase().replace('_', "-");
    for name in &forwarded {
        assert!(!name.contains('_'), "{name:?} was forwarded");
        let folded = fold(name);
        assert!(
            !own.iter().any(|o| fold(o) == folded) && !folded.starts_with("x-session-"),
            "{name:?} was forwarded and reads as a header the gateway sets ({own:?})"
        );
    }
}

/// A target path as an upstream may resolve it: the query dropped, percent-decoded,
/// `;` parameters stripped from each segment, dot segments removed.
fn resolve_like_an_upstream(target: &str) -> String {
    let path = target.split('?').next().unwrap_or_default();
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            decoded.push((h * 16 + l) as u8);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let stripped: Vec<&str> = decoded
        .split('/')
        .map(|segment| segment.split(';').next().unwrap_or_default())
        .collect();
    remove_dot_segments(&stripped.join("/"))
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_owned();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_owned();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_owned();
        } else if input.starts_with("/./") {
            input = input[2..].to_owned();
        } else if input == "/." {
            input = "/".to_owned();
        } else if input.starts_with("/../") || input == "/.." {
            input = if input == "/.." {
                "/".to_owned()
            } else {
                input[3..].to_owned()
            };
            match output.rfind('/') {
                Some(i) => output.truncate(i),
                None => output.clear(),
            }
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input = input[end..].to_owned();
        }
    }
    output
}
