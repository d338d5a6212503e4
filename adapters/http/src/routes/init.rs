//! `POST /session/init` and `POST /v1/session/init`: create a session.

use std::net::IpAddr;
use std::time::Instant;

use domain::encoding::{base64_decode, base64_encode};
use domain::limits::rate_limited_ip;
use domain::{
    Family, InitBody, InitError, InitOutcome, InitRequest, RequestedProtocol, RequestedTtl,
    SessionService,
};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use ports::{NonceError, Ports, Protocol};
use serde::{Deserialize, Serialize};
use tracing::{error, info};

use super::Incoming;
use crate::config::ApiConfig;
use crate::metrics;
use crate::pipeline::body::{RequestBody, body_failure, read_body};
use crate::pipeline::timing::server_timing;
use crate::wire::{
    Body, SERVER_TIMING, X_CLIENT_ID, X_FORWARDED_FOR, X_IDEMPOTENCY_KEY, X_KID, code_error,
    header, header_list, identity_error, is_json_object, json,
};

#[derive(Deserialize)]
struct InitJson<'a> {
    #[serde(rename = "clientPublicKey", default)]
    client_public_key: Option<std::borrow::Cow<'a, str>>,
    /// `Some` whenever the field is present, `null` included (which is then refused).
    #[serde(rename = "ttlSec", default, borrow, deserialize_with = "present")]
    ttl_sec: Option<&'a serde_json::value::RawValue>,
    /// The protocol version asked for (absent: v1).
    #[serde(default, borrow, deserialize_with = "present")]
    protocol: Option<&'a serde_json::value::RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<&'de serde_json::value::RawValue>, D::Error> {
    <&serde_json::value::RawValue as Deserialize>::deserialize(d).map(Some)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitResponse<'a> {
    session_id: &'a str,
    server_public_key: &'a str,
    enc_alg: &'a str,
    expires_in_sec: u64,
    /// Only when the request named a version.
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    suite: Option<&'a str>,
    /// v2: base64 HMAC over the transcript (docs/PROTOCOL.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    confirm: Option<String>,
    /// v2 with a server signing key: base64 ECDSA P-256 signature (r ‖ s).
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_key_id: Option<&'a str>,
}

/// The body of a refused `protocol`: which versions the server speaks.
#[derive(Serialize)]
struct Unsupported<'a> {
    error: &'a str,
    message: &'a str,
    supported: [u8; 2],
}

/// Parses an init body (JSON object with `clientPublicKey` in base64 and optional
/// `ttlSec`); the error is a reason for the logs.
///
/// # Errors
/// The reason the body is unusable.
pub fn parse_init_body(body: &[u8]) -> Result<InitBody, &'static str> {
    if !is_json_object(body) {
        return Err("body is not a JSON object");
    }
    let parsed: InitJson<'_> =
        serde_json::from_slice(body).map_err(|_| "body is not valid init JSON")?;
    let key_text = parsed.client_public_key.unwrap_or_default();
    let client_public_key = if key_text.is_empty() {
        Vec::new()
    } else {
        base64_decode(&key_text).ok_or("clientPublicKey is not base64")?
    };
    let ttl = match parsed.ttl_sec {
        None => RequestedTtl::Absent,
        Some(raw) => {
            let text = raw.get();
            match text.bytes().next() {
                Some(b'-' | b'0'..=b'9') => text
                    .parse()
                    .map_or(RequestedTtl::NotANumber, RequestedTtl::Number),
                _ => RequestedTtl::NotANumber,
            }
        }
    };
    // Like `ttlSec`: any JSON number with an integral value (`2`, `2.0`, `2e0`), so a
    // client whose JSON writes floats is understood; anything else is not a version.
    let protocol = match parsed.protocol {
        None => RequestedProtocol::Absent,
        Some(raw) => {
            let text = raw.get();
            match (text.parse::<u64>(), text.parse::<f64>()) {
                (Ok(n), _) => RequestedProtocol::Number(n),
                (_, Ok(f))
                    if text.starts_with(|c: char| c.is_ascii_digit())
                        && f.fract() == 0.0
                        && (0.0..=u32::MAX as f64).contains(&f) =>
                {
                    RequestedProtocol::Number(f as u64)
                }
                _ => RequestedProtocol::Invalid,
            }
        }
    };
    Ok(InitBody {
        client_public_key,
        ttl,
        protocol,
    })
}

