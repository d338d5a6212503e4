//! # memory — embedded in-process stores
//!
//! Bounded implementations of the store ports (sessions, nonces, a cache level, quotas): the default when no
//! database is configured, the fallback while Redis is unreachable, and the fast fake
//! for tests. Depends on `ports` only.
//!
//! Both stores are per process: two server processes on embedded stores do not see
//! each other's sessions or nonces.

use std::sync::{Mutex, MutexGuard, PoisonError};

mod local_cache;
mod nonces;
mod quotas;
mod sessions;

pub use local_cache::LocalSessionCache;
pub use nonces::{BYTES_PER_NONCE, DEFAULT_CLIENT_SHARE_PERCENT, MemoryNonceStore};
pub use quotas::{DEFAULT_QUOTA_CAPACITY, MemoryQuotas};
pub use sessions::MemorySessionStore;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps logically broken
    // (every mutation is a single insert/remove), so keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Default capacity of [`MemoryNonceStore`]: what 256 MiB holds (`MEMORY_NONCE_MAX_BYTES`).
pub const DEFAULT_NONCE_CAPACITY: usize = 256 * 1024 * 1024 / BYTES_PER_NONCE;
/// Default capacity of [`MemorySessionStore`] (`MEMORY_SESSION_MAX_SIZE`).
pub const DEFAULT_SESSION_CAPACITY: usize = 2_000_000;

/// A session record for the stores' unit tests.
#[cfg(test)]
fn test_record(id: &str, created: u64, expires: u64) -> ports::SessionRecord {
    ports::SessionRecord {
        id: id.into(),
        keys: ports::SessionKeys::V1(ports::SessionKey::from_bytes([7; 32])),
        kind: ports::SessionKind::Anonymous,
        client_id: "c".into(),
        created_at_ms: created,
        expires_at_ms: expires,
        at_rest: Default::default(),
    }
}
