//! What every encrypted route shares on the wire: the domain request from the
//! headers, the sealed answer, and the mapping of [`ExchangeError`] to statuses.
//!
//! An encrypted business route is a [`Handler`] — plaintext in, plaintext out — in a
//! file of its own under `routes/`, and one `Route::Exchange(..)` line in the route
//! table; [`handle`] does the rest.

use std::time::Instant;

use domain::purchase::PayloadError;
use domain::{
    ExchangeError, ExchangeOutcome, ExchangeRequest, RequestLine, ResponseContext, SessionService,
};
use hyper::header::HeaderValue;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use ports::Ports;
use tracing::{error, info};

use crate::metrics;
use crate::pipeline::timing::server_timing;
use crate::wire::{
    Body, OCTETS, SERVER_TIMING, X_CLIENT_ID, X_IDEMPOTENCY_KEY, X_INNER_CONTENT_TYPE, X_KID,
    code_error, header, response,
};

/// What an encrypted route does with an authentic, fresh request: check its plaintext
/// and build the answer's plaintext. It runs only after the envelope has opened and the
/// nonce has been claimed.
pub(crate) type Handler = fn(&[u8], &ResponseContext) -> Result<Vec<u8>, PayloadError>;

/// Runs one authenticated exchange on `route` (its template, for logs and metrics).
pub(crate) async fn handle<P: Ports>(
    service: &SessionService<P>,
    route: &'static str,
    handler: Handler,
    parts: &Parts,
    mut body: Vec<u8>,
    started: Instant,
) -> Response<Body> {
    let kid = header(&parts.headers, &X_KID);
    let req = request(parts, &mut body);
    match service.exchange(req, handler).await {
        Ok(out) => sealed(StatusCode::OK, kid.unwrap_or_default(), out, started),
        Err(e) => failure(route, &e),
    }
}

/// The domain's view of an encrypted request: its three headers, its request line
/// (method, target as sent, `X-Inner-Content-Type`) and the envelope.
pub(crate) fn request<'a>(parts: &'a Parts, body: &'a mut [u8]) -> ExchangeRequest<'a> {
    let headers = &parts.headers;
    ExchangeRequest {
        kid: header(headers, &X_KID),
        idempotency_key: header(headers, &X_IDEMPOTENCY_KEY),
        client_id: header(headers, &X_CLIENT_ID),
        line: RequestLine {
            method: parts.method.as_str(),
            target: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path(), |p| p.as_str()),
            content_type: header(headers, &X_INNER_CONTENT_TYPE).unwrap_or_default(),
        },
        body,
    }
}

/// `status` with the sealed answer, the request's `X-Kid` and the response's
/// idempotency key.
pub(crate) fn sealed(
    status: StatusCode,
    kid: &str,
    out: ExchangeOutcome,
    started: Instant,
) -> Response<Body> {
    let mut r = response(status, OCTETS, out.envelope);
    let h = r.headers_mut();
    if let (Ok(kid), Ok(key)) = (
        HeaderValue::from_str(kid),
        HeaderValue::from_str(&out.idempotency_key),
    ) {
        h.insert(X_KID, kid);
        h.insert(X_IDEMPOTENCY_KEY, key);
    }
    h.insert(SERVER_TIMING, server_timing(out.timings.entries(), started));
    r
}

/// The unversioned family's answer to a failed exchange on `route`: 401
/// `SESSION_EXPIRED` when the client must start a new session, 503 when a store could
/// not decide, 500 for a backend failure, and one generic 400 `CRYPTO_ERROR` for
/// everything else (no oracle on which check failed).
pub(crate) fn failure(route: &'static str, e: &ExchangeError) -> Response<Body> {
    let (status, code) = match e {
        e if e.is_session_state() => (StatusCode::UNAUTHORIZED, "SESSION_EXPIRED"),
        ExchangeError::Store(_) | ExchangeError::Quota(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
        }
        ExchangeError::Crypto => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        ExchangeError::ProtocolNotAllowed => (StatusCode::BAD_REQUEST, "UNSUPPORTED_PROTOCOL"),
        _ => (StatusCode::BAD_REQUEST, "CRYPTO_ERROR"),
    };
    if status.is_server_error() {
        error!(route, status = status.as_u16(), reason = %e, "request failed");
    } else {
        info!(route, status = status.as_u16(), reason = %e, "rejected");
    }
    metrics::rejection(route, e.reason());
    code_error(status, code)
}
