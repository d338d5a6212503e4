//! [`RedisNonceStore`]: `SET nonce:<clientId>:<nonce> 1 NX EX <ttl>`.

use ports::{NonceClaim, NonceError, NonceStore};

use crate::Redis;

/// Nonces in Redis. Fails with [`NonceError::Unavailable`] while Redis cannot be reached.
#[derive(Debug, Clone)]
pub struct RedisNonceStore {
    redis: Redis,
}

impl RedisNonceStore {
    /// Nonces on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }
}

impl NonceStore for RedisNonceStore {
    async fn claim(&self, key: &str, ttl_sec: u64, _now_ms: u64) -> Result<NonceClaim, NonceError> {
        let k = key.to_owned();
        let set = self
            .redis
            .run("SET nonce NX", |mut c| async move {
                redis::cmd("SET")
                    .arg(k)
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl_sec)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await;
        match set {
            Ok(Some(_)) => Ok(NonceClaim::Fresh),
            Ok(None) => Ok(NonceClaim::Replay),
            Err(e) => Err(e.into()),
        }
    }
}
