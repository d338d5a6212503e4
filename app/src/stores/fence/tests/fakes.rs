//! The fence tests' stand-ins: a primary that can be switched off or emptied, as Redis
//! can, and a ledger in memory shared by several "instances", as PostgreSQL's is.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use memory::MemoryNonceStore;
use ports::{Claim, NonceClaim, NonceError, NonceStore, StoreError};

use super::super::{BoardRead, Episode, Ledger, Losses};

/// A primary that can be switched off or emptied, as Redis can.
#[derive(Default)]
pub(super) struct Primary {
    pub(super) down: AtomicBool,
    pub(super) nonces: Mutex<Arc<MemoryNonceStore>>,
    pub(super) losses: AtomicU64,
    pub(super) interruptions: AtomicU64,
    /// The next claim runs on a connection made anew (an interruption counted)
    /// to a primary that lacks every earlier claim.
    pub(super) interrupt_next_claim: AtomicBool,
}

impl Primary {
    pub(super) fn lose_everything(&self) {
        *self.nonces.lock().unwrap() = Arc::new(MemoryNonceStore::new(1000));
        self.losses.fetch_add(1, Ordering::SeqCst);
    }
}

impl NonceStore for Primary {
    async fn claim(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(NonceError::Unavailable("down".into()));
        }
        if self.interrupt_next_claim.swap(false, Ordering::SeqCst) {
            *self.nonces.lock().unwrap() = Arc::new(MemoryNonceStore::new(1000));
            self.interruptions.fetch_add(1, Ordering::SeqCst);
        }
        let store = Arc::clone(&self.nonces.lock().unwrap());
        store.claim(claim).await
    }
}

impl Losses for Primary {
    fn losses(&self) -> u64 {
        self.losses.load(Ordering::SeqCst)
    }
    fn interruptions(&self) -> u64 {
        self.interruptions.load(Ordering::SeqCst)
    }
}

/// instance → (seen, acked episode start, acked at)
pub(super) type Instances = Arc<Mutex<std::collections::HashMap<String, (u64, u64, u64)>>>;

/// A ledger in memory, shared by the boards of several "instances", that can be
/// made unreachable; the same rules as the PostgreSQL one.
#[derive(Default, Clone)]
pub(super) struct SharedLedger {
    pub(super) fence: Arc<Mutex<Option<Episode>>>,
    pub(super) instances: Instances,
    pub(super) down: Arc<AtomicBool>,
    /// The shared store's nonces, when a [`Recording`] store writes them here.
    pub(super) nonces: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl SharedLedger {
    pub(super) fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("pg down".into()));
        }
        Ok(())
    }
}

impl Ledger for SharedLedger {
    async fn report(&self, now_ms: u64, gap_ms: u64) -> Result<Episode, StoreError> {
        self.check()?;
        let mut e = self.fence.lock().unwrap();
        let next = match *e {
            Some(old) if old.last_seen_ms + gap_ms >= now_ms && old.closed_ms == 0 => Episode {
                started_ms: old.started_ms,
                last_seen_ms: old.last_seen_ms.max(now_ms),
                closed_ms: 0,
            },
            Some(old) => Episode {
                started_ms: now_ms.max(old.started_ms + 1),
                last_seen_ms: old.last_seen_ms.max(now_ms),
                closed_ms: 0,
            },
            None => Episode {
                started_ms: now_ms,
                last_seen_ms: now_ms,
                closed_ms: 0,
            },
        };
        *e = Some(next);
        Ok(next)
    }
    async fn read(
        &self,
        instance: &str,
        now_ms: u64,
        acked_ms: u64,
        lease_ms: u64,
    ) -> Result<Option<BoardRead>, StoreError> {
        self.check()?;
        let mut all = self.instances.lock().unwrap();
        let fence = *self.fence.lock().unwrap();
        let others_ms = fence.map_or(0, |f| {
            all.iter()
                .filter(|(id, (seen, _, _))| {
                    id.as_str() != instance && seen + lease_ms >= f.started_ms
                })
                .map(|(_, (seen, acked, at))| {
                    if *acked >= f.started_ms {
                        *at
                    } else {
                        seen + lease_ms
                    }
                })
                .max()
                .unwrap_or(0)
        });
        let current = fence.map_or(0, |f| f.started_ms);
        let me = all
            .entry(instance.to_owned())
            .or_insert((now_ms, acked_ms.max(current), 0));
        if acked_ms > me.1 {
            *me = (now_ms, acked_ms, now_ms);
        } else {
            me.0 = now_ms;
        }
        Ok(fence.map(|episode| BoardRead { episode, others_ms }))
    }
    async fn close(
        &self,
        started_ms: u64,
        last_seen_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.check()?;
        let mut e = self.fence.lock().unwrap();
        match e.as_mut() {
            Some(f)
                if f.started_ms == started_ms
                    && f.last_seen_ms == last_seen_ms
                    && f.closed_ms == 0 =>
            {
                f.closed_ms = now_ms;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn unexpired(
        &self,
        now_ms: u64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.check()?;
        let nonces = self.nonces.lock().unwrap();
        Ok(nonces
            .iter()
            .filter(|(k, exp)| k.as_str() > after && **exp > now_ms)
            .take(usize::try_from(limit).unwrap_or(0))
            .map(|(k, exp)| (k.clone(), *exp))
            .collect())
    }
    async fn leave(&self, instance: &str, now_ms: u64, lease_ms: u64) -> Result<(), StoreError> {
        self.check()?;
        if let Some(me) = self.instances.lock().unwrap().get_mut(instance) {
            me.0 = me.0.min(now_ms.saturating_sub(lease_ms));
        }
        Ok(())
    }
}
