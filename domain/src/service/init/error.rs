//! Why an init failed: [`InitError`], one variant per refusal, with its stable reason
//! label for metrics and logs.

use ports::{NonceError, StoreError};

use crate::headers::HeaderError;
use crate::p256::PublicKeyError;
use crate::service::ClaimError;

/// Why an init failed. The driving adapter maps each to the family's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// Missing or malformed header.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// Timestamp outside the window.
    #[error("timestamp outside the replay window")]
    OutsideWindow,
    /// A `/v1` init whose body is not declared as JSON.
    #[error("the body is not declared as JSON")]
    NotDeclaredJson,
    /// Body unreadable (not JSON, wrong shape, missing key, bad base64).
    #[error("bad init body: {0}")]
    Body(&'static str),
    /// Public key refused.
    #[error(transparent)]
    PublicKey(#[from] PublicKeyError),
    /// `ttlSec` present but not an integer ≥ 0.
    #[error("ttlSec is not an integer >= 0")]
    Ttl,
    /// `protocol` names a version this server does not speak.
    #[error("unsupported protocol version")]
    UnsupportedProtocol,
    /// Nonce already used by this client.
    #[error("replayed nonce")]
    Replay,
    /// Nonce store could not decide (fail closed).
    #[error(transparent)]
    NonceStore(NonceError),
    /// Backend failure.
    #[error("crypto backend failure")]
    Crypto,
    /// Session store failure.
    #[error(transparent)]
    Store(StoreError),
    /// Over the per-IP or per-client init rate limit.
    #[error("{scope} init rate limit exceeded")]
    RateLimited {
        /// `"per-IP"` or `"per-client"`.
        scope: &'static str,
        /// When a retry can succeed.
        retry_after_ms: u64,
    },
    /// The client id already holds the maximum number of live sessions.
    #[error("client id holds the maximum number of live sessions")]
    TooManySessions,
    /// The limit state could not be read (fail closed).
    #[error("limit state unavailable: {0}")]
    Quota(StoreError),
}

impl InitError {
    /// A short, stable label of the failure class, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Header(_) => "bad_header",
            Self::OutsideWindow => "outside_window",
            Self::NotDeclaredJson => "bad_content_type",
            Self::Body(_) | Self::Ttl => "bad_body",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::PublicKey(_) => "bad_public_key",
            Self::Replay => "replay",
            Self::NonceStore(NonceError::Full) => "nonce_store_full",
            Self::NonceStore(NonceError::Unavailable(_)) => "nonce_store_unavailable",
            Self::NonceStore(NonceError::Fenced { .. }) => "nonce_store_fenced",
            Self::Crypto => "crypto_failure",
            Self::Store(_) => "store_unavailable",
            Self::RateLimited { .. } => "rate_limited",
            Self::TooManySessions => "too_many_sessions",
            Self::Quota(_) => "limits_unavailable",
        }
    }
}

impl From<ClaimError> for InitError {
    fn from(e: ClaimError) -> Self {
        match e {
            ClaimError::Replay => Self::Replay,
            ClaimError::Store(e) => Self::NonceStore(e),
        }
    }
}
