//! JSON shapes on the wire and error responses of both route families.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

pub(crate) type Body = Full<Bytes>;

pub(crate) const JSON: HeaderValue = HeaderValue::from_static("application/json");
pub(crate) const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");

pub(crate) fn response(
    status: StatusCode,
    content_type: HeaderValue,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, content_type);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    // Serialising our own plain structs cannot fail.
    let body = serde_json::to_vec(value).unwrap_or_default();
    response(status, JSON, body)
}

/// Unversioned error body: `{"error": CODE}`.
pub(crate) fn code_error(status: StatusCode, code: &'static str) -> Response<Body> {
    #[derive(Serialize)]
    struct E {
        error: &'static str,
    }
    json(status, &E { error: code })
}

/// Identity (`/v1`) error body: `{"error": <reason phrase>, "message": …}`.
pub(crate) fn identity_error(status: StatusCode, message: &str) -> Response<Body> {
    #[derive(Serialize)]
    struct E<'a> {
        error: &'a str,
        message: &'a str,
    }
    json(
        status,
        &E {
            error: status.canonical_reason().unwrap_or("Error"),
            message,
        },
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InitResponse<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) server_public_key: &'a str,
    pub(crate) enc_alg: &'a str,
    pub(crate) expires_in_sec: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PurchaseResponse<'a> {
    pub(crate) status: &'a str,
    pub(crate) transaction_id: &'a str,
    pub(crate) scheme_code: &'a str,
    pub(crate) amount: &'a serde_json::value::RawValue,
    pub(crate) timestamp: &'a str,
    pub(crate) message: &'a str,
}

#[derive(serde::Deserialize)]
pub(crate) struct InitJson<'a> {
    #[serde(rename = "clientPublicKey", default)]
    pub(crate) client_public_key: Option<std::borrow::Cow<'a, str>>,
    /// `Some` whenever the field is present, `null` included (which is then refused).
    #[serde(rename = "ttlSec", default, borrow, deserialize_with = "present")]
    pub(crate) ttl_sec: Option<&'a serde_json::value::RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de serde_json::value::RawValue>, D::Error> {
    <&serde_json::value::RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

#[derive(serde::Deserialize)]
pub(crate) struct PurchaseJson<'a> {
    #[serde(rename = "schemeCode", borrow)]
    pub(crate) scheme_code: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) amount: &'a serde_json::value::RawValue,
}

/// Whether the first non-whitespace byte opens an object (serde would otherwise
/// accept a JSON array for a struct).
pub(crate) fn is_json_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}
