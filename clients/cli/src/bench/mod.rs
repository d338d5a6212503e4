//! `session-crypto bench`: the load generator. Three modes over one set of settings
//! ([`BenchArgs`]): the closed loop (`closed.rs`), the open loop at a fixed rate
//! (`--rate`, `open.rs`, its report in `open_report.rs`) and the gateway's cost against the purchase route's
//! (`--gateway`, `gateway.rs`); `common.rs` holds what they share.

use std::sync::Arc;

use ports::CryptoProvider;
use session_crypto_client::Endpoint;

use crate::args::BenchArgs;

mod closed;
mod common;
mod gateway;
pub mod open;
pub mod open_report;

pub use common::{Summary, summarize};

/// Runs the mode the settings ask for and prints its report.
///
/// # Errors
/// A message for the user.
pub async fn run(args: BenchArgs, crypto: CryptoProvider) -> Result<(), crate::Error> {
    if args.gateway.is_some() {
        gateway::run(args, crypto).await
    } else if args.rate > 0 {
        open::run(args, crypto).await
    } else {
        closed::run(args, crypto).await
    }
}

/// The server the benchmark modes load (`--url`, `--ca-file`).
pub(crate) fn endpoint(
    args: &BenchArgs,
    crypto: CryptoProvider,
) -> Result<Arc<Endpoint>, crate::Error> {
    crate::client::endpoint(&args.url, args.ca_file.as_deref(), crypto).map(Arc::new)
}
