//! The settings of the two client-side subcommands, `client` and `bench` (the server's
//! are in `config.rs`).

use clap::Args;

/// `client` settings.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server base URL.
    #[arg(long, env = "SERVER_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// X-ClientId to send.
    #[arg(long, default_value = "RUST_CLIENT")]
    pub client_id: String,
    /// For https:// URLs: PEM file of the CA(s) to trust (default: the system's bundle).
    #[arg(long, env = "CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Create the session with POST /v1/session/init instead of /session/init.
    #[arg(long)]
    pub v1: bool,
    /// Protocol version to speak (docs/PROTOCOL.md).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub protocol: u8,
    /// v2: the server's signing public key to pin (PEM file from `keygen --signing`,
    /// or the `publicKey` of GET /.well-known/session-crypto in a file).
    #[arg(long)]
    pub server_key_file: Option<std::path::PathBuf>,
    /// Purchase scheme code.
    #[arg(long, default_value = "AEF")]
    pub scheme_code: String,
    /// Purchase amount (a JSON number).
    #[arg(long, default_value = "5000")]
    pub amount: String,
}

/// `bench` settings.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Server base URL.
    #[arg(long, env = "SERVER_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// Measured flows (each = one init + one purchase).
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub iterations: usize,
    /// Parallel workers, each on its own keep-alive connection.
    #[arg(long, short = 'c', default_value_t = 1, env = "BENCHMARK_CONCURRENCY")]
    pub concurrency: usize,
    /// Unmeasured warm-up flows before the run.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// X-ClientId to send.
    #[arg(long, default_value = "RUST_BENCH_CLIENT")]
    pub client_id: String,
    /// For https:// URLs: PEM file of the CA(s) to trust (default: the system's bundle).
    #[arg(long, env = "CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Protocol version of the flows.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub protocol: u8,
    /// PID of a server on this machine: report its CPU time per flow (from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Runtime worker threads for the load generator (default: one per CPU).
    #[arg(long)]
    pub worker_threads: Option<usize>,
}
