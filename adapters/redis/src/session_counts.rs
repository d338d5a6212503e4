//! Live sessions per client id, shared through Redis without a round trip per init.
//!
//! Redis holds `cs:<clientId>`: a hash of session counts per expiry minute (a minute
//! counts until it has fully passed, so the count can run up to one minute's worth of
//! sessions high — the cap is a generous ceiling, not an exact quota). Each instance
//! keeps, per client it has seen lately, the live total Redis reported at the last
//! sync and its own changes since, and decides locally; a background task pushes the
//! changes and reads the totals back every [`FLUSH_INTERVAL`] (and re-reads the
//! totals of clients in use every [`REFRESH`], so expiries and revocations elsewhere
//! are seen). The cap can therefore
//! be overshot by what the instances admit within one interval — in exchange for a
//! Redis round trip per client per interval instead of one per init (which cost about
//! a fifth of the stores-mode throughput). While Redis is unreachable the changes
//! wait, and each instance counts what it sees.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::{Redis, RedisError, keys};

/// How often pending changes are pushed to Redis.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// How often the total of a client near its cap is re-read even without changes (so
/// expiries and other instances' sessions and revocations are seen).
const REFRESH: Duration = Duration::from_millis(500);
/// How long a client nobody here has used is remembered.
const FORGET_AFTER: Duration = Duration::from_secs(10);
/// Most clients remembered at once.
const MAX_CLIENTS: usize = 1_000_000;
/// Width of the expiry buckets.
const BUCKET_MS: u64 = 60_000;

#[derive(Debug, Default)]
struct ClientCount {
    /// Live total in Redis at the last sync (our flushed changes included).
    redis_live: i64,
    /// When Redis last answered for this client.
    synced: Option<Instant>,
    /// When this instance last decided for this client.
    used: Option<Instant>,
    /// The cap of the last decision.
    cap: i64,
    /// Buckets found expired at the last read.
    expired: Vec<u64>,
    /// Expiry bucket → change not yet in Redis.
    pending: HashMap<u64, i64>,
    /// Changes on their way to Redis (taken out of `pending` by a flush that has not
    /// answered yet): still counted, or a decision during the flush would miss them.
    in_flight: i64,
}

impl ClientCount {
    fn live(&self) -> i64 {
        self.redis_live + self.in_flight + self.pending.values().sum::<i64>()
    }
    /// Whether the next flush must include this client: it has changes, or it is at
    /// least half-way to its cap and its total is older than [`REFRESH`] (clients far
    /// below the cap need no fresh total).
    fn due(&self) -> bool {
        self.pending.values().any(|d| *d != 0)
            || (self.live().saturating_mul(2) >= self.cap
                && self.synced.is_none_or(|s| s.elapsed() >= REFRESH))
    }
}

type Table = Mutex<HashMap<String, ClientCount>>;

fn lock(table: &Table) -> std::sync::MutexGuard<'_, HashMap<String, ClientCount>> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one flush sends for one client.
struct Sync {
    client_id: String,
    changes: Vec<(u64, i64)>,
    /// Buckets seen expired at the last read, to delete.
    expired: Vec<u64>,
}

/// Pushes every client's changes and reads every client's buckets back, in one
/// pipeline (one per client on a Redis Cluster, where a pipeline stays in one slot).
/// Returns, per client, the live total and the expired buckets.
async fn sync(
    redis: &Redis,
    batch: &[Sync],
    now_ms: u64,
) -> Result<Vec<(i64, Vec<u64>)>, RedisError> {
    let read: Vec<Vec<(u64, i64)>> = if redis.is_cluster() {
        let each = batch.iter().map(|item| async move {
            let p = pipeline(std::slice::from_ref(item));
            let mut one: Vec<Vec<(u64, i64)>> = redis
                .run("HINCRBY/HGETALL cs", |mut c| async move {
                    p.query_async(&mut c).await
                })
                .await?;
            Ok::<_, RedisError>(one.pop().unwrap_or_default())
        });
        futures_util::future::try_join_all(each).await?
    } else {
        let p = pipeline(batch);
        redis
            .run("HINCRBY/HGETALL cs", |mut c| async move {
                p.query_async(&mut c).await
            })
            .await?
    };
    Ok(read
        .into_iter()
        .map(|buckets| {
            let live = buckets
                .iter()
                .filter(|(b, _)| (b + 1) * BUCKET_MS > now_ms)
                .map(|(_, n)| n)
                .sum();
            let expired = buckets
                .iter()
                .filter(|(b, _)| (b + 1) * BUCKET_MS <= now_ms)
                .map(|(b, _)| *b)
                .collect();
            (live, expired)
        })
        .collect())
}

