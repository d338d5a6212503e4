//! Session and nonce stores, and the clock.

use std::fmt;
use std::future::{Future, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::crypto::SessionKey;

/// How a session was created (identity labels, docs/PROTOCOL.md §6 / §14 V16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// No trusted upstream authentication.
    Anonymous,
    /// Created with an `Authorization` header while upstream auth is trusted.
    Authenticated,
}

impl SessionKind {
    /// The stored label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Authenticated => "authenticated",
        }
    }
}

/// The protocol version a session speaks (docs/PROTOCOL.md), fixed at its init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The reference protocol: one key for both directions, `|`-joined AAD.
    V1,
    /// Directional keys from a transcript-bound key schedule, length-prefixed AAD that
    /// binds method, path and (for a response) the request.
    V2,
}

impl Protocol {
    /// Every version this implementation speaks, oldest first.
    pub const ALL: [Self; 2] = [Self::V1, Self::V2];

    /// The numbers of [`Self::ALL`], as servers list them (`supported`, `protocols`).
    pub fn numbers() -> [u8; 2] {
        Self::ALL.map(Self::number)
    }

    /// The version number on the wire and in the stores.
    pub const fn number(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    /// The version with this number, if it is one this implementation speaks.
    pub fn from_number(n: u64) -> Option<Self> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }
}

/// A session's AES-256-GCM keys; the variant is the session's protocol version.
#[derive(Clone)]
pub enum SessionKeys {
    /// v1: the same key both ways.
    V1(SessionKey),
    /// v2: one key per direction.
    V2 {
        /// Client → server.
        request: SessionKey,
        /// Server → client.
        response: SessionKey,
    },
}

impl SessionKeys {
    /// The protocol version of the session.
    pub fn protocol(&self) -> Protocol {
        match self {
            Self::V1(_) => Protocol::V1,
            Self::V2 { .. } => Protocol::V2,
        }
    }
    /// The key requests are sealed under.
    pub fn request(&self) -> &SessionKey {
        match self {
            Self::V1(key) | Self::V2 { request: key, .. } => key,
        }
    }
    /// The key responses are sealed under.
    pub fn response(&self) -> &SessionKey {
        match self {
            Self::V1(key) | Self::V2 { response: key, .. } => key,
        }
    }
    /// Equality in constant time (same version and every key equal).
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.protocol() == other.protocol()
            && self.request().ct_eq(other.request())
            && self.response().ct_eq(other.response())
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKeys::{:?}([REDACTED])", self.protocol())
    }
}

/// A stored session. `Debug` redacts the keys and shortens the id.
#[derive(Clone)]
pub struct SessionRecord {
    /// `S-` + 32 lowercase hex digits.
    pub id: String,
    /// The AES-256-GCM keys, and with them the protocol version.
    pub keys: SessionKeys,
    /// Anonymous or authenticated.
    pub kind: SessionKind,
    /// The `X-ClientId` that created the session (owner).
    pub client_id: String,
    /// Creation time, epoch ms.
    pub created_at_ms: u64,
    /// Last instant (inclusive) at which the session is usable, epoch ms.
    pub expires_at_ms: u64,
}

impl SessionRecord {
    /// Usable while `now ≤ expires_at` (docs/PROTOCOL.md §6).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms > self.expires_at_ms
    }
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id.get(..10).unwrap_or("?"))
            .field("keys", &self.keys)
            .field("kind", &self.kind)
            .field("client_id", &self.client_id)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// A store failure. Adapters translate their own errors into this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backing service is unreachable, timed out or failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bounded store is at capacity.
    #[error("store full")]
    Full,
    /// A record with this id already exists.
    #[error("duplicate session id")]
    Duplicate,
    /// A cache refused a record of a revoked session.
    #[error("session revoked")]
    Revoked,
}

/// The source of truth for sessions.
pub trait SessionStore: Send + Sync {
    /// Inserts a new session; MUST refuse (not overwrite) an existing id.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`], [`StoreError::Full`] or [`StoreError::Unavailable`].
    fn insert(&self, record: &SessionRecord)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Looks a session up by id; expired records MAY be returned (the caller checks).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send;

