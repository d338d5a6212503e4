//! [`RedisNonceStore`]: `SET nonce:{<b>}:<clientId>:<nonce> 1 NX EX <ttl>` behind the
//! continuity marker `fence:{<b>}` of its bucket.
//!
//! Each bucket's marker holds a random epoch, written when the bucket's data began.
//! Every instance remembers the epoch it last saw per bucket, and a claim runs only
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

/// KEYS: marker, nonce. ARGV: ttl, the epoch expected, a new epoch for a missing marker.
/// Answers `{1, epoch}` fresh, `{0, epoch}` replay, `{-1, epoch}` the marker differs
/// (nothing claimed; the marker now holds `epoch`).
static CLAIM: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local m = redis.call('GET', KEYS[1])
if m ~= ARGV[2] then
  if not m then
    m = ARGV[3]
    redis.call('SET', KEYS[1], m)
  end
  return {-1, m}
end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return {1, m}
end
return {0, m}
",
    )
});

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
    async fn claim(&self, claim: Claim<'_>) -> Result<NonceClaim, NonceError> {
        let bucket = keys::bucket(claim.key);
        let (marker, nonce) = (keys::marker(bucket), keys::nonce(claim.key, bucket));
        let (expected, fresh) = (self.redis.markers.get(bucket), new_epoch());
        let ttl = claim.ttl_sec;
        let (answer, epoch): (i64, String) = self
            .redis
            .run("EVALSHA claim nonce", |mut c| async move {
                let mut call = CLAIM.key(marker);
                call.key(nonce).arg(ttl).arg(expected).arg(fresh);
                call.invoke_async(&mut c).await
            })
            .await?;
        match answer {
            1 => Ok(NonceClaim::Fresh),
            0 => Ok(NonceClaim::Replay),
            _ => {
                self.redis.markers.set(bucket, epoch);
                self.redis.lost("nonce bucket marker");
                Err(NonceError::Unavailable(
                    "redis lost the nonce bucket's data".into(),
                ))
            }
        }
    }
}
