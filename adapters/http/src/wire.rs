//! What the router, the pipeline and every route share: the listener kind, header
//! access, the route family of a path, response builders and the error bodies of both
//! route families.

use std::any::Any;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use domain::Family;
use domain::headers::name;
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public API: unversioned routes, `POST /v1/session/init`, health, CORS.
    Public,
    /// The private-network listener: the `/v1` family including the raw key release
    /// `GET /v1/session/{id}`, and health. Never expose it publicly.
    Internal,
}

// The protocol's headers, from the one table of their names (`domain::headers::name`).
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static(name::REQUEST_ID);
pub(crate) const X_KID: HeaderName = HeaderName::from_static(name::KID);
pub(crate) const X_IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static(name::IDEMPOTENCY_KEY);
pub(crate) const X_CLIENT_ID: HeaderName = HeaderName::from_static(name::CLIENT_ID);
pub(crate) const X_INNER_CONTENT_TYPE: HeaderName =
    HeaderName::from_static(name::INNER_CONTENT_TYPE);
pub(crate) const X_ENVELOPE: HeaderName = HeaderName::from_static(name::ENVELOPE);
pub(crate) const X_INNER_STATUS: HeaderName = HeaderName::from_static(name::INNER_STATUS);
pub(crate) const CALL_KEY: HeaderName = HeaderName::from_static(name::CALL_KEY);
pub(crate) const X_SEALED_REFUSALS: HeaderName = HeaderName::from_static(name::SEALED_REFUSALS);
pub(crate) const X_SEALED_REFUSAL: HeaderName = HeaderName::from_static(name::SEALED_REFUSAL);
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Text no header grammar of the protocol accepts: what a malformed or repeated header
/// reads as, so the domain refuses it like any other malformed value.
const MALFORMED: &str = "\u{0}";

/// A header's text. A value that is not visible ASCII cannot satisfy any header
/// grammar of the protocol, and neither can a header sent more than once (which line
/// would count is a matter of interpretation between a proxy and this server); both
/// read as malformed text the domain will refuse.
pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return Some(MALFORMED);
    }
    Some(first.to_str().unwrap_or(MALFORMED))
}

/// Every line of a list-valued header, joined in order with `,` (RFC 9110 §5.3: a
/// recipient may combine field lines that way); `None` without any line. A line that is
/// not visible ASCII reads as malformed text.
pub(crate) fn header_list(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    let mut joined = first.to_str().unwrap_or(MALFORMED).to_owned();
    for line in lines {
        joined.push(',');
        joined.push_str(line.to_str().unwrap_or(MALFORMED));
    }
    Some(joined)
}

/// The route family a path belongs to (decides the error shape).
pub(crate) fn family_of(path: &str) -> Family {
    if path.starts_with("/v1/") {
        Family::V1Paths
    } else {
        Family::Unversioned
    }
}

/// 404 in the family's shape.
pub(crate) fn not_found(path: &str) -> Response<Body> {
    match family_of(path) {
        Family::V1Paths => identity_error(StatusCode::NOT_FOUND, "no such route"),
        Family::Unversioned => code_error(StatusCode::NOT_FOUND, "NOT_FOUND"),
    }
}

/// An empty answer (no content type).
pub(crate) fn no_content() -> Response<Body> {
    let mut r = response(StatusCode::NO_CONTENT, JSON, Bytes::new());
    r.headers_mut().remove(CONTENT_TYPE);
    r
}

/// A response body: its bytes, and what it keeps reserved until hyper has written the
/// last of them and dropped it — a gateway answer's share of the buffer budget and its
/// connection's answer slot — so an answer a client does not read keeps counting.
#[derive(Debug)]
pub struct Body {
    bytes: Full<Bytes>,
    kept: Vec<Box<dyn Any + Send + Sync>>,
}

impl Body {
    fn new(bytes: Bytes) -> Self {
        Self {
            bytes: Full::new(bytes),
            kept: Vec::new(),
        }
    }

    /// Keeps `guard` alive as long as the body.
    pub(crate) fn keep(&mut self, guard: impl Any + Send + Sync) {
        self.kept.push(Box::new(guard));
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().bytes).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.bytes.size_hint()
    }
}

pub(crate) const JSON: HeaderValue = HeaderValue::from_static("application/json");
pub(crate) const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");

pub(crate) fn response(
    status: StatusCode,
    content_type: HeaderValue,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Body::new(body.into()));
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

/// Whether the first non-whitespace byte opens an object (serde would otherwise
/// accept a JSON array for a struct).
pub(crate) fn is_json_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}