/// Whether the request declares a JSON body (`application/json`, parameters allowed).
fn declares_json(headers: &HeaderMap) -> bool {
    header(headers, &header::CONTENT_TYPE).is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Serves one init: reads its body within the configured limits, then [`handle`].
pub(crate) async fn serve<P, B>(
    service: &SessionService<P>,
    config: &ApiConfig,
    family: Family,
    req: Incoming<'_, B>,
) -> Response<Body>
where
    P: Ports,
    B: RequestBody,
{
    let Incoming {
        parts,
        body,
        template,
        peer,
        started,
        ..
    } = req;
    let (limit, timeout) = (config.body_limit, config.body_timeout);
    match read_body(limit, timeout, &config.body_budget, &parts.headers, body).await {
        Ok((bytes, _held)) => {
            handle(
                service,
                config,
                family,
                peer,
                &parts.headers,
                &bytes,
                started,
            )
            .await
        }
        Err(f) => body_failure(family, template, f),
    }
}

/// Decodes an init, runs it, and answers in the family's shape.
async fn handle<P: Ports>(
    service: &SessionService<P>,
    config: &ApiConfig,
    family: Family,
    peer: IpAddr,
    headers: &HeaderMap,
    body: &[u8],
    started: Instant,
) -> Response<Body> {
    let remote_ip = if service.config().limits.init_per_ip.is_off() {
        None
    } else {
        // Every X-Forwarded-For line, in order: a proxy that appends its own line
        // leaves the client's (forgeable) line first. `Forwarded` (RFC 7239) is not
        // read; a proxy in front must send X-Forwarded-For (README, Abuse limits).
        let chain = header_list(headers, &X_FORWARDED_FOR);
        rate_limited_ip(
            peer,
            chain.as_deref(),
            &config.trusted_proxies,
            &config.rate_limit_exempt,
        )
    };
    let req = InitRequest {
        family,
        idempotency_key: header(headers, &X_IDEMPOTENCY_KEY),
        client_id: header(headers, &X_CLIENT_ID),
        authorization: header(headers, &header::AUTHORIZATION),
        remote_ip,
        body: parse_init_body(body),
        declared_json: declares_json(headers),
    };
    match service.init(req).await {
        Ok(out) => success(family, &out, started),
        Err(e) => failure(family, &e),
    }
}

fn success(family: Family, out: &InitOutcome, started: Instant) -> Response<Body> {
    metrics::session_created(family);
    let key = base64_encode(&out.server_public_key.0);
    let proof = out.proof.as_ref();
    let signature = proof.and_then(|p| p.signature.as_ref());
    let mut r = json(
        StatusCode::OK,
        &InitResponse {
            session_id: out.session_id.as_str(),
            server_public_key: &key,
            enc_alg: out.enc_alg,
            expires_in_sec: out.expires_in_sec,
            protocol: out.echo_protocol.then(|| out.protocol.number()),
            // Both versions run the same primitives; the version names the construction.
            suite: out.echo_protocol.then_some(domain::v2::SUITE),
            confirm: proof.map(|p| base64_encode(&p.confirm)),
            signature: signature.map(|(_, sig)| base64_encode(sig)),
            signing_key_id: signature.map(|(id, _)| id.as_str()),
        },
    );
    let h = r.headers_mut();
    if family == Family::V1Paths
        && let Ok(v) = HeaderValue::from_str(out.session_id.as_str())
    {
        h.insert(X_KID, v);
    }
    h.insert(SERVER_TIMING, server_timing(out.timings.entries(), started));
    r
}

fn failure(family: Family, e: &InitError) -> Response<Body> {
    let route = match family {
        Family::Unversioned => "/session/init",
        Family::V1Paths => "/v1/session/init",
    };
    let status = match (family, e) {
        (_, InitError::Crypto) => StatusCode::INTERNAL_SERVER_ERROR,
        (_, InitError::Store(_) | InitError::Quota(_)) => StatusCode::SERVICE_UNAVAILABLE,
        (_, InitError::RateLimited { .. } | InitError::TooManySessions) => {
            StatusCode::TOO_MANY_REQUESTS
        }
        (_, InitError::NotDeclaredJson) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        (_, InitError::NonceStore(NonceError::Fenced { .. })) => StatusCode::SERVICE_UNAVAILABLE,
        (Family::V1Paths, InitError::Replay) => StatusCode::CONFLICT,
        (Family::V1Paths, InitError::NonceStore(_)) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    if status.is_server_error() {
        error!(route, status = status.as_u16(), reason = %e, "init failed");
    } else {
        info!(route, status = status.as_u16(), reason = %e, "rejected");
    }
    metrics::rejection(route, e.reason());
    if *e == InitError::UnsupportedProtocol {
        // Not a secret: a client must learn what to ask for instead.
        return json(
            status,
            &Unsupported {
                error: match family {
                    Family::V1Paths => "Bad Request",
                    Family::Unversioned => "UNSUPPORTED_PROTOCOL",
                },
                message: "unsupported protocol version",
                supported: Protocol::numbers(),
            },
        );
    }
    let mut r = match family {
        Family::V1Paths => identity_error(status, v1_message(e)),
        Family::Unversioned => code_error(
            status,
            match (status, e) {
                (StatusCode::SERVICE_UNAVAILABLE, _) => "SERVICE_UNAVAILABLE",
                (StatusCode::INTERNAL_SERVER_ERROR, _) => "INTERNAL_ERROR",
                (_, InitError::TooManySessions) => "TOO_MANY_SESSIONS",
                (StatusCode::TOO_MANY_REQUESTS, _) => "RATE_LIMITED",
                _ => "CRYPTO_ERROR",
            },
        ),
    };
    match e {
        InitError::RateLimited { retry_after_ms, .. }
        | InitError::NonceStore(NonceError::Fenced { retry_after_ms, .. }) => {
            super::exchange::set_retry_after(&mut r, *retry_after_ms);
        }
        _ => {}
    }
    r
}

/// Short reasons for `/v1` bodies. Like the identity service, they name the failed
/// check class but never which cryptographic step failed.
fn v1_message(e: &InitError) -> &'static str {
    match e {
        InitError::Header(_) => "missing or malformed header",
        InitError::OutsideWindow => "timestamp outside the allowed window",
        InitError::NotDeclaredJson => "Content-Type must be application/json",
        InitError::Body(_) => "invalid request body",
        InitError::PublicKey(_) => "invalid clientPublicKey",
        InitError::Ttl => "invalid ttlSec",
        InitError::UnsupportedProtocol => "unsupported protocol version",
        InitError::Replay => "replayed request",
        InitError::NonceStore(NonceError::Full) => "replay protection at capacity",
        InitError::NonceStore(NonceError::Unavailable(_)) => "replay protection unavailable",
        InitError::NonceStore(NonceError::Fenced { .. }) => {
            "replay protection recovering; send a new request"
        }
        InitError::Crypto => "internal error",
        InitError::Store(_) => "session store unavailable",
        InitError::RateLimited { .. } => "too many requests, retry later",
        InitError::TooManySessions => "too many live sessions for this client id",
        InitError::Quota(_) => "rate limiting unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::test_support::{App, body_json};

    #[tokio::test]
    async fn a_valid_init_answers_the_session_and_the_server_key() {
        let app = App::new();
        let (status, resp) = app.init(Family::Unversioned, "1").await;
        assert_eq!(status, StatusCode::OK);
        let v = body_json(resp).await;
        assert!(v["sessionId"].as_str().unwrap().starts_with("S-"));
        assert_eq!(v["encAlg"], "A256GCM");
        assert_eq!(
            base64_decode(v["serverPublicKey"].as_str().unwrap())
                .unwrap()
                .len(),
            65
        );
    }

    #[tokio::test]
    async fn a_replayed_init_is_refused_in_each_familys_shape() {
        let app = App::new();
        assert_eq!(app.init(Family::Unversioned, "7").await.0, StatusCode::OK);
        let (status, resp) = app.init(Family::Unversioned, "7").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body_json(resp).await["error"], "CRYPTO_ERROR");
        assert_eq!(app.init(Family::V1Paths, "8").await.0, StatusCode::OK);
        let (status, resp) = app.init(Family::V1Paths, "8").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body_json(resp).await["message"], "replayed request");
    }

    #[test]
    fn init_bodies_parse_or_say_why_not() {
        assert_eq!(parse_init_body(b"[]"), Err("body is not a JSON object"));
        assert_eq!(
            parse_init_body(br#"{"clientPublicKey":"!!"}"#),
            Err("clientPublicKey is not base64")
        );
        let protocol = |text: &str| {
            parse_init_body(format!(r#"{{"clientPublicKey":"AAAA","protocol":{text}}}"#).as_bytes())
                .unwrap()
                .protocol
        };
        for (text, want) in [
            ("2", RequestedProtocol::Number(2)),
            ("2.0", RequestedProtocol::Number(2)),
            ("2e0", RequestedProtocol::Number(2)),
            ("1.0", RequestedProtocol::Number(1)),
            ("3", RequestedProtocol::Number(3)),
            ("2.5", RequestedProtocol::Invalid),
            ("-1", RequestedProtocol::Invalid),
            ("-0.0", RequestedProtocol::Invalid),
            ("1e300", RequestedProtocol::Invalid),
            ("\"2\"", RequestedProtocol::Invalid),
            ("null", RequestedProtocol::Invalid),
        ] {
            assert_eq!(protocol(text), want, "protocol {text}");
        }
        let ok = parse_init_body(br#"{"clientPublicKey":"AAAA","ttlSec":60}"#).unwrap();
        assert_eq!(ok.ttl, RequestedTtl::Number(60.0));
        let null = parse_init_body(br#"{"clientPublicKey":"AAAA","ttlSec":null}"#).unwrap();
        assert_eq!(null.ttl, RequestedTtl::NotANumber);
    }
}
