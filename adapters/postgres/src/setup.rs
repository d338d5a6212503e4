//! Setting PostgreSQL up: the connection pool (a statement timeout on every
//! connection) and the embedded migrations, applied under an advisory lock.

use diesel::result::ConnectionError;
use diesel::sql_types::BigInt;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::PgConfig;

/// Setting up PostgreSQL failed: the pool, or the migrations.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The settings cannot make a pool.
    #[error("DATABASE_URL: cannot build the connection pool: {0}")]
    Pool(String),
    /// No connection could be had.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// The advisory lock that serialises migrations.
    #[error("migration lock: {0}")]
    Lock(String),
    /// A migration failed.
    #[error("migrations failed: {0}")]
    Migrations(String),
}

/// The connection pool type.
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;

/// The embedded migrations (`migrations/` at the repository root).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Builds the pool. No connection is made until first use, so the service starts (and
/// answers 503) while the database is down.
///
/// # Errors
/// [`PgError::Pool`] when the settings cannot make a pool.
pub fn pool(config: &PgConfig) -> Result<Pool, PgError> {
    let statement_ms = config.statement_timeout.as_millis();
    let connect_timeout = config.connect_timeout;
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    // A pooled connection is handed out without a `SELECT 1` first (one round trip and
    // one transaction per checkout, the second commit of every sequential init): one
    // whose server went away is known by its closed socket (PostgreSQL closes its
    // connections when it stops or restarts) and made anew.
    manager_config.recycling_method = diesel_async::pooled_connection::RecyclingMethod::Fast;
    manager_config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        Box::pin(async move {
            let mut conn =
                tokio::time::timeout(connect_timeout, AsyncPgConnection::establish(&url))
                    .await
                    .map_err(|_| ConnectionError::BadConnection("connect timeout".into()))??;
            conn.batch_execute(&format!("SET statement_timeout = {statement_ms}"))
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        &config.url,
        manager_config,
    );
    Pool::builder(manager)
        .max_size(config.pool_size.max(1))
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(config.operation_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| PgError::Pool(e.to_string()))
}

/// Applies pending migrations (idempotent; serialised across processes by an advisory
/// lock). Returns the versions applied now. Needs a multi-thread Tokio runtime.
///
/// # Errors
/// [`PgError`].
pub async fn run_migrations(pool: &Pool) -> Result<Vec<String>, PgError> {
    const LOCK: i64 = 0x0053_4553_5349_4f4e; // "SESSION"
    let mut conn = pool
        .get()
        .await
        .map_err(|e| PgError::Connect(e.to_string()))?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(LOCK)
        .execute(&mut conn)
        .await
        .map_err(|e| PgError::Lock(e.to_string()))?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let applied = harness
        .run_pending_migrations(MIGRATIONS)
        .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>())
        .map_err(|e| PgError::Migrations(e.to_string()));
    let mut conn = harness.into_inner();
    let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(LOCK)
        .execute(&mut conn)
        .await;
    applied
}