/// The commands of one flush: per client, the changes, the expiry, and a read back.
fn pipeline(batch: &[Sync]) -> redis::Pipeline {
    let mut p = redis::pipe();
    for item in batch {
        let key = keys::client_sessions(&item.client_id);
        for (bucket, delta) in &item.changes {
            p.cmd("HINCRBY").arg(&key).arg(bucket).arg(delta).ignore();
        }
        if let Some(expiry) = item.changes.iter().map(|(b, _)| (b + 1) * BUCKET_MS).max() {
            for flag in ["NX", "GT"] {
                p.cmd("PEXPIREAT").arg(&key).arg(expiry).arg(flag).ignore();
            }
        }
        if !item.expired.is_empty() {
            p.cmd("HDEL").arg(&key).arg(&item.expired).ignore();
        }
        p.cmd("HGETALL").arg(&key);
    }
    p
}

/// The per-instance view of the shared counts.
#[derive(Debug, Default)]
pub(crate) struct SessionCounts {
    table: Arc<Table>,
    flusher: std::sync::OnceLock<()>,
}

impl SessionCounts {
    /// Admits a session expiring at `expires_at_ms` unless the client holds `cap`,
    /// by this instance's view. A client this instance has not seen lately counts as
    /// holding only what it admitted here until the next flush reads the shared total
    /// — so the cap can be overshot by one flush interval's worth of inits.
    /// `Err` when the table is full (the caller falls back, failing closed).
    pub(crate) fn reserve(
        &self,
        redis: &Redis,
        client_id: &str,
        expires_at_ms: u64,
        cap: u64,
    ) -> Result<bool, RedisError> {
        self.start_flusher(redis);
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        let mut table = lock(&self.table);
        if !table.contains_key(client_id) && table.len() >= MAX_CLIENTS {
            return Err(RedisError::CountTableFull);
        }
        let count = table.entry(client_id.to_owned()).or_default();
        count.used = Some(Instant::now());
        count.cap = cap;
        if count.live() >= cap {
            return Ok(false);
        }
        *count.pending.entry(expires_at_ms / BUCKET_MS).or_default() += 1;
        Ok(true)
    }

    /// Withdraws one session (revoked, or its creation failed).
    pub(crate) fn release(&self, client_id: &str, expires_at_ms: u64) {
        let mut table = lock(&self.table);
        let count = table.entry(client_id.to_owned()).or_default();
        *count.pending.entry(expires_at_ms / BUCKET_MS).or_default() -= 1;
    }

    fn start_flusher(&self, redis: &Redis) {
        self.flusher.get_or_init(|| {
            let table = Arc::downgrade(&self.table);
            let redis = redis.clone();
            tokio::spawn(flush_loop(table, redis));
        });
    }
}

async fn flush_loop(table: Weak<Table>, redis: Redis) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(table) = table.upgrade() else { return };
        let batch: Vec<Sync> = {
            let mut t = lock(&table);
            // Forget clients unused for a while, so the table stays small.
            t.retain(|_, c| {
                c.in_flight != 0
                    || c.pending.values().any(|d| *d != 0)
                    || c.used.is_some_and(|u| u.elapsed() < FORGET_AFTER)
            });
            t.iter_mut()
                .filter(|(_, c)| c.due())
                .map(|(id, c)| {
                    let changes: Vec<(u64, i64)> =
                        c.pending.drain().filter(|(_, d)| *d != 0).collect();
                    c.in_flight += changes.iter().map(|(_, d)| d).sum::<i64>();
                    Sync {
                        client_id: id.clone(),
                        changes,
                        expired: std::mem::take(&mut c.expired),
                    }
                })
                .collect()
        };
        if batch.is_empty() {
            continue;
        }
        let result = sync(&redis, &batch, crate::now_ms()).await;
        let mut t = lock(&table);
        match result {
            Ok(totals) => {
                for (item, (live, expired)) in batch.into_iter().zip(totals) {
                    let count = t.entry(item.client_id).or_default();
                    // The total read back includes what this flush pushed.
                    count.in_flight -= item.changes.iter().map(|(_, d)| d).sum::<i64>();
                    count.redis_live = live;
                    count.expired = expired;
                    count.synced = Some(Instant::now());
                }
            }
            Err(_) => {
                // Keep the changes for the next round.
                for item in batch {
                    let count = t.entry(item.client_id).or_default();
                    count.in_flight -= item.changes.iter().map(|(_, d)| d).sum::<i64>();
                    for (bucket, delta) in item.changes {
                        *count.pending.entry(bucket).or_default() += delta;
                    }
                }
            }
        }
    }
}
