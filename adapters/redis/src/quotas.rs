//! [`RedisQuotas`]: abuse-limit state shared by every instance through Redis — rate
//! limits and use counters as Lua scripts or single commands (atomic on the server),
//! session counts batched (see `session_counts`). While Redis is unreachable every
//! call fails with [`StoreError::Unavailable`]; falling back to in-memory state is a
//! policy of the composition root.
//!
//! Keys: `rl:<scope>` (GCRA arrival time, µs, expires when idle), `cs:<clientId>`
//! (hash: sessions per expiry minute, see `session_counts`), `enc:<sessionId>` (encryption
//! count) or, with an idle timeout, `use:<sessionId>` (hash: `n` encryptions, `t` last
//! use); each with a TTL so nothing outlives its purpose.
//!
//! Without an idle timeout a purchase costs one `INCRBY` (the cheapest thing Redis
//! does; the expiry is set once, by the first use) rather than a script: the counter
//! runs on every purchase, and on a busy server Redis CPU is part of the budget.

use std::sync::{Arc, LazyLock};

use ports::{Quotas, RateDecision, RateLimit, Reservation, SessionRecord, StoreError, Usage};
use redis::Script;

use crate::keys;
use crate::session_counts::SessionCounts;
use crate::{Redis, RedisError};

static RATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
local new = math.max(tat, now) + tonumber(ARGV[2])
local ahead = new - now
local tolerance = tonumber(ARGV[3])
if ahead > tolerance then
  return string.format('%.0f', ahead - tolerance)
end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil(ahead / 1000) + 1)
return '0'
",
    )
});

static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'n', 't')
local n = tonumber(v[1] or '0')
local t = tonumber(v[2] or ARGV[4])
local now = tonumber(ARGV[2])
local idle = tonumber(ARGV[3])
local last = t
if idle == 0 or now - t <= idle then
  last = math.max(t, now)
end
redis.call('HSET', KEYS[1], 'n', string.format('%.0f', n + tonumber(ARGV[1])), 't', string.format('%.0f', last))
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', tonumber(ARGV[5]) + 1))
return {string.format('%.0f', n), string.format('%.0f', t)}
",
    )
});

fn parse(text: &str) -> Result<u64, RedisError> {
    text.parse()
        .map_err(|_| RedisError::Answer(text.to_owned()))
}

/// Abuse-limit state in Redis, shared by every instance.
#[derive(Debug, Clone)]
pub struct RedisQuotas {
    redis: Redis,
    counts: Arc<SessionCounts>,
}

impl RedisQuotas {
    /// Quotas on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            counts: Arc::default(),
        }
    }

    /// Forgets the session count of one client (after `session-crypto revoke`).
    ///
    /// # Errors
    /// [`RedisError`].
    pub async fn forget_client(&self, client_id: &str) -> Result<(), RedisError> {
        let key = keys::client_sessions(client_id);
        self.redis
            .run("DEL cs", |mut c| async move {
                redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await
            })
            .await
    }
}

impl RedisQuotas {
    /// [`Quotas::touch`] without an idle timeout: only the encryption count.
    async fn count(
        &self,
        session: &SessionRecord,
        uses: u64,
        now_ms: u64,
    ) -> Result<Usage, StoreError> {
        let k = keys::encryptions(&session.id);
        let expires = session.expires_at_ms.saturating_add(1);
        let answer = self
            .redis
            .run("INCRBY enc", |mut c| async move {
                let total: u64 = redis::cmd("INCRBY")
                    .arg(&k)
                    .arg(uses)
                    .query_async(&mut c)
                    .await?;
                if total == uses {
                    redis::cmd("PEXPIREAT")
                        .arg(&k)
                        .arg(expires)
                        .query_async::<()>(&mut c)
                        .await?;
                }
                Ok(total)
            })
            .await;
        match answer {
            Err(e) => Err(e.into()),
            Ok(total) => Ok(Usage {
                uses: total.saturating_sub(uses),
                // Not tracked without an idle timeout.
                last_used_ms: now_ms,
            }),
        }
    }
}

impl Quotas for RedisQuotas {
    async fn rate(
        &self,
        key: &str,
        limit: RateLimit,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        let k = keys::rate(key);
        let answer = self
            .redis
            .run("EVALSHA rate", |mut c| async move {
                let mut call = RATE.key(k);
                call.arg(now_ms.saturating_mul(1000))
                    .arg(limit.emission_interval_us())
                    .arg(limit.tolerance_us());
                call.invoke_async::<String>(&mut c).await
            })
            .await;
        match answer {
            Err(e) => Err(e.into()),
            Ok(text) => match parse(&text).map_err(StoreError::from)? {
                0 => Ok(RateDecision::Allowed),
                wait_us => Ok(RateDecision::Limited {
                    retry_after_ms: wait_us.div_ceil(1000).max(1),
                }),
            },
        }
    }

    async fn reserve_session(&self, r: Reservation<'_>) -> Result<bool, StoreError> {
        self.counts
            .reserve(&self.redis, r.client_id, r.expires_at_ms, r.cap)
            .map_err(StoreError::from)
    }

    async fn release_session(
        &self,
        client_id: &str,
        session_id: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        let _ = session_id;
        self.counts.release(client_id, expires_at_ms);
        Ok(())
    }

    async fn touch(
        &self,
        session: &SessionRecord,
        uses: u64,
        now_ms: u64,
        idle_ms: u64,
    ) -> Result<Usage, StoreError> {
        if idle_ms == 0 {
            return self.count(session, uses, now_ms).await;
        }
        let k = keys::last_use(&session.id);
        let (created, expires) = (session.created_at_ms, session.expires_at_ms);
        let answer = self
            .redis
            .run("EVALSHA touch", |mut c| async move {
                let mut call = TOUCH.key(k);
                call.arg(uses)
                    .arg(now_ms)
                    .arg(idle_ms)
                    .arg(created)
                    .arg(expires);
                call.invoke_async::<(String, String)>(&mut c).await
            })
            .await;
        match answer {
            Err(e) => Err(e.into()),
            Ok((n, t)) => Ok(Usage {
                uses: parse(&n).map_err(StoreError::from)?,
                last_used_ms: parse(&t).map_err(StoreError::from)?,
            }),
        }
    }
}
