//! # session-crypto-client — call a session-crypto server from Rust
//!
//! ```no_run
//! # async fn run() -> Result<(), session_crypto_client::Error> {
//! use session_crypto_client::Session;
//!
//! let session = Session::connect("http://127.0.0.1:3000", "MY_APP").await?;
//! let answer = session
//!     .post("/transaction/purchase")
//!     .body(br#"{"schemeCode":"AEF","amount":10}"#.to_vec())
//!     .send()
//!     .await?;
//! println!("{}", answer.text()?);
//! session.revoke().await?;
//! # Ok(())
//! # }
//! ```
//!
//! [`Session`] is the library: protocol v2 by default (v1 on request), key
//! confirmation checked before first use, an optional pinned server key, a new session
//! once when the server says `SESSION_EXPIRED`, typed [`Error`]s; cheap to clone and
//! usable from many tasks, with calls built as with reqwest ([`RequestBuilder`]). Below it,
//! [`ProtocolClient`] runs single protocol steps over one [`Connection`], timed step by
//! step — what `session-crypto client`, `session-crypto bench` and the end-to-end tests
//! use. See the crate's README and `docs/PROTOCOL.md`.

mod builder;
mod connection;
mod error;
mod http_date;
mod protocol;
mod request;
mod response;
mod session;
mod target;
pub mod tls;

use std::time::{SystemTime, UNIX_EPOCH};

use domain::client::ClientError;
use ports::CryptoProvider;

pub use builder::{Builder, Retry};
pub use connection::{Connection, Endpoint, HttpResponse};
pub use error::Error;
/// The HTTP types of [`Connection::send`] and [`Fetched`].
pub use hyper::{Method, StatusCode};
pub use ports::{P256PublicKey, Protocol};
pub use protocol::{
    Fetched, InitRoute, Outgoing, ProtocolClient, REVOKE_PLAINTEXT, StepTimings, is_protocol_header,
};
pub use request::RequestBuilder;
pub use response::Response;
pub use session::Session;

/// A server public key to pin, from `session-crypto keygen --signing`'s PEM or the
/// `publicKey` (base64) of `GET /.well-known/session-crypto`; `None` if the text holds
/// no valid P-256 key.
pub fn parse_server_key(text: &str) -> Option<P256PublicKey> {
    domain::signing_key::parse_public_key(text)
}

/// Every server public key in `text`, for pinning a set during a rotation: PEM blocks
/// (`keygen --signing` output, concatenated) and/or lines of base64 (`publicKey` of
/// the well-known document). `None` if a block or line is not a valid P-256 key, or
/// if there is none.
pub fn parse_server_keys(text: &str) -> Option<Vec<P256PublicKey>> {
    domain::signing_key::parse_public_keys(text)
}

/// Client-side failures of a flow.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The URL is not `http://host[:port]`.
    #[error("unsupported URL {0:?}: expected http(s)://host[:port][/prefix]")]
    Url(String),
    /// Connecting failed or took too long: nothing was sent.
    #[error("connect: {0}")]
    Connect(String),
    /// Talking HTTP failed after connecting (the request's fate is unknown).
    #[error("transport: {0}")]
    Transport(String),
    /// The TLS settings could not be built (a CA file that cannot be read or holds no
    /// certificate).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server answered with a non-200 status.
    #[error("{path} answered {status}: {body}")]
    Status {
        /// Path requested.
        path: String,
        /// Status received.
        status: StatusCode,
        /// Body, as text.
        body: String,
        /// `Retry-After` in seconds, when the server sent one.
        retry_after: Option<u64>,
        /// The answer's `Date` minus this machine's clock when it came (ms; not
        /// authenticated), when it had one.
        date_skew_ms: Option<i64>,
    },
    /// The answer did not follow the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The protocol's client rules refused the answer (a tampered init, a forged or
    /// misdirected response).
    #[error("protocol: {0}")]
    Client(ClientError),
    /// A sealed refusal (v2, docs/PROTOCOL.md §9.1): authenticated as the server's,
    /// for this very request.
    #[error("{path} refused (sealed): {} {}", .refusal.status, .refusal.code)]
    Refused {
        /// Path requested.
        path: String,
        /// What the server said.
        refusal: domain::client::Refusal,
    },
}

impl From<ClientError> for FlowError {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
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
