//! # session-crypto (app) — the composition root
//!
//! Configuration (defaults, TOML file, environment, flags), crypto backend choice,
//! wiring of adapters into the service, and the `session-crypto` binary's subcommands:
//! `serve`, `check-config`, `backends`, `migrate`, `keygen`, `revoke`, and `client` /
//! `bench`, which are one-line calls into the client tools (`clients/cli`). May depend
//! on everything; nothing depends on it.

pub mod backend;
pub mod config;
pub mod error;
pub mod gateway_settings;
pub mod identity;
pub mod layered;
pub mod operator_commands;
pub mod redis_settings;
pub mod serve;
pub mod settings;
pub mod stores;

pub use error::Error;
