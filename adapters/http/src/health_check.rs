//! What `/health` and `/ready` report about the stores.

use std::future::Future;

/// The state of one dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// Configured and answering.
    Up,
    /// Configured and not answering.
    Down,
    /// Not configured (embedded stores).
    Disabled,
}

impl Dependency {
    /// `/health` wording (docs/PROTOCOL.md §8).
    pub fn health_word(self) -> &'static str {
        match self {
            Self::Up => "ok",
            Self::Down => "disconnected",
            Self::Disabled => "disabled",
        }
    }
}

/// A snapshot for `/health` and `/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthReport {
    /// `"memory"` or `"postgres"`: where sessions live.
    pub session_store: &'static str,
    /// PostgreSQL.
    pub postgres: Dependency,
    /// Redis.
    pub redis: Dependency,
    /// Whether the nonce store in use refuses new claims because it is full (every
    /// encrypted request then fails closed until nonces expire).
    pub nonces_full: bool,
    /// Whether the embedded session store is full (every init then fails with 503).
    pub sessions_full: bool,
}

/// Probes the dependencies.
pub trait HealthCheck: Send + Sync + 'static {
    /// A fresh report. MUST answer promptly even when a dependency hangs.
    fn report(&self) -> impl Future<Output = HealthReport> + Send;
}
