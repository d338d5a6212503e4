//! [`ProtocolClient::fetch`]: a request to any encrypted route, gateway routes
//! included, and its answer of any status.

use domain::headers::name;
use std::time::Instant;

use domain::RequestLine;
use domain::client::{ClientSession, ResponseHead};
use domain::encoding::base64_encode;
use hyper::{Method, StatusCode};

use super::{ProtocolClient, StepTimings};
use crate::FlowError;

/// A clock further than this from the server's (by an authenticated time) is corrected.
pub(crate) const SKEW_FIX_MS: u64 = 30_000;
/// The largest correction taken (a day): beyond, the error says why.
pub(crate) const MAX_SKEW_FIX_MS: u64 = 86_400_000;

impl ProtocolClient {
    /// A request to any encrypted route, gateway routes included (docs/PROTOCOL.md
    /// §20): the body sealed (a `GET`'s envelope in `X-Envelope`), its content type in
    /// `X-Inner-Content-Type` (bound by v2). A sealed answer is opened whatever its
    /// status — the upstream's, from `X-Inner-Status` when the status cannot carry a
    /// body — and an unsealed one (the gateway's own errors) is [`FlowError::Status`].
    ///
    /// # Errors
    /// [`FlowError`].
    pub async fn fetch(
        &mut self,
        session: &ClientSession,
        request: Outgoing<'_>,
    ) -> Result<(Fetched, StepTimings), FlowError> {
        let Outgoing {
            method,
            path,
            content_type,
            body,
            call_key,
            headers: extra,
        } = request;
        let mut timings = StepTimings::default();
        let t = Instant::now();
        let line = RequestLine {
            method,
            target: path,
            content_type: content_type.unwrap_or_default(),
        };
        let mut sealed = session.seal_call(self.now_ms(), line, call_key, body)?;
        timings.crypto.push(("aes-gcm-encrypt", t.elapsed()));
        let envelope = std::mem::take(&mut sealed.envelope);
        let in_header = (method == "GET").then(|| base64_encode(&envelope));
        // The application's headers first; the protocol's own are the library's.
        let mut headers: Vec<(&str, &str)> = extra
            .iter()
            .copied()
            .filter(|(n, _)| !is_protocol_header(n))
            .collect();
        headers.extend([
            ("content-type", "application/octet-stream"),
            (name::KID, session.kid()),
            (name::IDEMPOTENCY_KEY, sealed.idempotency_key.as_str()),
            (name::CLIENT_ID, session.client_id()),
        ]);
        if let Some(ct) = content_type {
            headers.push((name::INNER_CONTENT_TYPE, ct));
        }
        if let Some(text) = &in_header {
            headers.push((name::ENVELOPE, text));
        }
        if let Some(key) = call_key {
            headers.push((name::CALL_KEY, key));
        }
        if session.protocol() == ports::Protocol::V2 {
            // Refusals come sealed: authenticated, and saying whether the request ran.
            headers.push((name::SEALED_REFUSALS, "1"));
        }
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| FlowError::Protocol(format!("invalid method {method:?}")))?;
        let t = Instant::now();
        let body = if in_header.is_some() {
            Vec::new()
        } else {
            envelope
        };
        let resp = self.conn.send(method, path, &headers, body).await?;
        timings.http = t.elapsed();
        timings.server_timing = resp.header("server-timing").map(str::to_owned);
        if resp.header(name::SEALED_REFUSAL).is_some()
            && let Some(key) = resp.header(name::IDEMPOTENCY_KEY)
            && session.protocol() == ports::Protocol::V2
        {
            if resp.header(name::KID) != Some(session.kid()) {
                return Err(FlowError::Protocol(
                    "refusal X-Kid differs from ours".into(),
                ));
            }
            let refusal =
                session.open_refusal(&sealed, resp.status.as_u16(), key, resp.body.to_vec())?;
            return Err(FlowError::Refused {
                path: path.to_owned(),
                refusal,
            });
        }
        let Some(key) = resp.header(name::IDEMPOTENCY_KEY) else {
            return Err(FlowError::Status {
                path: path.to_owned(),
                status: resp.status,
                body: String::from_utf8_lossy(&resp.body).into(),
                retry_after: resp
                    .header("retry-after")
                    .and_then(|v| v.trim().parse().ok()),
                date_skew_ms: crate::http_date::skew_ms(resp.header("date")),
            });
        };
        if resp.header(name::KID) != Some(session.kid()) {
            return Err(FlowError::Protocol(
                "response X-Kid differs from ours".into(),
            ));
        }
        let status = match resp.header(name::INNER_STATUS) {
            None => resp.status,
            Some(text) => text
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(|_| resp.status == StatusCode::OK)
                .ok_or_else(|| FlowError::Protocol("malformed X-Inner-Status".into()))?,
        };
        let content_type = resp.header(name::INNER_CONTENT_TYPE).unwrap_or_default();
        let t = Instant::now();
        let head = ResponseHead {
            status: status.as_u16(),
            idempotency_key: key,
            content_type,
        };
        let plain = session.open_response(
            &sealed,
            head,
            resp.body.to_vec(),
            self.now_ms(),
            &self.window,
        )?;
        // A v2 answer's timestamp is the server's clock, authenticated by its AAD.
        if session.protocol() == ports::Protocol::V2
            && let Some(server_ms) = key.split_once('.').and_then(|(t, _)| t.parse::<u64>().ok())
        {
            self.learn_time(server_ms);
        }
        timings.crypto.push(("aes-gcm-decrypt", t.elapsed()));
        let content_type = content_type.to_owned();
        let mut headers = resp.headers;
        headers.remove(hyper::header::CONTENT_TYPE);
        if let Ok(v) = hyper::header::HeaderValue::from_str(&content_type)
            && !content_type.is_empty()
        {
            headers.insert(hyper::header::CONTENT_TYPE, v);
        }
        Ok((
            Fetched {
                status,
                content_type,
                body: plain.to_vec(),
                headers,
            },
            timings,
        ))
    }
}

