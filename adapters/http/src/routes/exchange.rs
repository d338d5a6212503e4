//! What every encrypted route shares on the wire: the domain request from the
//! headers, the sealed answer, and the mapping of [`ExchangeError`] to statuses —
//! refusals sealed (docs/PROTOCOL.md §9.1) for a v2 client that asks.
//!
//! An encrypted business route is a [`domain::EncryptedRoute`] — a pure check of the
//! plaintext before the nonce claim, an async handler after it — in a file of its own
//! under `routes/`, with a [`HandlerFailure`] for its handler's error and one line in
//! the route table; [`handle`] does the rest.

use std::time::Instant;

use domain::{
    EncryptedRoute, ExchangeError, ExchangeOutcome, ExchangeRequest, Family, Outcome,
    RefusedRequest, RequestLine, RouteError, SessionService,
};
use hyper::header::HeaderValue;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use ports::{NonceError, Ports};
use tracing::{error, info};

use super::Incoming;
use crate::config::ApiConfig;
use crate::metrics;
use crate::pipeline::body::{RequestBody, body_failure, read_body};
use crate::pipeline::timing::server_timing;
use crate::wire::{
    Body, CALL_KEY, OCTETS, SERVER_TIMING, X_CLIENT_ID, X_IDEMPOTENCY_KEY, X_INNER_CONTENT_TYPE,
    X_KID, X_SEALED_REFUSAL, X_SEALED_REFUSALS, code_error, header, response,
};

/// How an encrypted route's handler error is answered: its status and error code
/// (unsealed, like every refusal; the reason goes to the log).
pub(crate) trait HandlerFailure: std::error::Error {
    /// The status and the `error` code of the answer.
    fn answer(&self) -> (StatusCode, &'static str);
}

/// Runs one authenticated exchange on `route`, served at `template` (for logs and
/// metrics).
async fn handle<P, R>(
    service: &SessionService<P>,
    template: &'static str,
    route: &R,
    headers: &EncryptedHeaders<'_>,
    mut body: Vec<u8>,
    started: Instant,
) -> Response<Body>
where
    P: Ports,
    R: EncryptedRoute,
    R::Error: HandlerFailure,
{
    match service.exchange(headers.request(&mut body), route).await {
        Ok(out) => sealed(StatusCode::OK, headers.kid(), out, started),
        Err(RouteError::Exchange(e)) => refuse(service, headers, template, &e).await,
        Err(RouteError::Handler(e)) => {
            let (status, code) = e.answer();
            error!(route = template, status = status.as_u16(), reason = %e, "handler failed");
            metrics::rejection(template, "handler");
            code_error(status, code)
        }
    }
}

/// The headers of an encrypted request the domain reads — its three protocol headers
/// and its request line (method, target as sent, `X-Inner-Content-Type`) — looked up
/// once per request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncryptedHeaders<'a> {
    kid: Option<&'a str>,
    idempotency_key: Option<&'a str>,
    client_id: Option<&'a str>,
    /// `Idempotency-Key`.
    call_key: Option<&'a str>,
    line: RequestLine<'a>,
    /// `X-Sealed-Refusals: 1`: the client opens sealed refusals.
    sealed_refusals: bool,
}

impl<'a> EncryptedHeaders<'a> {
    /// Reads them from the request's head.
    pub(crate) fn of(parts: &'a Parts) -> Self {
        let headers = &parts.headers;
        Self {
            kid: header(headers, &X_KID),
            idempotency_key: header(headers, &X_IDEMPOTENCY_KEY),
            client_id: header(headers, &X_CLIENT_ID),
            call_key: header(headers, &CALL_KEY),
            line: RequestLine {
                method: parts.method.as_str(),
                target: parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| parts.uri.path(), |p| p.as_str()),
                content_type: header(headers, &X_INNER_CONTENT_TYPE).unwrap_or_default(),
            },
            sealed_refusals: header(headers, &X_SEALED_REFUSALS) == Some("1"),
        }
    }

    /// The request a refusal answers.
    fn refused(&self) -> RefusedRequest<'a> {
        RefusedRequest {
            kid: self.kid,
            idempotency_key: self.idempotency_key,
            client_id: self.client_id,
            line: self.line,
        }
    }

    /// `X-Kid` (the answer repeats it).
    pub(crate) fn kid(&self) -> &'a str {
        self.kid.unwrap_or_default()
    }

    /// The checks that need neither the body nor any state (header grammars, the
    /// window): a request that cannot pass is refused before its body is read.
    pub(crate) fn precheck<P: Ports>(
        &self,
        service: &SessionService<P>,
    ) -> Result<(), ExchangeError> {
        service.precheck(self.kid, self.idempotency_key, self.client_id)
    }

    /// The domain's view of the request, with its envelope.
    pub(crate) fn request<'b>(&self, body: &'b mut [u8]) -> ExchangeRequest<'b>
    where
        'a: 'b,
    {
        ExchangeRequest {
            kid: self.kid,
            idempotency_key: self.idempotency_key,
            client_id: self.client_id,
            call_key: self.call_key,
            line: self.line,
            body,
        }
    }
}

