//! [`AppPorts`]: the server's one concrete [`Ports`]. It is the plain bundle of the
//! chosen stores, except that an init's nonce claim and its cache entry go to Redis in
//! one trip ([`Ports::claim_and_cache_new`]).

use ports::{
    Claim, NonceClaim, NonceError, Ports, SessionCache, SessionRecord, Stores, SystemClock,
    claim_then_cache,
};

use super::combinators::Either;
use super::fence::RiderSent;
use super::{AppCache, AppNonces, AppQuotas, AppSessions};

/// The stores the server runs on.
#[derive(Debug)]
pub struct AppPorts(pub Stores<AppSessions, AppCache, AppNonces, SystemClock, AppQuotas>);

impl Ports for AppPorts {
    type Sessions = AppSessions;
    type Cache = AppCache;
    type Nonces = AppNonces;
    type Clock = SystemClock;
    type Quotas = AppQuotas;

    fn sessions(&self) -> &AppSessions {
        &self.0.sessions
    }
    fn cache(&self) -> &AppCache {
        &self.0.cache
    }
    fn nonces(&self) -> &AppNonces {
        &self.0.nonces
    }
    fn clock(&self) -> &SystemClock {
        &self.0.clock
    }
    fn quotas(&self) -> &AppQuotas {
        &self.0.quotas
    }

    /// With Redis as both nonce store and cache: the claim and the entry in one trip
    /// when Redis alone decides the claim (the fence's fast path), the entry withdrawn
    /// when the claim is not fresh; otherwise the claim, then the entry.
    async fn claim_and_cache_new(
        &self,
        claim: Claim<'_>,
        record: &SessionRecord,
    ) -> Result<NonceClaim, NonceError> {
        let (Either::Right(fenced), Some(cache)) = (&self.0.nonces, &self.0.cache) else {
            return claim_then_cache(self, claim, record).await;
        };
        let Ok(Some(rider)) = cache.far.new_entry(record) else {
            return claim_then_cache(self, claim, record).await;
        };
        let (claimed, sent) = fenced.claim_carrying(claim, &rider).await;
        let fresh = claimed == Ok(NonceClaim::Fresh);
        // Best effort, as every cache write: a miss later costs one store read.
        match (fresh, sent) {
            (true, RiderSent::Written) | (false, RiderSent::Unsent) => {}
            (true, _) => {
                let _ = cache.far.put_new(record).await;
            }
            (false, _) => {
                let _ = cache.far.delete(&record.id).await;
            }
        }
        if fresh {
            let _ = cache.near.put_new(record).await;
        }
        claimed
    }
}
