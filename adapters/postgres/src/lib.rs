//! # postgres-adapter — PostgreSQL, the source of truth for sessions
//!
//! A [`SessionStore`] on diesel-async over a deadpool pool. Session keys are stored only
//! wrapped ([`domain::keywrap`]). Concurrent inserts are grouped into one statement —
//! one commit — while earlier batches are in flight (group commit: every
//! session is durable before its init is answered, but commits are shared). The table
//! is partitioned by expiry: [`PgSessionStore::spawn_cleanup`] creates partitions
//! ahead and drops expired ones whole; expired rows are also removed lazily on lookup
//! (by the domain). Migrations from the repository's `migrations/`
//! are embedded.
//!
//! May depend on: `ports`, `domain`, diesel and friends. Not on other adapters.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

mod cleanup;
mod fence;
mod group_commit;
mod nonces;
mod partitions;
mod setup;

pub use cleanup::Partitioning;
pub use fence::{FencePoll, FenceRow};
pub use nonces::PgNonceStore;
pub use setup::{MIGRATIONS, PgError, Pool, pool, run_migrations};

use group_commit::{InsertJob, batch_writer};

use domain::keywrap::KeyWrapper;
use ports::{Protocol, SessionKind, SessionRecord, SessionStore, StoreError};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

diesel::table! {
    /// The `sessions` table (see `migrations/`).
    sessions (session_id) {
        session_id -> Varchar,
        wrapped_key -> Bytea,
        kek_id -> Varchar,
        session_type -> Varchar,
        client_id -> Varchar,
        principal -> Nullable<Varchar>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        protocol -> SmallInt,
    }
}

/// A session row on its way into the table (see [`InsertBatch`]).
#[derive(Debug)]
struct NewSession {
    session_id: String,
    wrapped_key: Vec<u8>,
    kek_id: String,
    session_type: &'static str,
    client_id: String,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    protocol: i16,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = sessions)]
struct Row {
    session_id: String,
    wrapped_key: Vec<u8>,
    kek_id: String,
    session_type: String,
    client_id: String,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    protocol: i16,
}

