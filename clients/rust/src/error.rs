//! [`Error`]: what went wrong in a [`crate::Session`] call, by who can fix it, and how
//! the protocol client's failures map to it.

use domain::client::ClientError;

use crate::FlowError;

/// What went wrong, by who can fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not `http(s)://host[:port][/prefix]`, or an `https` URL
    /// came without TLS settings ([`crate::Builder::tls`]).
    #[error("invalid server URL: {0}")]
    Url(String),
    /// The TLS settings could not be built (see [`crate::tls::client_config`]).
    #[error("TLS settings: {0}")]
    Tls(String),
    /// A mistake in the call or the options (a method that is not an HTTP token, `HEAD`,
    /// a header that is not valid, an `Idempotency-Key` out of its grammar, a body that
    /// does not serialize). Nothing was sent; fix the code.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Connecting failed or took longer than [`crate::Builder::connect_timeout`]:
    /// nothing was sent, so sending again is safe.
    #[error("connect: {0}")]
    Connect(String),
    /// The call took longer than its time limit ([`crate::Builder::timeout`],
    /// [`crate::RequestBuilder::timeout`]) and was abandoned: the request may have run.
    /// The session stays usable.
    #[error("no answer within {} ms (the request may have run)", .0.as_millis())]
    Timeout(std::time::Duration),
    /// Talking HTTP failed after connecting (nothing is known about the request's fate).
    #[error("network: {0}")]
    Network(String),
    /// The session was revoked ([`crate::Session::revoke`]): connect again.
    #[error("the session was revoked; connect again for a new one")]
    Revoked,
    /// The answer's body is not what the caller asked for (not UTF-8, not JSON of the
    /// expected shape). The request ran; only the reading failed.
    #[error("body: {0}")]
    Body(String),
    /// The server refused the request: its status, its error code (`CRYPTO_ERROR`,
    /// `SESSION_EXPIRED`, `RATE_LIMITED`, …) and its body. `CRYPTO_ERROR` covers a
    /// replay and a request outside the server's time window too: the server does not
    /// say which check failed.
    #[error("server refused with {status} {code}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The `error` field of the body (empty if there is none).
        code: String,
        /// The body, as text.
        body: String,
        /// How long the server asked to wait before a new request (`Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
    /// The server refused the request (400 `CRYPTO_ERROR`) while this machine's clock
    /// was `skew_ms` from the server's, by the answer's `Date` (not authenticated): its
    /// timestamp window (±300 s by default) probably refused it. An init or an
    /// idempotent call was sent once more with the clock corrected from that `Date`;
    /// any other call was not (it may have run: the refusal is not authenticated).
    #[error("refused with the clocks {} s apart (server - client)", .skew_ms / 1000)]
    ClockSkew {
        /// The server's clock minus this machine's (ms).
        skew_ms: i64,
        /// HTTP status.
        status: u16,
        /// The error code.
        code: String,
    },
    /// The init exchange did not verify: key confirmation failed (the init request or
    /// response was changed on the way), or the server's signature is missing or not
    /// made by a pinned key. Nothing was sent under the session.
    #[error("session set-up refused: {0}")]
    Handshake(ClientError),
    /// A sealed response did not verify (forged, replayed, answering another request,
    /// or stamped outside the window). Its content was discarded.
    #[error("response refused: {0}")]
    Response(ClientError),
    /// The server's answer broke the protocol in some other way.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server refused the request and proved it (a sealed refusal, v2): the request
    /// did not run, and a new one may be sent. A refusal that says the request may
    /// have run (a replayed copy, a gateway's lost answer) is [`Error::OutcomeUnknown`].
    #[error("server refused with {status} {code} (sealed: the request did not run)")]
    RefusedSealed {
        /// HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The server's clock when it refused (ms since the epoch), authenticated.
        server_time_ms: u64,
    },
    /// The request may or may not have run. The server refused it with this status,
    /// code and body — `SESSION_EXPIRED`, after which the library set up a new
    /// session — but such a refusal is not authenticated (anyone on the path can
    /// forge it after forwarding the request), and the method is not one the library
    /// sends twice by itself (see [`crate::Retry`]). Send it again only if running it twice
    /// is harmless.
    #[error("outcome unknown: the server answered {status} {code}, which is not authenticated")]
    OutcomeUnknown {
        /// HTTP status.
        status: u16,
        /// The `error` field of the body.
        code: String,
        /// The body, as text.
        body: String,
    },
}

impl Error {
    /// Whether the server said the session is gone (after the one automatic re-init).
    pub fn is_session_expired(&self) -> bool {
        matches!(self, Self::Refused { status: 401, code, .. } if code == "SESSION_EXPIRED")
    }
    /// Whether the call ran out of time ([`Error::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
    /// Whether no connection could be made ([`Error::Connect`]): nothing was sent.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
    /// The server's `Retry-After`, when it refused with one (a 503 while replay
    /// protection recovers, a 429).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
    /// The HTTP status of a refusal, if the server answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. }
            | Self::ClockSkew { status, .. }
            | Self::RefusedSealed { status, .. }
            | Self::OutcomeUnknown { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<FlowError> for Error {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Url(u) => Self::Url(u),
            FlowError::Connect(t) => Self::Connect(t),
            FlowError::Transport(t) => Self::Network(t),
            FlowError::Tls(t) => Self::Tls(t),
            FlowError::Status {
                status,
                body,
                retry_after,
                ..
            } => Self::Refused {
                retry_after: retry_after.map(std::time::Duration::from_secs),
                status: status.as_u16(),
                code: serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                body,
            },
            FlowError::Protocol(p) => Self::Protocol(p),
            FlowError::Refused { refusal, .. } if refusal.executed == Some(false) => {
                Self::RefusedSealed {
                    status: refusal.status,
                    code: refusal.code,
                    server_time_ms: refusal.server_time_ms,
                }
            }
            FlowError::Refused { refusal, .. } => Self::OutcomeUnknown {
                body: format!(r#"{{"error":"{}","outcome":"unknown"}}"#, refusal.code),
                status: refusal.status,
                code: refusal.code,
            },
            FlowError::Client(
                c @ (ClientError::Confirmation
                | ClientError::Signature
                | ClientError::ServerKey(_)
                | ClientError::SessionId
                | ClientError::ClientId(_)),
            ) => Self::Handshake(c),
            FlowError::Client(c) => Self::Response(c),
        }
    }
}
