//! The server's use cases, generic over one [`Ports`] bundle (static dispatch for the
//! stores) and a `'static` crypto provider (so the backend can be chosen at run time).
//!
//! One file per use case, each with its own request, outcome and error types:
//! [`init`] creates a session, [`exchange`] is the authenticated exchange every
//! encrypted route is built on (open the request envelope → a handler → seal its
//! answer), [`revoke`] ends a session, [`release`] hands a key to the internal network.
//! This file holds the service and the steps they share: the session lookup and the
//! nonce claim.

pub mod exchange;
pub mod init;
pub mod release;
pub mod revoke;

use ports::{
    Claim, CryptoProvider, NonceClaim, NonceError, NonceStore, Ports, Quotas, SessionCache,
    SessionRecord, SessionStore, StoreError,
};

use crate::headers::HeaderError;
use crate::limits::AbuseLimits;
use crate::policy::{ReplayPolicy, TtlPolicy, V1TtlPolicy, nonce_key};
use crate::signing_keys::SigningKeys;
use crate::v2::ServerIdentity;

/// Which route family a request arrived on — a matter of URL paths, not of protocol
/// version (`ports::Protocol`): the unversioned API-server routes or the `/v1/...`
/// identity routes. They share rules and store but differ in TTL rules, `encAlg` and
/// error shapes (the reference specification's divergences V1, V2, V11 and V12;
/// docs/http-api.md, "Differences from the reference"). `/v1/session/init` with
/// `"protocol": 2` makes a protocol-2 session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/session/init`, `/transaction/purchase`.
    Unversioned,
    /// The `/v1/...` paths: `/v1/session/init`, `/v1/session/{id}`.
    V1Paths,
}

impl Family {
    /// `encAlg` in the init response.
    pub fn enc_alg(self) -> &'static str {
        match self {
            Self::Unversioned => "A256GCM",
            Self::V1Paths => "aes-256-gcm",
        }
    }
}

/// The policies the service enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Window and nonce TTL.
    pub replay: ReplayPolicy,
    /// Unversioned TTL rules.
    pub ttl: TtlPolicy,
    /// `/v1` TTL rules.
    pub v1_ttl: V1TtlPolicy,
    /// Rate limits, session cap, encryption cap, idle timeout.
    pub limits: AbuseLimits,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            replay: ReplayPolicy::DEFAULT,
            ttl: TtlPolicy::DEFAULT,
            v1_ttl: V1TtlPolicy::DEFAULT,
            limits: AbuseLimits::DEFAULT,
        }
    }
}

/// The session service: every server-side rule of the protocol.
#[derive(Debug)]
pub struct SessionService<P> {
    crypto: CryptoProvider,
    ports: P,
    config: ServiceConfig,
    /// The server's signing keys (v2 init responses are signed when a current one
    /// is set).
    signing: SigningKeys,
}

/// What a session lookup found.
pub(crate) enum Lookup {
    Found(SessionRecord),
    Missing,
    Expired(SessionRecord),
}

/// Why a nonce could not be claimed.
pub(crate) enum ClaimError {
    /// Already used within its TTL.
    Replay,
    /// The store could not decide (fail closed).
    Store(NonceError),
}

/// A header value that must be present and non-empty.
pub(crate) fn required<'a>(
    value: Option<&'a str>,
    name: &'static str,
) -> Result<&'a str, HeaderError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or(HeaderError::Missing(name))
}

impl<P: Ports> SessionService<P> {
    /// Assembles the service.
    pub fn new(crypto: CryptoProvider, ports: P, config: ServiceConfig) -> Self {
        Self {
            crypto,
            ports,
            config,
            signing: SigningKeys::default(),
        }
    }

    /// The service signing v2 init responses with `identity`.
    #[must_use]
    pub fn with_identity(self, identity: Option<ServerIdentity>) -> Self {
        self.with_signing_keys(SigningKeys::single(identity))
    }

    /// The service signing with the current key of `keys` and publishing the others.
    #[must_use]
    pub fn with_signing_keys(mut self, keys: SigningKeys) -> Self {
        self.signing = keys;
        self
    }

    /// The server's signing identity, if one is configured.
    pub fn identity(&self) -> Option<&ServerIdentity> {
        self.signing.current()
    }

    /// Every signing key the server publishes.
    pub fn signing_keys(&self) -> &SigningKeys {
        &self.signing
    }

    /// The crypto backend in use.
    pub fn crypto(&self) -> CryptoProvider {
        self.crypto
    }
    /// The policies.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }
    /// The stores, clock and limit state the service runs on.
    pub fn ports(&self) -> &P {
        &self.ports
    }

    /// Cache-aside read: the cache, else the store (refilling the cache with a live
    /// record). Expired records are reported as such, for the caller to act on.
    pub(crate) async fn lookup(&self, id: &str, now_ms: u64) -> Result<Lookup, StoreError> {
        let (cache, store) = (self.ports.cache(), self.ports.sessions());
        let record = match cache.get(id).await {
            Ok(Some(record)) => record,
            _ => match store.get(id).await? {
                Some(record) => {
                    // A cache that refuses the record knows it was revoked: the store
                    // (a lagging replica, a read racing the revocation) is behind.
                    if !record.is_expired(now_ms)
                        && cache.put(&record).await == Err(StoreError::Revoked)
                    {
                        return Ok(Lookup::Missing);
                    }
                    record
                }
                None => return Ok(Lookup::Missing),
            },
        };
        if record.is_expired(now_ms) {
            return Ok(Lookup::Expired(record));
        }
        Ok(Lookup::Found(record))
    }

    /// Deletes a session everywhere: store, then cache — where it is also kept from
    /// coming back by a refill racing the deletion — then its client's session count.
    pub(crate) async fn end_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.ports.sessions().delete(&record.id).await?;
        self.ports.cache().revoke(record).await?;
        // The count entry lapses at the session's expiry if this fails.
        let _ = self
            .ports
            .quotas()
            .release_session(&record.client_id, &record.id, record.expires_at_ms)
            .await;
        Ok(())
    }

    /// Claims `nonce` (of a request stamped `stamped_ms`) for `client_id` for the
    /// policy's claim TTL.
    pub(crate) async fn claim_nonce(
        &self,
        client_id: &str,
        nonce: &str,
        now_ms: u64,
        stamped_ms: u64,
    ) -> Result<(), ClaimError> {
        let key = nonce_key(client_id, nonce);
        claimed(
            self.ports
                .nonces()
                .claim(self.claim_of(&key, now_ms, stamped_ms))
                .await,
        )
    }

    /// The claim of `key` (see [`nonce_key`]) for the policy's claim TTL.
    pub(crate) fn claim_of<'k>(&self, key: &'k str, now_ms: u64, stamped_ms: u64) -> Claim<'k> {
        Claim {
            key,
            ttl_sec: self.config.replay.claim_ttl_sec(),
            now_ms,
            stamped_ms,
        }
    }
}

/// A claim's outcome as the services see it.
pub(crate) fn claimed(outcome: Result<NonceClaim, NonceError>) -> Result<(), ClaimError> {
    match outcome {
        Ok(NonceClaim::Fresh) => Ok(()),
        Ok(NonceClaim::Replay) => Err(ClaimError::Replay),
        Err(e) => Err(ClaimError::Store(e)),
    }
}
