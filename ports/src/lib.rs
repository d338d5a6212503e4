//! # ports — the inner ring's view of the world
//!
//! Traits the domain needs and the plain value types they exchange: crypto capabilities
//! grouped in a [`CryptoProvider`] (the rustls shape: a struct of small capability
//! traits), the session and nonce stores, and the clock.
//!
//! May depend on: std, `zeroize`, `thiserror`. Must not depend on anything that does
//! I/O, on tokio, on crypto crates, diesel, redis or hyper.

pub mod bundle;
pub mod crypto;
pub mod limits;
pub mod session;
pub mod store;

pub use bundle::{Ports, Stores, claim_then_cache};
pub use crypto::{
    AeadKey, Aes256Gcm, CryptoError, CryptoProvider, Digests, Ecdsa, EphemeralKeyPair, HkdfSha256,
    KeyAgreement, P256PublicKey, SecureRandom, SessionKey, SharedSecret, SigningKey,
};
pub use limits::{Quotas, RateDecision, RateLimit, Reservation, Usage};
pub use store::{
    AtRest, Claim, Clock, NoCache, NonceClaim, NonceError, NonceStore, Protocol, SessionCache,
    SessionKeys, SessionKind, SessionRecord, SessionStore, StoreError, SystemClock, WrappedKeys,
};
