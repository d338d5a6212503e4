//! [`ExchangeError`]: every way an authenticated exchange can fail.

use ports::{NonceError, StoreError};

use super::PayloadError;
use crate::envelope::EnvelopeError;
use crate::headers::HeaderError;
use crate::service::ClaimError;

/// Why an authenticated exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// Missing or malformed header.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// Timestamp outside the window.
    #[error("timestamp outside the replay window")]
    OutsideWindow,
    /// The id after `session:` is not `S-` + 32 hex (checked before any lookup).
    #[error("malformed session id")]
    SessionMalformed,
    /// No such session.
    #[error("unknown session")]
    SessionUnknown,
    /// Session past its expiry (deleted as a side effect).
    #[error("expired session")]
    SessionExpired,
    /// `X-ClientId` is not the session's owner.
    #[error("client id does not own the session")]
    ClientMismatch,
    /// Envelope too short or failed authentication.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// Nonce already used by this client.
    #[error("replayed nonce")]
    Replay,
    /// Nonce store could not decide (fail closed).
    #[error(transparent)]
    NonceStore(NonceError),
    /// The plaintext does not fit the route.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// Backend failure.
    #[error("crypto backend failure")]
    Crypto,
    /// Session store failure.
    #[error(transparent)]
    Store(StoreError),
    /// Unused for longer than the idle timeout (ended as a side effect).
    #[error("session idle for too long")]
    SessionIdle,
    /// The session key reached its encryption cap (ended as a side effect).
    #[error("session key reached its encryption cap")]
    KeyExhausted,
    /// The per-session counters could not be read (fail closed).
    #[error("limit state unavailable: {0}")]
    Quota(StoreError),
    /// The route does not take sessions of this protocol version (a gateway route
    /// without `allow_v1`, for a v1 session).
    #[error("the route does not accept this session's protocol version")]
    ProtocolNotAllowed,
}

impl ExchangeError {
    /// A short, stable label of the failure class, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Header(_) => "bad_header",
            Self::OutsideWindow => "outside_window",
            Self::SessionMalformed | Self::SessionUnknown => "unknown_session",
            Self::SessionExpired => "expired_session",
            Self::ClientMismatch => "client_mismatch",
            Self::Envelope(EnvelopeError::TooShort) => "bad_envelope",
            Self::Envelope(EnvelopeError::Authentication) => "decrypt_failed",
            Self::Replay => "replay",
            Self::NonceStore(NonceError::Full) => "nonce_store_full",
            Self::NonceStore(NonceError::Unavailable(_)) => "nonce_store_unavailable",
            Self::NonceStore(NonceError::Fenced { .. }) => "nonce_store_fenced",
            Self::Payload(_) => "bad_payload",
            Self::Crypto => "crypto_failure",
            Self::Store(_) => "store_unavailable",
            Self::SessionIdle => "idle_session",
            Self::KeyExhausted => "key_exhausted",
            Self::Quota(_) => "limits_unavailable",
            Self::ProtocolNotAllowed => "protocol_not_allowed",
        }
    }

    /// Whether the session is gone or unusable, so the client must start a new one
    /// (the wire's `SESSION_EXPIRED`).
    pub fn is_session_state(&self) -> bool {
        matches!(
            self,
            Self::SessionMalformed
                | Self::SessionUnknown
                | Self::SessionExpired
                | Self::SessionIdle
                | Self::KeyExhausted
        )
    }
}

impl From<ClaimError> for ExchangeError {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::Replay => Self::Replay,
            ClaimError::Store(e) => Self::NonceStore(e),
        }
    }
}
