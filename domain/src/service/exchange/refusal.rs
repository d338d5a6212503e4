//! Sealed refusals (protocol v2, docs/PROTOCOL.md §9.1): a refusal the client can
//! authenticate. When the server still holds the session's keys as it refuses a
//! request, it can seal the refusal under the response key, bound to that request
//! (method, target, content type, nonce) and to the status, with its own time in the
//! refusal's `X-Idempotency-Key`. The client then knows the refusal is the server's,
//! whether the request can have run, and the server's clock.

use ports::{Clock, Ports, Protocol};

use super::ExchangeError;
use crate::encoding::uuid_v4;
use crate::envelope::seal_envelope;
use crate::headers::{
    ClientId, IdempotencyKey, RESPONSE_NONCE_PREFIX, SessionId, kid_session_part,
};
use crate::service::SessionService;
use crate::v2::{self, AadFields, RequestLine};

/// What a refusal says about the request it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Refused before anything acted on it: it did not run (the client may send it
    /// again as a new request).
    NotExecuted,
    /// It may have run: a copy of it was accepted before (a replay), or it was
    /// forwarded and its answer was lost (a gateway's 502/504).
    Unknown,
}

impl Outcome {
    /// The word of the sealed plaintext.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotExecuted => "not-executed",
            Self::Unknown => "unknown",
        }
    }

    /// What an exchange refusal says: a replay means a copy was accepted before; every
    /// other refusal comes before the handler runs.
    pub fn of(error: &ExchangeError) -> Self {
        match error {
            ExchangeError::Replay => Self::Unknown,
            _ => Self::NotExecuted,
        }
    }
}

/// The request a refusal answers, as its headers and line came.
#[derive(Debug, Clone, Copy)]
pub struct RefusedRequest<'a> {
    /// `X-Kid`.
    pub kid: Option<&'a str>,
    /// `X-Idempotency-Key`.
    pub idempotency_key: Option<&'a str>,
    /// `X-ClientId`.
    pub client_id: Option<&'a str>,
    /// Method, target and `X-Inner-Content-Type`.
    pub line: RequestLine<'a>,
}

/// A sealed refusal: the headers it travels with and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRefusal {
    /// `X-Kid`: the request's.
    pub kid: String,
    /// `X-Idempotency-Key`: `<server now ms>.rsp_<uuid>`.
    pub idempotency_key: String,
    /// The envelope of `{"error": <code>, "outcome": <outcome>}`.
    pub envelope: Vec<u8>,
}

impl<P: Ports> SessionService<P> {
    /// Seals the refusal `code` with `status` for `request`, when the server can: the
    /// headers parse (the window is not checked: a refusal for a request outside it is
    /// what a client with a wrong clock needs), the session is live, speaks v2 and
    /// belongs to the requesting client. `None` otherwise — the caller then answers
    /// unsealed, as for a v1 session.
    pub async fn seal_refusal(
        &self,
        request: RefusedRequest<'_>,
        status: u16,
        code: &str,
        outcome: Outcome,
    ) -> Option<SealedRefusal> {
        let kid = request.kid?;
        let key = IdempotencyKey::parse_request(request.idempotency_key?).ok()?;
        let client = ClientId::parse(request.client_id?).ok()?;
        let session_id = SessionId::parse(kid_session_part(kid).ok()?)?;
        let now = self.ports.clock().now_ms();
        let record = self
            .load_live_session(session_id.as_str(), now)
            .await
            .ok()?;
        if record.client_id != client.as_str() || record.keys.protocol() != Protocol::V2 {
            return None;
        }
        let mut random = [0u8; 16];
        self.crypto.random.fill(&mut random).ok()?;
        let nonce = format!("{RESPONSE_NONCE_PREFIX}{}", uuid_v4(random));
        let ts = now.to_string();
        let aad = v2::refusal_aad(
            &AadFields {
                line: request.line,
                kid,
                client_id: client.as_str(),
                timestamp: &ts,
                nonce: &nonce,
            },
            key.nonce(),
            status,
        )
        .ok()?;
        // The codes are fixed upper-case words (docs/PROTOCOL.md §9): nothing to escape.
        if !code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            return None;
        }
        let plaintext = format!(r#"{{"error":"{code}","outcome":"{}"}}"#, outcome.as_str());
        let envelope = seal_envelope(
            self.crypto.aead,
            self.crypto.random,
            record.keys.response(),
            &aad,
            plaintext.into_bytes(),
        )
        .ok()?;
        Some(SealedRefusal {
            kid: kid.to_owned(),
            idempotency_key: format!("{ts}.{nonce}"),
            envelope,
        })
    }
}
