//! Store policies as small generic combinators over the ports: a run-time choice
//! between two adapters ([`Either`]), a two-level cache ([`Tiered`]) and a primary
//! store with a local fallback for quotas ([`Failover`]). They know nothing of Redis,
//! PostgreSQL or memory; [`super::build`] picks the adapters.

use ports::{
    Claim, NonceClaim, NonceError, NonceStore, Quotas, RateDecision, RateLimit, Reservation,
    SessionCache, SessionRecord, SessionStore, StoreError, Usage,
};

/// One of two adapters, chosen at start-up (the service needs one concrete type).
#[derive(Debug)]
pub enum Either<L, R> {
    /// The first choice.
    Left(L),
    /// The second choice.
    Right(R),
}

/// Forwards a port method to whichever side is present.
macro_rules! either {
    ($self:ident, $side:ident => $call:expr) => {
        match $self {
            Either::Left($side) => $call.await,
            Either::Right($side) => $call.await,
        }
    };
}

impl<L: SessionStore, R: SessionStore> SessionStore for Either<L, R> {
    async fn insert(&self, record: &SessionRecord) -> Result<(), StoreError> {
        either!(self, s => s.insert(record))
    }
    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        either!(self, s => s.get(id))
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        either!(self, s => s.delete(id))
    }
}

impl<L: NonceStore, R: NonceStore> NonceStore for Either<L, R> {
    async fn claim(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        either!(self, s => s.claim(claim))
    }
}

impl<L: Quotas, R: Quotas> Quotas for Either<L, R> {
    async fn rate(
        &self,
        key: &str,
        limit: RateLimit,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        either!(self, q => q.rate(key, limit, now_ms))
    }
    async fn reserve_session(&self, reservation: Reservation<'_>) -> Result<bool, StoreError> {
        either!(self, q => q.reserve_session(reservation))
    }
    async fn release_session(
        &self,
        client_id: &str,
        session_id: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        either!(self, q => q.release_session(client_id, session_id, expires_at_ms))
    }
    async fn touch(
        &self,
        session: &SessionRecord,
        uses: u64,
        now_ms: u64,
        idle_ms: u64,
    ) -> Result<Usage, StoreError> {
        either!(self, q => q.touch(session, uses, now_ms, idle_ms))
    }
}

/// A near cache (in-process, short-lived entries) in front of a far one (shared):
/// reads try near first and fill it from far; writes go to far first (so what far
/// refuses never reaches near), deletions and revocations to near first.
#[derive(Debug)]
pub struct Tiered<Near, Far> {
    /// The in-process level.
    pub near: Near,
    /// The shared level.
    pub far: Far,
}

impl<Near: SessionCache, Far: SessionCache> SessionCache for Tiered<Near, Far> {
    async fn put(&self, record: &SessionRecord) -> Result<(), StoreError> {
        // Far first: a revoked session it refuses never reaches the near level. A far
        // level that is merely down still leaves the record in the near one.
        match self.far.put(record).await {
            Err(StoreError::Revoked) => Err(StoreError::Revoked),
            far => {
                self.near.put(record).await?;
                far
            }
        }
    }
    async fn put_new(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let far = self.far.put_new(record).await;
        self.near.put_new(record).await?;
        far
    }
    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        if let Ok(Some(hit)) = self.near.get(id).await {
            return Ok(Some(hit));
        }
        let found = self.far.get(id).await?;
        if let Some(record) = &found {
            self.near.put(record).await?;
        }
        Ok(found)
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.near.delete(id).await?;
        self.far.delete(id).await
    }
    async fn revoke(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.near.revoke(record).await?;
        self.far.revoke(record).await
    }
}

/// A shared primary store with a per-process fallback used while the primary cannot
/// decide: for quotas, every decision the primary cannot make is made by the fallback,
/// so during an outage each instance counts on its own. (Nonces have a stricter
/// policy, the fence of [`super::fence`].)
#[derive(Debug)]
pub struct Failover<Primary, Fallback> {
    /// The shared store.
    pub primary: Primary,
    /// The per-process store.
    pub fallback: Fallback,
}

