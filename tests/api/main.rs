//! End-to-end tests of the HTTP API: the real binary on a random port, driven over HTTP by
//! the project's own client (docs/PROTOCOL.md §8.1, §5.2, §5.5, §8 and the §14 fixes). One
//! module per area; `support::Server` is the shared helper that spawns the app.

#[path = "../support/mod.rs"]
mod support;

mod attacks;
mod bench_open;
mod browser;
mod client_connections;
mod client_library;
mod config;
mod connections;
mod cors;
mod docs;
mod exactly_once;
mod exchange;
mod gateway;
mod gateway_budget;
mod gateway_config;
mod gateway_headers;
mod gateway_refusals;
mod gateway_tls;
mod helpers;
mod init;
mod interop;
mod key_rotation;
mod lifecycle;
mod limits;
mod observability;
mod packaging;
mod python;
mod revoke;
mod sealed_refusals;
mod tls;
mod typescript;
mod v1;
mod v2;
mod v2_bindings;
