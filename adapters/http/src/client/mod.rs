//! The HTTP client side: one keep-alive HTTP/1.1 connection per [`Connection`], and a
//! [`ProtocolClient`] that runs init and purchase flows with the domain's client code.
//! Used by `session-crypto client`, `session-crypto bench` and the end-to-end tests.

mod connection;
mod protocol;

use std::time::{SystemTime, UNIX_EPOCH};

use domain::client::ClientError;
use hyper::StatusCode;
use ports::CryptoProvider;

pub use connection::{Connection, Endpoint, HttpResponse};
pub use protocol::{InitRoute, ProtocolClient, REVOKE_PLAINTEXT, StepTimings};

/// Client-side failures of a flow.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The URL is not `http://host[:port]`.
    #[error("unsupported URL {0:?}: expected http://host[:port]")]
    Url(String),
    /// Connecting or talking HTTP failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered with a non-200 status.
    #[error("{path} answered {status}: {body}")]
    Status {
        /// Path requested.
        path: &'static str,
        /// Status received.
        status: StatusCode,
        /// Body, as text.
        body: String,
    },
    /// The answer did not follow the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl From<ClientError> for FlowError {
    fn from(e: ClientError) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// Milliseconds since the epoch (client clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh `<now>.<uuid v4>` for requests that carry no envelope (init).
pub fn fresh_idempotency_key(crypto: CryptoProvider) -> Result<String, FlowError> {
    let mut r = [0u8; 16];
    crypto
        .random
        .fill(&mut r)
        .map_err(|_| FlowError::Protocol("rng failure".into()))?;
    Ok(format!("{}.{}", now_ms(), domain::encoding::uuid_v4(r)))
}
