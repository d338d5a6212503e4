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

/// The epochs seen, per bucket (empty: not seen yet), and the reload under way.
#[derive(Debug)]
pub(crate) struct Markers(RwLock<Vec<String>>, tokio::sync::Mutex<()>);

impl Default for Markers {
    fn default() -> Self {
        Self(
            RwLock::new(vec![String::new(); usize::from(BUCKETS)]),
            tokio::sync::Mutex::new(()),
        )
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

/// Marker reads in flight at once (of the 256), so that a reload is not a burst.
const MARKER_READS: usize = 16;

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
        use futures_util::{StreamExt, TryStreamExt};
        let missing: Vec<bool> =
            futures_util::stream::iter((0..BUCKETS).map(|b| self.load_marker(b)))
                .buffered(MARKER_READS)
                .try_collect()
                .await?;
        Ok(missing.into_iter().map(u16::from).sum())
    }

    /// Whether Redis still holds every bucket's marker with the epoch this instance
    /// knows: `Ok(false)` after a loss, which is then counted ([`crate::Redis::losses`])
    /// and the markers read again.
    ///
    /// # Errors
    /// [`RedisError`] when Redis cannot be read.
    pub async fn markers_intact(&self) -> Result<bool, RedisError> {
        use futures_util::{StreamExt, TryStreamExt};
        let reads = (0..BUCKETS).map(|b| {
            let key = keys::marker(b);
            self.redis.run("GET fence", |mut c| async move {
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
        });
        let epochs: Vec<Option<String>> = futures_util::stream::iter(reads)
            .buffered(MARKER_READS)
            .try_collect()
            .await?;
        let intact = epochs.into_iter().zip(0..BUCKETS).all(|(epoch, b)| {
            let known = self.redis.markers.get(b);
            !known.is_empty() && epoch.as_deref() == Some(known.as_str())
        });
        if !intact {
            let _ = self.load_markers().await;
            self.redis.lost("nonce bucket marker");
        }
        Ok(intact)
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

impl RedisNonceStore {
    /// Writes nonces claimed elsewhere back into Redis: `SET … NX PX <remaining>` for
    /// each `(claim key, expiry ms)` still unexpired at `now_ms`, one pipeline per
    /// bucket (one slot of a cluster). A nonce Redis already holds is left as it is.
    /// Returns how many were written.
    ///
    /// # Errors
    /// [`RedisError`] when a pipeline fails; what was written before stays.
    pub async fn restore(
        &self,
        nonces: &[(String, u64)],
        now_ms: u64,
    ) -> Result<usize, RedisError> {
        let mut by_bucket: std::collections::BTreeMap<u16, Vec<(String, u64)>> =
            std::collections::BTreeMap::new();
        for (key, expires_ms) in nonces {
            if *expires_ms > now_ms {
                let bucket = keys::bucket(key);
                by_bucket
                    .entry(bucket)
                    .or_default()
                    .push((keys::nonce(key, bucket), expires_ms - now_ms));
            }
        }
        let mut written = 0;
        for batch in by_bucket.into_values() {
            let n = batch.len();
            self.redis
                .run("SET nonce NX PX (write-back)", |mut c| async move {
                    let mut pipe = redis::pipe();
                    for (key, ttl_ms) in &batch {
                        pipe.cmd("SET")
                            .arg(key)
                            .arg(1)
                            .arg("NX")
                            .arg("PX")
                            .arg(*ttl_ms)
                            .ignore();
                    }
                    pipe.query_async::<()>(&mut c).await
                })
                .await?;
            written += n;
        }
        Ok(written)
    }
}

/// Whether a transaction failed because its slot is being moved between the nodes
/// of a cluster (`ASK`, `MOVED`, `TRYAGAIN` inside `MULTI`, which aborts the `EXEC`):
/// redis-rs follows those redirections for single commands, not for transactions.
fn moving(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    matches!(
        e.kind(),
        ErrorKind::Server(S::ExecAbort | S::Ask | S::Moved | S::TryAgain)
    )
}

/// The claim of a nonce whose slot is on the move, as two single commands that follow
/// the redirections ([`crate::conn::Conn::query_following`]: a bounded number of times,
/// then the error stands and Redis counts as unavailable): the nonce's
/// `SET … NX` first, then the marker's `GET`. Safe without the transaction because
/// the marker is read *after* the set: a loss of the bucket's data before the set
/// removed the marker too (a new one carries a new random epoch), so a marker that
/// still holds the known epoch shows the set found the bucket's data intact. A
/// migration moves each key atomically (`MIGRATE`), and a key missing on the node the
/// slot leaves is looked up where it goes, so a nonce claimed before is found on one
/// of them.
async fn claim_on_the_move(
    c: &mut crate::conn::Conn,
    marker: &str,
    nonce: &str,
    ttl: u64,
) -> redis::RedisResult<(Option<String>, Option<String>)> {
    let mut set = redis::cmd("SET");
    set.arg(nonce).arg(1).arg("NX").arg("EX").arg(ttl);
    let set: Option<String> = c.query_following(&set).await?;
    let epoch: Option<String> = c.query_following(redis::cmd("GET").arg(marker)).await?;
    Ok((epoch, set))
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
                    let atomic = redis::pipe()
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
                        .await;
                    match atomic {
                        Err(e) if moving(&e) => {
                            claim_on_the_move(&mut c, &marker, &nonce, ttl).await
                        }
                        decided => decided,
                    }
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
        // A loss seldom spares the other buckets (a restart, a flush, a failover):
        // every marker is read again now (one reload at a time), so that the episode
        // this loss begins is not prolonged by one more loss per bucket touched later.
        if let Some(e) = epoch {
            self.redis.markers.set(bucket, e);
        }
        if let Ok(_reloading) = self.redis.markers.1.try_lock() {
            let _ = self.load_markers().await;
        }
        self.redis.lost("nonce bucket marker");
        Err(NonceError::Unavailable(
            "redis lost the nonce bucket's data".into(),
        ))
    }
}