/// A request to an encrypted route.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// Path and optional query.
    pub path: &'a str,
    /// The plaintext's content type (`X-Inner-Content-Type`); `None` sends none (a
    /// gateway then tells its upstream `application/json`).
    pub content_type: Option<&'a str>,
    /// The plaintext.
    pub body: &'a [u8],
    /// `Idempotency-Key` (quoted, e.g. `"8e03978e-…"`): the call's key, the same on
    /// every re-send of the call; a v2 session binds it, and a gateway forwards it.
    pub call_key: Option<&'a str>,
    /// The application's own request headers (`X-Request-Id`, …); the protocol's own
    /// ones ([`is_protocol_header`]) are left out.
    pub headers: &'a [(&'a str, &'a str)],
}

/// Whether `name` is one of the headers the protocol sets itself (docs/PROTOCOL.md):
/// an application's copy is never sent.
pub fn is_protocol_header(name: &str) -> bool {
    [
        "content-type",
        "host",
        "content-length",
        "transfer-encoding",
        name::KID,
        name::IDEMPOTENCY_KEY,
        name::CLIENT_ID,
        name::INNER_CONTENT_TYPE,
        name::ENVELOPE,
        name::CALL_KEY,
        name::SEALED_REFUSALS,
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

/// An opened answer.
#[derive(Debug)]
pub struct Fetched {
    /// Its status (the upstream's, on a gateway route).
    pub status: StatusCode,
    /// Its `X-Inner-Content-Type` (empty when none).
    pub content_type: String,
    /// The plaintext.
    pub body: Vec<u8>,
    /// The answer's headers, with `Content-Type` the plaintext's (from
    /// `X-Inner-Content-Type`; none when it has none).
    pub headers: hyper::HeaderMap,
}