/// The steps every built-in encrypted route takes before its exchange: the headers and
/// the window first (so a request that cannot pass is refused before its body is read
/// and buffered), then the body within the configured limits.
///
/// # Errors
/// The answer to send instead.
pub(crate) async fn read_envelope<P, B>(
    service: &SessionService<P>,
    config: &ApiConfig,
    headers: &EncryptedHeaders<'_>,
    parts: &Parts,
    body: B,
    template: &'static str,
) -> Result<Vec<u8>, Response<Body>>
where
    P: Ports,
    B: RequestBody,
{
    if let Err(e) = headers.precheck(service) {
        return Err(refuse(service, headers, template, &e).await);
    }
    let (limit, timeout) = (config.body_limit, config.body_timeout);
    match read_body(limit, timeout, &config.body_budget, &parts.headers, body).await {
        Ok((bytes, _held)) => Ok(Vec::from(bytes)),
        Err(f) => Err(body_failure(Family::Unversioned, template, f)),
    }
}

/// Serves one request on an encrypted route.
pub(crate) async fn serve<P, R, B>(
    service: &SessionService<P>,
    config: &ApiConfig,
    route: &R,
    req: Incoming<'_, B>,
) -> Response<Body>
where
    P: Ports,
    R: EncryptedRoute,
    R::Error: HandlerFailure,
    B: RequestBody,
{
    let Incoming {
        parts,
        body,
        template,
        started,
        ..
    } = req;
    let headers = EncryptedHeaders::of(&parts);
    match read_envelope(service, config, &headers, &parts, body, template).await {
        Ok(body) => handle(service, template, route, &headers, body, started).await,
        Err(refused) => refused,
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
/// not decide (with `Retry-After` when the nonce fence refused: a new request will
/// pass then), 500 for a backend failure, and one generic 400 `CRYPTO_ERROR` for
/// everything else (no oracle on which check failed) — sealed under the session's
/// response key (docs/PROTOCOL.md §9.1) when the client asked for it and the server
/// can seal.
pub(crate) async fn refuse<P: Ports>(
    service: &SessionService<P>,
    headers: &EncryptedHeaders<'_>,
    route: &'static str,
    e: &ExchangeError,
) -> Response<Body> {
    let (status, code) = failure_answer(route, e);
    let mut r = refusal(service, headers, status, code, Outcome::of(e)).await;
    if let ExchangeError::NonceStore(NonceError::Fenced { retry_after_ms, .. }) = e {
        set_retry_after(&mut r, *retry_after_ms);
    }
    r
}

/// A refusal with `status` and `code` of the request `headers` describe: sealed, with
/// `outcome`, when the client sent `X-Sealed-Refusals: 1` and the session is a live v2
/// session of the requesting client; otherwise the plain `{"error": code}`. A 401
/// (the session is gone) is never sealed.
pub(crate) async fn refusal<P: Ports>(
    service: &SessionService<P>,
    headers: &EncryptedHeaders<'_>,
    status: StatusCode,
    code: &'static str,
    outcome: Outcome,
) -> Response<Body> {
    if headers.sealed_refusals && status != StatusCode::UNAUTHORIZED {
        let sealed = service
            .seal_refusal(headers.refused(), status.as_u16(), code, outcome)
            .await;
        if let Some(sealed) = sealed
            && let (Ok(kid), Ok(key)) = (
                HeaderValue::from_str(&sealed.kid),
                HeaderValue::from_str(&sealed.idempotency_key),
            )
        {
            let mut r = response(status, OCTETS, sealed.envelope);
            let h = r.headers_mut();
            h.insert(X_KID, kid);
            h.insert(X_IDEMPOTENCY_KEY, key);
            h.insert(X_SEALED_REFUSAL, HeaderValue::from_static("1"));
            return r;
        }
    }
    code_error(status, code)
}

/// The status and code of a failed exchange, logged and counted.
fn failure_answer(route: &'static str, e: &ExchangeError) -> (StatusCode, &'static str) {
    let (status, code) = match e {
        e if e.is_session_state() => (StatusCode::UNAUTHORIZED, "SESSION_EXPIRED"),
        ExchangeError::Store(_)
        | ExchangeError::Quota(_)
        | ExchangeError::NonceStore(NonceError::Fenced { .. }) => {
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
    (status, code)
}

/// `Retry-After` in whole seconds, rounded up (so that a retry then is not refused
/// again).
pub(crate) fn set_retry_after(r: &mut Response<Body>, after_ms: u64) {
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        HeaderValue::from(after_ms.div_ceil(1000).max(1)),
    );
}
