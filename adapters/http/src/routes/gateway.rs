//! A gateway route (docs/PROTOCOL.md §20): an encrypted request to `<prefix><rest>` is
//! authenticated like any exchange, its plaintext forwarded to `<upstream>/<rest>` with
//! the same method and query and the session's identity, and the upstream's status,
//! content type and body sealed into the answer.

use std::net::IpAddr;
use std::time::Instant;

use domain::limits::client_ip;

use bytes::Bytes;
use domain::{Answer, ExchangeError, Family, Outcome, SessionService};
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use ports::{Clock, Ports, Protocol};
use tracing::{debug, warn};
use zeroize::Zeroize;

use crate::config::ApiConfig;
use crate::gateway::forwarded::{self, Identity};
use crate::gateway::upstream::{self, AnswerBudget, Failure};
use crate::gateway::{ConnectionSlots, Gateway, GatewayRoute};
use crate::metrics;
use crate::pipeline::body::Held;
use crate::pipeline::body::{RequestBody, body_failure, read_body};
use crate::routes::Incoming;
use crate::routes::exchange::{self, EncryptedHeaders};
use crate::wire::{
    Body, X_ENVELOPE, X_FORWARDED_FOR, X_INNER_CONTENT_TYPE, X_INNER_STATUS, code_error, header,
    header_list, not_found,
};

/// Serves one request on the gateway route at `index` of the configured routes.
pub(crate) async fn serve<P, B>(
    service: &SessionService<P>,
    config: &ApiConfig,
    index: usize,
    req: Incoming<'_, B>,
) -> Response<Body>
where
    P: Ports,
    B: RequestBody,
{
    let gateway = &config.gateway;
    let Some(route) = gateway.get(index) else {
        return not_found(req.parts.uri.path());
    };
    let Incoming {
        parts,
        body,
        template,
        peer,
        request_id,
        started,
    } = req;
    let headers = EncryptedHeaders::of(&parts);
    let target = match precheck(route, &parts) {
        Ok(target) => target,
        Err(refusal) => return *refusal,
    };
    if let Err(e) = headers.precheck(service) {
        return exchange::refuse(service, &headers, route.prefix, &e).await;
    }
    let (limit, timeout) = (route.max_body, config.body_timeout);
    let bytes = match read_body(limit, timeout, &config.body_budget, &parts.headers, body).await {
        Ok((bytes, _held)) => bytes,
        Err(f) => return body_failure(Family::Unversioned, template, f),
    };
    let mut envelope = envelope(&parts, bytes);
    // The answer's room, before the nonce is claimed and the upstream called: a slot of
    // the connection's, and a first share of the buffer budget. Both stay with the
    // sealed answer until it is written.
    let slot = match parts.extensions.get::<ConnectionSlots>() {
        None => None,
        Some(slots) => match slots.try_take() {
            Some(slot) => Some(slot),
            None => return busy(service, &headers, route, "connection_answers").await,
        },
    };
    let mut answer_budget = AnswerBudget {
        budget: &config.body_budget,
        held: Held::none(),
        reserved: 0,
    };
    if answer_budget
        .cover(FIRST_ANSWER_SHARE.min(route.max_body))
        .is_err()
    {
        return busy(service, &headers, route, "answer_budget").await;
    }
    let chain = header_list(&parts.headers, &X_FORWARDED_FOR);
    let request = Forward {
        route,
        parts: &parts,
        headers: &headers,
        target,
        request_id,
        client_ip: client_ip(peer, chain.as_deref(), &config.trusted_proxies),
        proto: config.scheme,
        started,
    };
    let mut resp = forward(
        service,
        gateway,
        &request,
        &mut envelope,
        &mut answer_budget,
    )
    .await;
    envelope.zeroize();
    resp.body_mut().keep(answer_budget.held);
    if let Some(slot) = slot {
        resp.body_mut().keep(slot);
    }
    resp
}

/// What of the buffer budget a gateway request must find free before the upstream is
/// called (the rest of its answer is taken as it arrives).
const FIRST_ANSWER_SHARE: usize = 16 * 1024;

/// 503 before anything is claimed or forwarded: the gateway cannot hold another answer.
async fn busy<P: Ports>(
    service: &SessionService<P>,
    headers: &EncryptedHeaders<'_>,
    route: &GatewayRoute,
    reason: &'static str,
) -> Response<Body> {
    metrics::rejection(route.prefix, reason);
    warn!(
        route = route.prefix,
        reason, "gateway answer refused: no room"
    );
    exchange::refusal(
        service,
        headers,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        Outcome::NotExecuted,
    )
    .await
}

/// The checks a gateway request passes before its headers: the route's methods and a
/// path that stays inside the route. `Ok` holds the upstream target.
fn precheck(route: &GatewayRoute, parts: &Parts) -> Result<String, Box<Response<Body>>> {
    if !route.methods.contains(&parts.method) {
        let mut r = code_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
        r.headers_mut().insert(header::ALLOW, route.allow.clone());
        return Err(Box::new(r));
    }
    let Ok(target) = route.target(parts.uri.path(), parts.uri.query()) else {
        metrics::rejection(route.prefix, "bad_path");
        return Err(Box::new(code_error(
            StatusCode::BAD_REQUEST,
            "INVALID_PATH",
        )));
    };
    Ok(target)
}

