//! # session-crypto-cli — the client tools of the `session-crypto` binary
//!
//! `session-crypto client` (one init + one purchase with a timing table,
//! [`client::run`]) and `session-crypto bench` (the load generator in closed loop,
//! open loop or gateway mode, [`bench::run`]), with their settings ([`args`]). The
//! echo upstream the gateway's benchmarks forward to is `examples/echo_upstream.rs`.
//!
//! A client of the service like any other: it depends on the client library
//! (`session-crypto-client`), the port types and the backend list only — never on the
//! server's domain, adapters or composition root. The binary (`app`) calls
//! [`client::run`] and [`bench::run`] in one line each.

pub mod args;
pub mod bench;
pub mod client;
mod error;

pub use error::Error;