impl<P: Quotas, F: Quotas> Quotas for Failover<P, F> {
    async fn rate(
        &self,
        key: &str,
        limit: RateLimit,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        match self.primary.rate(key, limit, now_ms).await {
            Err(_) => self.fallback.rate(key, limit, now_ms).await,
            decided => decided,
        }
    }
    async fn reserve_session(&self, reservation: Reservation<'_>) -> Result<bool, StoreError> {
        match self.primary.reserve_session(reservation).await {
            Err(_) => self.fallback.reserve_session(reservation).await,
            decided => decided,
        }
    }
    async fn release_session(
        &self,
        client_id: &str,
        session_id: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        // Either side may hold the reservation; withdraw it from both.
        let _ = self
            .fallback
            .release_session(client_id, session_id, expires_at_ms)
            .await;
        self.primary
            .release_session(client_id, session_id, expires_at_ms)
            .await
    }
    async fn touch(
        &self,
        session: &SessionRecord,
        uses: u64,
        now_ms: u64,
        idle_ms: u64,
    ) -> Result<Usage, StoreError> {
        match self.primary.touch(session, uses, now_ms, idle_ms).await {
            Err(_) => self.fallback.touch(session, uses, now_ms, idle_ms).await,
            decided => decided,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use memory::{LocalSessionCache, MemoryQuotas};
    use ports::{SessionKey, SessionKind};

    use super::*;

    /// A primary that can be switched off, as Redis is in an outage.
    #[derive(Debug, Default)]
    struct Switchable {
        down: AtomicBool,
        quotas: MemoryQuotas,
    }

    impl Switchable {
        fn check(&self) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                Err(StoreError::Unavailable("down".into()))
            } else {
                Ok(())
            }
        }
    }

    impl Quotas for Switchable {
        async fn rate(&self, k: &str, l: RateLimit, now: u64) -> Result<RateDecision, StoreError> {
            self.check()?;
            self.quotas.rate(k, l, now).await
        }
        async fn reserve_session(&self, r: Reservation<'_>) -> Result<bool, StoreError> {
            self.check()?;
            self.quotas.reserve_session(r).await
        }
        async fn release_session(&self, c: &str, s: &str, e: u64) -> Result<(), StoreError> {
            self.quotas.release_session(c, s, e).await
        }
        async fn touch(
            &self,
            r: &SessionRecord,
            u: u64,
            now: u64,
            idle: u64,
        ) -> Result<Usage, StoreError> {
            self.check()?;
            self.quotas.touch(r, u, now, idle).await
        }
    }

    fn run<F: Future>(f: F) -> F::Output {
        futures_executor::block_on(f)
    }

    fn record(id: &str) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            keys: ports::SessionKeys::V1(SessionKey::from_bytes([1; 32])),
            kind: SessionKind::Anonymous,
            client_id: "c".into(),
            created_at_ms: 0,
            expires_at_ms: u64::MAX / 2,
            at_rest: Default::default(),
        }
    }

    #[test]
    fn quota_decisions_fall_back_while_the_primary_is_down() {
        let q = Failover {
            primary: Switchable::default(),
            fallback: MemoryQuotas::default(),
        };
        q.primary.down.store(true, Ordering::SeqCst);
        let reservation = |session_id| Reservation {
            client_id: "c",
            session_id,
            expires_at_ms: 10_000,
            cap: 1,
            now_ms: 0,
        };
        assert_eq!(run(q.reserve_session(reservation("S-1"))), Ok(true));
        assert_eq!(run(q.reserve_session(reservation("S-2"))), Ok(false));
        // Released from the side that held it.
        run(q.release_session("c", "S-1", 10_000)).unwrap();
        assert_eq!(run(q.reserve_session(reservation("S-2"))), Ok(true));
    }

    #[test]
    fn the_tiered_cache_fills_near_from_far_and_deletes_from_both() {
        let cache = Tiered {
            near: LocalSessionCache::new(60_000, 10),
            far: LocalSessionCache::new(60_000, 10),
        };
        run(cache.far.put(&record("S-1"))).unwrap();
        assert!(run(cache.near.get("S-1")).unwrap().is_none());
        assert!(run(cache.get("S-1")).unwrap().is_some());
        assert!(run(cache.near.get("S-1")).unwrap().is_some(), "filled");
        run(cache.delete("S-1")).unwrap();
        assert!(run(cache.near.get("S-1")).unwrap().is_none());
        assert!(run(cache.far.get("S-1")).unwrap().is_none());
        // What far refuses after a revocation never reaches near.
        let r = record("S-2");
        run(cache.put(&r)).unwrap();
        run(cache.revoke(&r)).unwrap();
        assert_eq!(run(cache.put(&r)), Err(StoreError::Revoked));
        assert!(run(cache.near.get("S-2")).unwrap().is_none());
        assert!(run(cache.get("S-2")).unwrap().is_none());
    }
}
