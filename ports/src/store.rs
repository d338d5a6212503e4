//! Session and nonce stores, and the clock.

use std::future::{Future, ready};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::session::{AtRest, Protocol, SessionKeys, SessionKind, SessionRecord, WrappedKeys};

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
///
/// An insert never overwrites, and an id stored twice is never served: session ids are
/// 128 random bits, so an id comes twice only through a bug elsewhere, and a store need
/// not look for one before every insert (PostgreSQL, partitioned by expiry, could only
/// by probing every partition). Such an id fails closed instead.
pub trait SessionStore: Send + Sync {
    /// Inserts a new session. MUST NOT overwrite a session already stored under its id:
    /// either refuses it ([`StoreError::Duplicate`]) or keeps both, and then
    /// [`SessionStore::get`] never serves that id.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`], [`StoreError::Full`] or [`StoreError::Unavailable`].
    fn insert(&self, record: &SessionRecord)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Looks a session up by id; expired records MAY be returned (the caller checks).
    /// An id stored twice is not found (`Ok(None)`).
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
