//! `GET /.well-known/session-crypto`: what a client needs before its first init — the
//! protocol versions and suite the server speaks and, when signing keys are
//! configured, the key that signs v2 init responses and, during a rotation, the next
//! and previous ones, for clients to pin (docs/PROTOCOL.md §14). Public data, cacheable.

use domain::SigningKeys;
use domain::encoding::{base64_encode, utc_timestamp};
use domain::v2::SUITE;
use hyper::header::{CACHE_CONTROL, HeaderValue};
use hyper::{Response, StatusCode};
use ports::Protocol;
use serde::Serialize;

use crate::wire::{Body, json};

/// How long clients and caches may keep the answer. A key rotation publishes the new
/// key this long before it signs (docs/operations.md), so a copy this old is still
/// right.
pub const MAX_AGE_SEC: u64 = 300;

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
    /// `current` (signs), `next` (will sign: pin it too) or `previous` (signed before
    /// a rotation; other instances may still sign with it).
    status: &'static str,
    /// When the key stops being trusted (RFC 3339 UTC), if it has an end.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
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

/// The answer at `now` (Unix seconds): every published key, the current one first; a
/// previous key past its not-after time is left out, and the document's cache
/// lifetime ends no later than the first not-after time it lists.
pub(crate) fn handle(keys: &SigningKeys, now: u64) -> Response<Body> {
    let keys_now = keys.published(now);
    let keys_json = keys_now
        .iter()
        .map(|k| {
            let point = k.public_key.as_bytes();
            Key {
                kid: &k.key_id,
                alg: "ES256",
                crv: "P-256",
                public_key: base64_encode(point),
                jwk: Jwk {
                    kty: "EC",
                    crv: "P-256",
                    x: base64url(&point[1..33]),
                    y: base64url(&point[33..]),
                },
                status: k.status.as_str(),
                not_after: k.not_after.map(utc_timestamp),
            }
        })
        .collect();
    let mut r = json(
        StatusCode::OK,
        &Config {
            protocols: Protocol::numbers(),
            suites: [SUITE],
            keys: keys_json,
        },
    );
    let max_age = keys.fresh_for(now, MAX_AGE_SEC);
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
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
