//! [`Ports`]: every driven port a service needs, as one type, so that services and the
//! HTTP router take a single type parameter instead of five.

use crate::limits::Quotas;
use crate::store::{Clock, NonceStore, SessionCache, SessionStore};

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
