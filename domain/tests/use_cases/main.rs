//! The use cases end to end on the memory stores, the pure-Rust backend and a fake
//! clock, one module per use case.

mod exchange;
mod helpers;
mod init;
mod keys;
mod limits;
mod release;
mod revoke;
mod routes;
mod v2;
