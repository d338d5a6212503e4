//! # session-crypto (app) — the composition root
//!
//! Configuration (defaults, TOML file, environment, flags), crypto backend choice,
//! wiring of adapters into the service, and the `session-crypto` binary's subcommands:
//! `serve`, `check-config`, `client`, `bench`, `backends`, `migrate`, `keygen`,
//! `revoke`. May depend on everything; nothing depends on it.

pub mod admin_cmd;
pub mod backend;
pub mod bench;
pub mod bench_gateway;
pub mod bench_open;
pub mod client_args;
pub mod client_cmd;
pub mod config;
pub mod error;
pub mod gateway_settings;
pub mod identity;
pub mod layered;
pub mod redis_settings;
pub mod serve;
pub mod settings;
pub mod stores;

pub use error::Error;