/// Connection and pool settings.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/db`.
    pub url: String,
    /// Pool size.
    pub pool_size: usize,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout` of every pooled connection.
    pub statement_timeout: Duration,
    /// Client-side bound on any whole operation (pool wait + query).
    pub operation_timeout: Duration,
    /// Most rows per grouped insert.
    pub max_insert_batch: usize,
    /// Grouped inserts in flight at once. Fewer writers make bigger groups (less
    /// database CPU per session); more writers lower latency under light load.
    pub insert_writers: usize,
}

fn ms(t: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn epoch_ms(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The PostgreSQL session store. Cheap to clone.
#[derive(Clone)]
pub struct PgSessionStore {
    pool: Pool,
    wrapper: Arc<KeyWrapper>,
    inserts: mpsc::Sender<InsertJob>,
    operation_timeout: Duration,
    /// `PG_READ_URL`: where lookups go first.
    read_pool: Option<Pool>,
}

impl std::fmt::Debug for PgSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSessionStore")
            .field("status", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl PgSessionStore {
    /// A store over `pool`, wrapping keys with `wrapper`. Spawns the insert batcher.
    pub fn new(pool: Pool, wrapper: Arc<KeyWrapper>, config: &PgConfig) -> Self {
        let (tx, rx) = mpsc::channel(8192);
        let writers = config.insert_writers.clamp(1, config.pool_size.max(1));
        tokio::spawn(batch_writer(
            pool.clone(),
            rx,
            config.max_insert_batch.max(1),
            writers,
            config.operation_timeout,
        ));
        Self {
            pool,
            wrapper,
            inserts: tx,
            operation_timeout: config.operation_timeout,
            read_pool: None,
        }
    }

    async fn timed<T, F>(&self, what: &str, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        tokio::time::timeout(self.operation_timeout, fut)
            .await
            .map_err(|_| StoreError::Unavailable(format!("postgres {what}: timed out")))?
    }

    /// `SELECT 1` through the pool.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", async {
            let mut conn = self.pool.get().await.map_err(unavailable)?;
            diesel::sql_query("SELECT 1")
                .execute(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    /// Pool counters: (size, available, waiting).
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let s = self.pool.status();
        (s.size, s.available, s.waiting)
    }

    /// Deletes every session of `client_id`; returns their ids.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn delete_client_sessions(&self, client_id: &str) -> Result<Vec<String>, StoreError> {
        self.timed("revoke", async {
            let mut conn = self.pool.get().await.map_err(unavailable)?;
            diesel::delete(sessions::table.filter(sessions::client_id.eq(client_id)))
                .returning(sessions::session_id)
                .get_results::<String>(&mut conn)
                .await
                .map_err(unavailable)
        })
        .await
    }

    /// The row of session `id`; `None` for an id stored twice (see the
    /// [`SessionStore`] contract: inserts do not look for one, lookups refuse it).
    async fn find(&self, pool: &Pool, id: &str) -> Result<Option<Row>, StoreError> {
        let mut rows = self
            .timed("get", async {
                let mut conn = pool.get().await.map_err(unavailable)?;
                sessions::table
                    .find(id)
                    .select(Row::as_select())
                    .limit(2)
                    .load::<Row>(&mut conn)
                    .await
                    .map_err(unavailable)
            })
            .await?;
        if rows.len() > 1 {
            error!(session = %id.get(..10).unwrap_or("?"), "a session id is stored twice; neither is served");
            return Ok(None);
        }
        Ok(rows.pop())
    }

    /// Reads sessions from `replica` first (`PG_READ_URL`), from the primary when the
    /// replica has no such session or fails.
    #[must_use]
    pub fn with_read_replica(mut self, replica: Pool) -> Self {
        self.read_pool = Some(replica);
        self
    }

    fn to_record(&self, row: Row) -> Option<SessionRecord> {
        let Some(protocol) = u64::try_from(row.protocol)
            .ok()
            .and_then(Protocol::from_number)
        else {
            error!(session = %row.session_id.get(..10).unwrap_or("?"), protocol = row.protocol, "stored session has an unknown protocol version");
            return None;
        };
        let keys = match self.wrapper.unwrap(
            &row.session_id,
            &row.kek_id,
            protocol,
            &row.wrapped_key,
        ) {
            Ok(keys) => keys,
            Err(e) => {
                // Never usable: a moved/tampered row or a retired KEK. Loud, but the
                // client only sees an unknown session.
                error!(session = %row.session_id.get(..10).unwrap_or("?"), kek_id = %row.kek_id, error = %e, "stored session key does not unwrap");
                return None;
            }
        };
        let kind = if row.session_type == SessionKind::Authenticated.as_str() {
            SessionKind::Authenticated
        } else {
            SessionKind::Anonymous
        };
        // The row's wrap, for a cache refill to reuse.
        let at_rest = ports::AtRest::default();
        at_rest.remember(ports::WrappedKeys {
            session_id: row.session_id.clone(),
            protocol,
            kek_id: row.kek_id,
            bytes: row.wrapped_key,
        });
        Some(SessionRecord {
            id: row.session_id,
            keys,
            kind,
            client_id: row.client_id,
            created_at_ms: epoch_ms(row.created_at),
            expires_at_ms: epoch_ms(row.expires_at),
            at_rest,
        })
    }
}

impl SessionStore for PgSessionStore {
    async fn insert(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let wrapped = self
            .wrapper
            .wrap_record(record)
            .map_err(|_| unavailable("key wrapping failed"))?;
        let row = NewSession {
            session_id: record.id.clone(),
            wrapped_key: wrapped.bytes,
            kek_id: wrapped.kek_id,
            session_type: record.kind.as_str(),
            client_id: record.client_id.clone(),
            created_at: ms(record.created_at_ms),
            expires_at: ms(record.expires_at_ms),
            protocol: i16::from(record.keys.protocol().number()),
        };
        let (done, wait) = oneshot::channel();
        self.inserts
            .send(InsertJob { row, done })
            .await
            .map_err(|_| unavailable("insert batcher stopped"))?;
        self.timed("insert", async {
            wait.await.map_err(|_| unavailable("insert dropped"))?
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        // A replica may lag: what it does not have (yet), or cannot say, is asked of
        // the primary. (What it still has after a revocation is kept out by the
        // cache's tombstone; see the README.)
        if let Some(replica) = &self.read_pool
            && let Ok(Some(row)) = self.find(replica, id).await
        {
            return Ok(self.to_record(row));
        }
        Ok(self
            .find(&self.pool, id)
            .await?
            .and_then(|r| self.to_record(r)))
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.timed("delete", async {
            let mut conn = self.pool.get().await.map_err(unavailable)?;
            diesel::delete(sessions::table.find(id))
                .execute(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}
