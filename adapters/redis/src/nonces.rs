//! [`RedisNonceStore`]: `SET nonce:{<b>}:<clientId>:<nonce> 1 NX EX <ttl>`, checked
//! against the continuity marker `fence:{<b>}` of its bucket read right after.
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

/// Whether a claim failed because its slot is being moved between the nodes of a
/// cluster (`ASK`, `MOVED`, `TRYAGAIN`; `EXECABORT` from a transaction): redis-rs
/// follows those redirections for single commands, not for pipelines.
fn moving(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    matches!(
        e.kind(),
        ErrorKind::Server(S::ExecAbort | S::Ask | S::Moved | S::TryAgain)
    )
}

/// The claim of a nonce whose slot is on the move, as the same two commands sent one at
/// a time, each following the redirections ([`crate::conn::Conn::query_following`]: a
/// bounded number of times, then the error stands and Redis counts as unavailable). A
/// migration moves each key atomically (`MIGRATE`), and a key missing on the node the
/// slot leaves is looked up where it goes, so a nonce claimed before is found on one of
/// them; the order is the pipeline's (see [`RedisNonceStore::claim_with`]).
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
    Ok((set, epoch))
}

/// A plain `SET key value EX ttl` that may travel in the same pipeline as a claim
/// ([`RedisNonceStore::claim_with`]): the cache entry of a session an init is
/// creating ([`crate::RedisSessionCache::new_entry`]).
#[derive(Clone)]
pub struct Rider {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) ttl_sec: u64,
}

impl std::fmt::Debug for Rider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rider")
            .field("ttl_sec", &self.ttl_sec)
            .finish_non_exhaustive()
    }
}

impl Rider {
    fn add_to(&self, pipe: &mut redis::Pipeline) {
        pipe.add_command(self.command()).ignore();
    }
    fn command(&self) -> redis::Cmd {
        let mut set = redis::cmd("SET");
        set.arg(&self.key)
            .arg(&self.value)
            .arg("EX")
            .arg(self.ttl_sec);
        set
    }
}

impl RedisNonceStore {
    /// Claims `claim`, and sends `rider` (when given) in the same trip: one pipeline on a
    /// single server (standalone or found through Sentinel), two requests in flight at
    /// once on a cluster (a pipeline there stays in one slot, and the rider's key is in
    /// another). The rider is written whatever the claim's outcome; the caller
    /// withdraws it when the claim is not fresh.
    ///
    /// The claim is `SET nonce 1 NX EX ttl` then `GET marker`, a plain pipeline: one
    /// round trip, two commands. It needs no transaction because the marker is read
    /// *after* the set, and each command is atomic on its own:
    ///
    /// * Two claims of one nonce: whatever the interleaving of their four commands, one
    ///   `SET … NX` comes first and is the only one to set the key; the other answers
    ///   nil (a replay) or, if a loss came between, finds the marker gone.
    /// * A loss of the bucket's data (restart without it, `FLUSHALL`, eviction,
    ///   failover to a lagging replica) before the `SET` removed or replaced the marker
    ///   as well (a new marker carries a new random epoch), so the `GET` after it shows
    ///   the loss and the claim is not trusted. A loss between the two does the same. A
    ///   loss after the `GET` comes after the claim was decided, like one after `EXEC`.
    ///
    /// In the other order (the marker first) a loss between the two would go unseen:
    /// the `SET` would succeed on emptied data. `tests/persistence/claim_interleavings.rs`
    /// runs both claims' commands, and a loss, in every order.
    ///
    /// On a Redis Cluster the two stay in a transaction (`MULTI` … `EXEC`, four
    /// commands): redis-rs's cluster client sends a plain pipeline again when one of its
    /// commands meets a slot on the move, and a `SET … NX` that ran the first time would
    /// then answer as a replay (the slot-migration test refused 322 of 4,431 fresh
    /// requests that way). A transaction runs whole or not at all, and one aborted by a
    /// migration is made again by [`claim_on_the_move`].
    ///
    /// # Errors
    /// As [`NonceStore::claim`].
    pub async fn claim_with(
        &self,
        claim: Claim<'_>,
        rider: Option<&Rider>,
    ) -> Result<NonceClaim, NonceError> {
        let bucket = keys::bucket(claim.key);
        let (marker, nonce) = (keys::marker(bucket), keys::nonce(claim.key, bucket));
        let ttl = claim.ttl_sec;
        let cluster = self.redis.is_cluster();
        let together = rider.filter(|_| !cluster);
        let claimed = self.redis.run("SET nonce NX / GET fence", |mut c| {
            let (marker, nonce) = (marker.clone(), nonce.clone());
            async move {
                let mut pipe = redis::pipe();
                if cluster {
                    pipe.atomic();
                }
                pipe.cmd("SET")
                    .arg(&nonce)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl)
                    .cmd("GET")
                    .arg(&marker);
                if let Some(rider) = together {
                    rider.add_to(&mut pipe);
                }
                match pipe.query_async(&mut c).await {
                    Err(e) if moving(&e) => claim_on_the_move(&mut c, &marker, &nonce, ttl).await,
                    decided => decided,
                }
            }
        });
        let (set, epoch): (Option<String>, Option<String>) = match rider.filter(|_| cluster) {
            Some(rider) => {
                let write = self.redis.run("SET sess", |mut c| async move {
                    c.query_following::<()>(&rider.command()).await
                });
                futures_util::future::join(claimed, write).await.0?
            }
            None => claimed.await?,
        };
        self.decide(bucket, &nonce, set.is_some(), epoch).await
    }

    /// The outcome of a claim that set the nonce (`set`) or not, given the marker it
    /// read afterwards.
    async fn decide(
        &self,
        bucket: u16,
        nonce: &str,
        set: bool,
        epoch: Option<String>,
    ) -> Result<NonceClaim, NonceError> {
        let expected = self.redis.markers.get(bucket);
        if epoch.as_deref() == Some(expected.as_str()) && !expected.is_empty() {
            return Ok(if set {
                NonceClaim::Fresh
            } else {
                NonceClaim::Replay
            });
        }
        // Not trusted, so not claimed: the caller claims it again under the fence.
        if set {
            let nonce = nonce.to_owned();
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

impl NonceStore for RedisNonceStore {
    /// [`RedisNonceStore::claim_with`] without a rider. When the marker is not the epoch
    /// this instance knows, the nonce's answer is not trusted (what was there before
    /// may be gone): the claim fails and counts a loss, and a missing marker is written
    /// anew; a nonce it set is deleted again, so the claim the caller makes under the
    /// fence decides.
    async fn claim(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        self.claim_with(claim, None).await
    }
}