/// The envelope of a request: the body, or for a `GET` the `X-Envelope` header (and
/// then no body). Anything else reads as an envelope that cannot open.
fn envelope(parts: &Parts, body: Bytes) -> Vec<u8> {
    let in_header = header(&parts.headers, &X_ENVELOPE);
    match (parts.method == Method::GET, in_header) {
        (true, Some(text)) if body.is_empty() => {
            domain::encoding::base64_decode(text).unwrap_or_default()
        }
        (false, None) => Vec::from(body),
        _ => Vec::new(),
    }
}

/// One request to forward: its route, head, upstream target and request id.
struct Forward<'a> {
    route: &'a GatewayRoute,
    parts: &'a Parts,
    headers: &'a EncryptedHeaders<'a>,
    /// The upstream target (origin form), from [`precheck`].
    target: String,
    request_id: &'a str,
    client_ip: IpAddr,
    proto: &'static str,
    started: Instant,
}

async fn forward<P: Ports>(
    service: &SessionService<P>,
    gateway: &Gateway,
    request: &Forward<'_>,
    body: &mut [u8],
    answer_budget: &mut AnswerBudget<'_>,
) -> Response<Body> {
    let Forward {
        route,
        parts,
        headers,
        ref target,
        request_id,
        client_ip,
        proto,
        started,
    } = *request;
    let accepted = service
        .accept(headers.request(body), |a| {
            if a.protocol() == Protocol::V1 && !route.allow_v1 {
                Err(ExchangeError::ProtocolNotAllowed)
            } else {
                Ok(())
            }
        })
        .await;
    let mut accepted = match accepted {
        Ok((accepted, ())) => accepted,
        Err(e) => return exchange::refuse(service, headers, route.prefix, &e).await,
    };
    let session = service.session_pseudonym(&accepted, gateway.session_hash_key());
    let identity = Identity {
        client_id: accepted.client_id(),
        session: &session,
        protocol: accepted.protocol().number(),
        request_id,
        client_ip,
        proto,
    };
    // Empty is absent, as for the AAD (docs/PROTOCOL.md §20): the default type goes up.
    let inner_type = header(&parts.headers, &X_INNER_CONTENT_TYPE).filter(|t| !t.is_empty());
    let Ok(upstream_req) = forwarded::request(
        parts.method.clone(),
        target,
        &parts.headers,
        inner_type,
        &identity,
        &route.pass_headers,
        Bytes::copy_from_slice(accepted.plaintext()),
    ) else {
        // A header value the upstream request cannot carry: the client's request.
        return exchange::refusal(
            service,
            headers,
            StatusCode::BAD_REQUEST,
            "CRYPTO_ERROR",
            Outcome::NotExecuted,
        )
        .await;
    };
    let clock = service.ports().clock();
    let t0 = clock.monotonic_ns();
    let answer = upstream::send(
        &route.pool,
        upstream_req,
        route.timeout,
        route.max_body,
        answer_budget,
    )
    .await;
    let t1 = clock.monotonic_ns();
    accepted.record_step("upstream", t0, t1);
    metrics::gateway_upstream(route.prefix, t1.saturating_sub(t0));
    let answer = match answer {
        Ok(answer) => answer,
        Err(failure) => {
            metrics::gateway_forwarded(route.prefix, failure.reason());
            warn!(
                route = route.prefix,
                reason = failure.reason(),
                "upstream failed"
            );
            // The request may have reached the upstream: its outcome is unknown.
            let (status, code) = match failure {
                Failure::Timeout => (StatusCode::GATEWAY_TIMEOUT, "GATEWAY_TIMEOUT"),
                _ => (StatusCode::BAD_GATEWAY, "BAD_GATEWAY"),
            };
            return exchange::refusal(service, headers, status, code, Outcome::Unknown).await;
        }
    };
    let status = answer.status;
    metrics::gateway_forwarded(route.prefix, status_class(status));
    debug!(
        route = route.prefix,
        upstream_status = status.as_u16(),
        "forwarded"
    );
    let sealed = service.seal(
        accepted,
        Answer {
            status: status.as_u16(),
            content_type: &answer.content_type,
            plaintext: answer.body,
        },
    );
    let out = match sealed {
        Ok(out) => out,
        Err(e) => return exchange::refuse(service, headers, route.prefix, &e).await,
    };
    let bodiless = matches!(status.as_u16(), 204 | 205 | 304);
    let wire_status = if bodiless { StatusCode::OK } else { status };
    let mut resp = exchange::sealed(wire_status, headers.kid(), out, started);
    let h = resp.headers_mut();
    if bodiless {
        h.insert(X_INNER_STATUS, HeaderValue::from(status.as_u16()));
    }
    if !answer.content_type.is_empty()
        && let Ok(v) = HeaderValue::from_str(&answer.content_type)
    {
        h.insert(X_INNER_CONTENT_TYPE, v);
    }
    resp
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
