//! `GET /.well-known/session-crypto`: what a client needs before its first init — the
//! protocol versions and suite the server speaks and, when a signing key is
//! configured, the key that signs v2 init responses, for clients to pin
//! (docs/PROTOCOL.md §14). Public data, cacheable.

use domain::encoding::base64_encode;
use domain::v2::{SUITE, ServerIdentity};
use hyper::header::{CACHE_CONTROL, HeaderValue};
use hyper::{Response, StatusCode};
use ports::Protocol;
use serde::Serialize;

use crate::wire::{Body, json};

/// How long clients and caches may keep the answer. A key rotation publishes the new
/// key first (docs/PROTOCOL.md), so a copy this old is still right.
pub(crate) const MAX_AGE_SEC: u64 = 300;

#[derive(Serialize)]
struct Config<'a> {
    protocols: [u8; 2],
    suites: [&'a str; 1],
    keys: Vec<Key<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Key<'a> {
    kid: &'a str,
    alg: &'a str,
    crv: &'a str,
    /// SEC1 uncompressed point, base64.
    public_key: String,
    /// The same key as a JWK, for `crypto.subtle.importKey("jwk", …)`.
    jwk: Jwk,
}

#[derive(Serialize)]
struct Jwk {
    kty: &'static str,
    crv: &'static str,
    x: String,
    y: String,
}

fn base64url(bytes: &[u8]) -> String {
    base64_encode(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// The answer.
pub(crate) fn handle(identity: Option<&ServerIdentity>) -> Response<Body> {
    let keys = identity
        .map(|id| {
            let public = id.public_key();
            let point = public.as_bytes();
            Key {
                kid: id.key_id(),
                alg: "ES256",
                crv: "P-256",
                public_key: base64_encode(point),
                jwk: Jwk {
                    kty: "EC",
                    crv: "P-256",
                    x: base64url(&point[1..33]),
                    y: base64url(&point[33..]),
                },
            }
        })
        .into_iter()
        .collect();
    let mut r = json(
        StatusCode::OK,
        &Config {
            protocols: Protocol::numbers(),
            suites: [SUITE],
            keys,
        },
    );
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={MAX_AGE_SEC}")) {
        r.headers_mut().insert(CACHE_CONTROL, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_has_no_padding_or_plus() {
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
