//! Redis must not evict keys: an evicted nonce makes its request replayable. The
//! `maxmemory-policy` is read at start-up (a policy that may evict stops the server
//! unless `REDIS_ALLOW_EVICTION=true`) and every minute after (a change is logged as an
//! error and shown in `session_crypto_redis_eviction_unsafe`).

use std::time::Duration;

use http_adapter::metrics;
use redis_adapter::Redis;
use tracing::{error, info, warn};

/// How often the policy is read again.
const RECHECK: Duration = Duration::from_secs(60);

/// The one policy under which Redis never drops a key it holds.
const SAFE: &str = "noeviction";

fn refusal(policy: &str) -> String {
    format!(
        "Redis maxmemory-policy is {policy:?}: Redis may evict nonce keys under memory \
         pressure, and an evicted nonce makes its request replayable. Set it to noeviction \
         (CONFIG SET maxmemory-policy noeviction, or in redis.conf; a dedicated Redis for \
         nonces is best), or accept the risk with REDIS_ALLOW_EVICTION=true"
    )
}

/// The start-up check.
///
/// # Errors
/// [`crate::Error::Config`] when the policy may evict and `allow` is off.
pub(crate) async fn check(redis: &Redis, allow: bool) -> Result<(), crate::Error> {
    match redis.eviction_policy().await {
        Ok(policy) if policy == SAFE => {
            metrics::redis_eviction_unsafe(false);
            info!(policy, "Redis maxmemory-policy checked");
        }
        Ok(policy) if allow => {
            metrics::redis_eviction_unsafe(true);
            warn!(
                policy,
                "REDIS_ALLOW_EVICTION: Redis may evict nonce keys, making their requests replayable"
            );
        }
        Ok(policy) => return Err(crate::Error::Config(refusal(&policy))),
        Err(e) => {
            warn!(error = %e, "cannot read Redis's maxmemory-policy now; it is read again every minute")
        }
    }
    Ok(())
}

/// Reads the policy again every minute, for the life of the process.
pub(crate) fn spawn_recheck(redis: Redis, allow: bool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECHECK);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Ok(policy) = redis.eviction_policy().await else {
                continue;
            };
            let unsafe_policy = policy != SAFE;
            metrics::redis_eviction_unsafe(unsafe_policy);
            if unsafe_policy && !allow {
                error!(policy, "{}", refusal(&policy));
            }
        }
    });
}