    /// Deletes a session; deleting an absent id is not an error.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    fn delete(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A best-effort cache in front of the [`SessionStore`].
pub trait SessionCache: Send + Sync {
    /// Caches a record until its expiry.
    ///
    /// # Errors
    /// Any failure; callers treat it as a miss.
    fn put(&self, record: &SessionRecord) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Caches a session the init is creating, *before* its durable write: nothing can
    /// have revoked an id no store holds yet, so a cache may skip what
    /// [`SessionCache::put`] checks for a refill (the Redis cache: a plain `SET` instead
    /// of a script that first looks for a tombstone). Callers MUST make the durable write
    /// only after this returns (a revocation finds the session only then, and its
    /// tombstone comes later than this entry) and [`SessionCache::delete`] the entry when
    /// that write fails. By default the same as `put`.
    ///
    /// # Errors
    /// Any failure; callers go on with the durable write (a later lookup misses).
    fn put_new(
        &self,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.put(record)
    }
    /// A cached record, if any.
    ///
    /// # Errors
    /// Any failure; callers fall back to the store.
    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send;
    /// Removes a cached record.
    ///
    /// # Errors
    /// Any failure.
    fn delete(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes a revoked session and keeps it out until its expiry: a later
    /// [`SessionCache::put`] of it (a refill by a lookup that read the store before the
    /// revocation committed) MUST NOT make [`SessionCache::get`] return it again.
    ///
    /// # Errors
    /// Any failure (the caller then reports the revocation as failed).
    fn revoke(&self, record: &SessionRecord)
    -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The cache used when there is nothing to cache in front of (embedded stores).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

impl SessionCache for NoCache {
    fn put(&self, _: &SessionRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(Ok(()))
    }
    fn get(
        &self,
        _: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send {
        ready(Ok(None))
    }
    fn delete(&self, _: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(Ok(()))
    }
    fn revoke(&self, _: &SessionRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(Ok(()))
    }
}

/// An absent cache caches nothing: `None` behaves as [`NoCache`], `Some` as the cache.
impl<C: SessionCache> SessionCache for Option<C> {
    async fn put(&self, record: &SessionRecord) -> Result<(), StoreError> {
        match self {
            Some(c) => c.put(record).await,
            None => Ok(()),
        }
    }
    async fn put_new(&self, record: &SessionRecord) -> Result<(), StoreError> {
        match self {
            Some(c) => c.put_new(record).await,
            None => Ok(()),
        }
    }
    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self {
            Some(c) => c.get(id).await,
            None => Ok(None),
        }
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Some(c) => c.delete(id).await,
            None => Ok(()),
        }
    }
    async fn revoke(&self, record: &SessionRecord) -> Result<(), StoreError> {
        match self {
            Some(c) => c.revoke(record).await,
            None => Ok(()),
        }
    }
}

/// Result of an atomic nonce claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceClaim {
    /// First use: the nonce is now recorded for `ttl`.
    Fresh,
    /// Seen before within its TTL.
    Replay,
}

/// Why a nonce could not be claimed. Callers MUST fail closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// A bounded store is full of live nonces.
    #[error("nonce store full")]
    Full,
    /// The backing service is unreachable.
    #[error("nonce store unavailable: {0}")]
    Unavailable(String),
    /// The request is stamped inside a fence: the record of the nonces claimed before
    /// a loss or an outage of the nonce store is incomplete, so a request stamped that
    /// early cannot be proven fresh. A new request (a new timestamp) can be, once
    /// `retry_after_ms` has passed (wire: 503 with `Retry-After`).
    #[error("request stamped before a nonce-store fence: {reason}")]
    Fenced {
        /// Why (for logs).
        reason: String,
        /// How long until a request stamped then passes the fence (ms, at least 1).
        retry_after_ms: u64,
    },
}

/// One nonce claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The store key (`nonce:<clientId>:<nonce>`).
    pub key: &'a str,
    /// How long the claim must be remembered.
    pub ttl_sec: u64,
    /// The server's clock, ms since the Unix epoch.
    pub now_ms: u64,
    /// The request's own timestamp (from its idempotency key), ms since the epoch.
    /// Stores that fence after a loss decide on it.
    pub stamped_ms: u64,
}

/// Single-use nonces.
pub trait NonceStore: Send + Sync {
    /// Atomically records `claim.key` for `claim.ttl_sec` seconds from `claim.now_ms`
    /// unless it is already recorded and unexpired. Two concurrent claims of one key
    /// MUST NOT both return [`NonceClaim::Fresh`].
    ///
    /// # Errors
    /// [`NonceError`] when the claim cannot be decided; never treat that as fresh.
    fn claim(
        &self,
        claim: Claim<'_>,
    ) -> impl Future<Output = Result<NonceClaim, NonceError>> + Send;
}

/// A shared store is a store.
impl<T: NonceStore + ?Sized> NonceStore for std::sync::Arc<T> {
    fn claim(
        &self,
        claim: Claim<'_>,
    ) -> impl Future<Output = Result<NonceClaim, NonceError>> + Send {
        (**self).claim(claim)
    }
}

/// A shared store is a store.
impl<T: SessionStore + ?Sized> SessionStore for std::sync::Arc<T> {
    fn insert(
        &self,
        record: &SessionRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).insert(record)
    }
    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send {
        (**self).get(id)
    }
    fn delete(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).delete(id)
    }
}

/// Wall-clock and monotonic time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// A monotonic reading in nanoseconds, for durations only.
    fn monotonic_ns(&self) -> u64;
}

/// The operating system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
    fn monotonic_ns(&self) -> u64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}
