//! # session-crypto (app) — the composition root
//!
//! Configuration (flags and environment), crypto backend choice, wiring of adapters
//! into the service, and the `session-crypto` binary's subcommands: `serve`, `client`,
//! `bench`, `backends`. May depend on everything; nothing depends on it.

pub mod backend;
pub mod bench;
pub mod client_cmd;
pub mod config;
pub mod serve;
pub mod stores;
