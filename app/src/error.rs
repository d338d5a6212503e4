//! The application's error: what went wrong at start-up or in a command, with a
//! message for the operator that names the setting, file or dependency at fault.

use std::net::SocketAddr;

use http_adapter::tls::TlsError;
use postgres_adapter::PgError;
use redis_adapter::RedisError;

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid, or settings contradict each other (the message names them).
    #[error("{0}")]
    Config(String),
    /// Redis could not be set up or answered with an error.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// PostgreSQL could not be set up (pool, migrations).
    #[error(transparent)]
    Postgres(#[from] PgError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({setting}): {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The settings that chose it.
        setting: &'static str,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A client tool failed (`client`, `bench`).
    #[error(transparent)]
    Client(#[from] session_crypto_cli::Error),
    /// The process could not do its work (runtime, random numbers, a store command).
    #[error("{0}")]
    Runtime(String),
}

/// Settings are checked with messages built as text; they are configuration errors.
impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::Config(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::Config(message.to_owned())
    }
}

/// The result of a command.
pub type Result<T, E = Error> = std::result::Result<T, E>;
