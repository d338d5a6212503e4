//! # domain — the protocol's rules, pure
//!
//! Session ids and TTL policy, the idempotency-key grammar, the replay policy, P-256
//! public-key validation, key derivation, AAD construction, the envelope layout,
//! purchase payload rules, and the use cases written generically over the ports.
//!
//! May depend on: `ports` (plus `thiserror` and `zeroize`). Must not depend on
//! tokio, crypto crates, diesel, redis, hyper or serde_json: wire JSON lives in the HTTP
//! adapter.

pub mod client;
pub mod encoding;
pub mod envelope;
pub mod headers;
pub mod keywrap;
pub mod limits;
pub mod p256;
pub mod policy;
pub mod purchase;
pub mod service;
pub mod signing_key;
pub mod signing_keys;
pub mod timing;
pub mod v2;

pub use envelope::{Aad, EnvelopeError, derive_session_key, open_envelope, seal_envelope};
pub use headers::{CallKey, ClientId, HeaderError, IdempotencyKey, SessionId};
pub use limits::AbuseLimits;
pub use policy::{PolicyError, ReplayPolicy, RequestedTtl, TtlPolicy, V1TtlPolicy};
pub use service::exchange::{
    Accepted, Answer, EncryptedRoute, ExchangeError, ExchangeOutcome, ExchangeRequest, Outcome,
    PayloadError, RefusedRequest, ResponseContext, RouteError, SealedRefusal,
};
pub use service::init::{InitBody, InitError, InitOutcome, InitRequest, RequestedProtocol};
pub use service::release::{KeyRelease, ReleaseError};
pub use service::revoke::RevokeError;
pub use service::{Family, ServiceConfig, SessionService};
pub use signing_keys::{KeyStatus, PublishedKey, SigningKeys};
pub use v2::{RequestLine, ServerIdentity, V2Proof};
