//! [`Ports`]: every driven port a service needs, as one type, so that services and the
//! HTTP router take a single type parameter instead of five.

use std::future::Future;

use crate::limits::Quotas;
use crate::store::{
    Claim, Clock, NonceClaim, NonceError, NonceStore, SessionCache, SessionRecord, SessionStore,
};

/// The driven ports of the session service, bundled: the session store (source of
/// truth), the cache in front of it, the nonce store, the clock and the abuse-limit
/// state. The composition root builds one concrete type of it; tests use [`Stores`].
pub trait Ports: Send + Sync + 'static {
    /// Source of truth for sessions.
    type Sessions: SessionStore;
    /// Best-effort cache in front of [`Ports::Sessions`].
    type Cache: SessionCache;
    /// Single-use nonces.
    type Nonces: NonceStore;
    /// Time.
    type Clock: Clock;
    /// Abuse-limit state.
    type Quotas: Quotas;

    /// The session store.
    fn sessions(&self) -> &Self::Sessions;
    /// The session cache.
    fn cache(&self) -> &Self::Cache;
    /// The nonce store.
    fn nonces(&self) -> &Self::Nonces;
    /// The clock.
    fn clock(&self) -> &Self::Clock;
    /// The abuse-limit state.
    fn quotas(&self) -> &Self::Quotas;

    /// Claims an init's nonce and caches the session the init creates
    /// ([`SessionCache::put_new`]), before its durable write. Where the nonce store and
    /// the cache share a server, both may go in one trip; the entry is then written
    /// whatever the claim's outcome, and this method withdraws it when the claim is not
    /// fresh. Either way, when this returns something other than
    /// `Ok(`[`NonceClaim::Fresh`]`)`, no cache holds the session (a cache failure
    /// aside: its entry names an id no one was given, and lapses with its TTL). By
    /// default: [`claim_then_cache`].
    ///
    /// # Errors
    /// As [`NonceStore::claim`].
    fn claim_and_cache_new<'a>(
        &'a self,
        claim: Claim<'a>,
        record: &'a SessionRecord,
    ) -> impl Future<Output = Result<NonceClaim, NonceError>> + Send + 'a {
        claim_then_cache(self, claim, record)
    }
}

/// The claim, then (when fresh) the cache write: two trips.
///
/// # Errors
/// As [`NonceStore::claim`].
pub async fn claim_then_cache<P: Ports + ?Sized>(
    ports: &P,
    claim: Claim<'_>,
    record: &SessionRecord,
) -> Result<NonceClaim, NonceError> {
    let claimed = ports.nonces().claim(claim).await;
    if claimed == Ok(NonceClaim::Fresh) {
        // Best effort: a miss later costs one store read.
        let _ = ports.cache().put_new(record).await;
    }
    claimed
}

/// The plain [`Ports`] bundle: one field per port.
#[derive(Debug)]
pub struct Stores<S, C, N, K, Q> {
    /// Source of truth for sessions.
    pub sessions: S,
    /// Cache in front of it.
    pub cache: C,
    /// Single-use nonces.
    pub nonces: N,
    /// Time.
    pub clock: K,
    /// Abuse-limit state.
    pub quotas: Q,
}

impl<S, C, N, K, Q> Ports for Stores<S, C, N, K, Q>
where
    S: SessionStore + 'static,
    C: SessionCache + 'static,
    N: NonceStore + 'static,
    K: Clock + 'static,
    Q: Quotas + 'static,
{
    type Sessions = S;
    type Cache = C;
    type Nonces = N;
    type Clock = K;
    type Quotas = Q;

    fn sessions(&self) -> &S {
        &self.sessions
    }
    fn cache(&self) -> &C {
        &self.cache
    }
    fn nonces(&self) -> &N {
        &self.nonces
    }
    fn clock(&self) -> &K {
        &self.clock
    }
    fn quotas(&self) -> &Q {
        &self.quotas
    }
}
