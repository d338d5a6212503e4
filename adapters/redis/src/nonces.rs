//! [`RedisNonceStore`]: `SET nonce:{<b>}:<clientId>:<nonce> 1 NX EX <ttl>` behind the
//! continuity marker `fence:{<b>}` of its bucket.
//!
//! Each bucket's marker holds a random epoch, written when the bucket's data began.
//! Every instance remembers the epoch it last saw per bucket, and a claim counts only
//! if the marker still holds it: a marker that is gone (Redis restarted without its
//! data, `FLUSHALL`, eviction) or replaced (another instance saw the loss first and
//! wrote a new one) means the nonces claimed in that bucket before may be gone. The
//! claim then fails with [`NonceError::Unavailable`] and counts a loss
//! ([`crate::Redis::losses`]), and the caller's fence decides.

use std::sync::{PoisonError, RwLock};

use ports::{Claim, NonceClaim, NonceError, NonceStore};

use crate::keys::{self, BUCKETS};
use crate::{Redis, RedisError};

/// The epochs seen, per bucket (empty: not seen yet).
#[derive(Debug)]
pub(crate) struct Markers(RwLock<Vec<String>>);

impl Default for Markers {
    fn default() -> Self {
        Self(RwLock::new(vec![String::new(); usize::from(BUCKETS)]))
    }
}

impl Markers {
    fn get(&self, bucket: u16) -> String {
        self.0.read().unwrap_or_else(PoisonError::into_inner)[usize::from(bucket)].clone()
    }
    fn set(&self, bucket: u16, epoch: String) {
        self.0.write().unwrap_or_else(PoisonError::into_inner)[usize::from(bucket)] = epoch;
    }
}

/// A new random epoch (unique, not secret).
fn new_epoch() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::now_ms());
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Nonces in Redis. Fails with [`NonceError::Unavailable`] while Redis cannot be
/// reached, and once per bucket and instance after Redis lost that bucket's data.
#[derive(Debug, Clone)]
pub struct RedisNonceStore {
    redis: Redis,
}

impl RedisNonceStore {
    /// Nonces on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    /// The connection (for its loss count).
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Reads every bucket's marker and writes the missing ones. Returns how many
    /// were missing: all of them on a fresh Redis, some or all after a loss; the
    /// caller tells the two apart.
    ///
    /// # Errors
    /// [`RedisError`] when Redis cannot be read; the markers then stay unknown and
    /// the first claim in each bucket counts as a loss.
    pub async fn load_markers(&self) -> Result<u16, RedisError> {
        let reads = (0..BUCKETS).map(|b| self.load_marker(b));
        let missing = futures_util::future::try_join_all(reads).await?;
        Ok(missing.into_iter().map(u16::from).sum())
    }

    async fn load_marker(&self, bucket: u16) -> Result<bool, RedisError> {
        let (key, fresh) = (keys::marker(bucket), new_epoch());
        let (created, epoch): (Option<String>, String) = self
            .redis
            .run("SET NX / GET fence", |mut c| async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(&key)
                    .arg(&fresh)
                    .arg("NX")
                    .cmd("GET")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        self.redis.markers.set(bucket, epoch);
        Ok(created.is_some())
    }
}

impl NonceStore for RedisNonceStore {
    /// `MULTI; GET marker; SET nonce 1 NX EX ttl; EXEC`: one round trip, atomic (no
    /// flush can fall between the two), and about half the Redis CPU of a script. When
    /// the marker is not the epoch this instance knows, the nonce's answer is not
    /// trusted (what was there before may be gone): the claim fails and counts a loss,
    /// and a missing marker is written anew; a nonce it set is deleted again, so the
    /// claim the caller makes under the fence decides.
    async fn claim(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        let bucket = keys::bucket(claim.key);
        let (marker, nonce) = (keys::marker(bucket), keys::nonce(claim.key, bucket));
        let ttl = claim.ttl_sec;
        let (epoch, set): (Option<String>, Option<String>) = self
            .redis
            .run("MULTI GET fence / SET nonce NX", |mut c| {
                let (marker, nonce) = (marker.clone(), nonce.clone());
                async move {
                    redis::pipe()
                        .atomic()
                        .cmd("GET")
                        .arg(&marker)
                        .cmd("SET")
                        .arg(&nonce)
                        .arg(1)
                        .arg("NX")
                        .arg("EX")
                        .arg(ttl)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        let expected = self.redis.markers.get(bucket);
        if epoch.as_deref() == Some(expected.as_str()) && !expected.is_empty() {
            return Ok(if set.is_some() {
                NonceClaim::Fresh
            } else {
                NonceClaim::Replay
            });
        }
        // Not trusted, so not claimed: the caller claims it again under the fence.
        if set.is_some() {
            let _ = self
                .redis
                .run("DEL nonce", |mut c| async move {
                    redis::cmd("DEL")
                        .arg(&nonce)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
        }
        // Gone (written anew here, unless another instance already did) or replaced.
        let seen = match epoch {
            Some(e) => e,
            None => {
                let _ = self.load_marker(bucket).await;
                self.redis.markers.get(bucket)
            }
        };
        self.redis.markers.set(bucket, seen);
        self.redis.lost("nonce bucket marker");
        Err(NonceError::Unavailable(
            "redis lost the nonce bucket's data".into(),
        ))
    }
}
