//! The one-shot admin commands, `session-crypto migrate` and `session-crypto revoke`,
//! and their settings.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use domain::keywrap::KeyWrapper;
use ports::CryptoProvider;

use crate::redis_settings::RedisArgs;
use postgres_adapter::{PgConfig, PgSessionStore};
use redis_adapter::{Redis, RedisQuotas, RedisSessionCache};

/// `revoke` settings.
#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// The X-ClientId whose sessions end.
    #[arg(long)]
    pub client_id: String,
    /// PostgreSQL URL (the sessions' source of truth).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Redis (the session cache), if the servers use one.
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// `migrate` settings.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
}

/// One connection with generous timeouts, for the one-shot admin commands.
fn admin_pg_config(url: &str) -> PgConfig {
    PgConfig {
        url: url.to_owned(),
        pool_size: 1,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(60),
        operation_timeout: Duration::from_secs(60),
        max_insert_batch: 1,
        insert_writers: 1,
    }
}

/// `session-crypto migrate`.
///
/// # Errors
/// A message for the user.
pub async fn migrate(url: &str) -> Result<(), crate::Error> {
    let config = admin_pg_config(url);
    let applied = postgres_adapter::run_migrations(&postgres_adapter::pool(&config)?).await?;
    if applied.is_empty() {
        println!("database is up to date");
    }
    for v in applied {
        println!("applied migration {v}");
    }
    Ok(())
}

/// `session-crypto revoke --client-id ID`: deletes the client's sessions from
/// PostgreSQL, then their Redis cache entries.
///
/// # Errors
/// A message for the user.
pub async fn revoke(args: &RevokeArgs, crypto: CryptoProvider) -> Result<(), crate::Error> {
    let url = args.database_url.as_deref().ok_or(
        "revoke needs DATABASE_URL: embedded (in-memory) sessions live inside the server process, \
         end them by restarting it",
    )?;
    let config = admin_pg_config(url);
    // Deleting needs no key-wrapping key; a throwaway one satisfies the store's constructor.
    let wrapper =
        Arc::new(KeyWrapper::new(crypto, [0; 32], vec![]).map_err(|_| "crypto backend failure")?);
    let pg = PgSessionStore::new(
        postgres_adapter::pool(&config)?,
        Arc::clone(&wrapper),
        &config,
    );
    let ids = pg
        .delete_client_sessions(&args.client_id)
        .await
        .map_err(|e| crate::Error::Runtime(e.to_string()))?;
    if let Some(config) = crate::redis_settings::redis_config(
        &args.redis,
        crypto,
        Duration::from_secs(5),
        Duration::from_millis(100),
    )? {
        let redis = Redis::new(&config)?;
        RedisSessionCache::new(redis.clone(), wrapper)
            .delete_many(&ids)
            .await
            .map_err(|e| {
                crate::Error::Runtime(format!(
                    "sessions deleted from PostgreSQL, but not from the Redis cache: {e}"
                ))
            })?;
        RedisQuotas::new(redis)
            .forget_client(&args.client_id)
            .await
            .map_err(|e| {
                crate::Error::Runtime(format!(
                    "sessions deleted, but their count (MAX_SESSIONS_PER_CLIENT) was not reset: {e}"
                ))
            })?;
    }
    println!(
        "revoked {} session(s) of client id {:?}",
        ids.len(),
        args.client_id
    );
    Ok(())
}
