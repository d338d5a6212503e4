//! The settings of the two client-side subcommands, `client` and `bench` (the server's
//! are in the binary's `app/src/config.rs`, which embeds these).

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
    /// Protocol 1 against a server that does not mark its answers' nonces with `rsp_`
    /// (the reference server): accept them. Without it such answers are refused, since
    /// in v1 a request sent back could pass for its answer.
    #[arg(long)]
    pub unmarked_v1_answers: bool,
    /// v2: the server's signing public keys to pin — a file of PEM blocks (from
    /// `keygen --signing`) or lines of base64 (`publicKey` of GET
    /// /.well-known/session-crypto); during a rotation, the current and the next key.
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
    /// Protocol 1 against a server that does not mark its answers' nonces with `rsp_`
    /// (the reference server): accept them. Without it such answers are refused, since
    /// in v1 a request sent back could pass for its answer.
    #[arg(long)]
    pub unmarked_v1_answers: bool,
    /// PID of a server on this machine: report its CPU time per flow (from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Runtime worker threads for the load generator (default: one per CPU).
    #[arg(long)]
    pub worker_threads: Option<usize>,
    /// Gateway mode: instead of init + purchase flows, send -n encrypted POSTs to this
    /// gateway path (e.g. /api/echo) over one session per worker, and as many
    /// purchases, in alternating rounds; reports the gateway's CPU per request against
    /// the purchase route's.
    #[arg(long)]
    pub gateway: Option<String>,
    /// Gateway mode: the same upstream called directly (e.g. http://127.0.0.1:9000/echo),
    /// in the same rounds, for the latency the gateway adds.
    #[arg(long, requires = "gateway")]
    pub direct: Option<String>,
    /// Gateway mode: PID of the upstream, to report its CPU per request too.
    #[arg(long, requires = "gateway")]
    pub upstream_pid: Option<u32>,
    /// Open loop: schedule this many flows per second, whatever the server does, with
    /// latencies from each flow's scheduled start (HDR percentiles) and the flows that
    /// could not start on time; 0 = closed loop (each connection sends its next flow
    /// when the last one is answered). Gateway mode: pace every phase to this many
    /// requests per second in all.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Open loop: run this long (s) instead of -n flows.
    #[arg(long = "duration", value_name = "SECONDS")]
    pub duration_sec: Option<f64>,
    /// Open loop: write the whole report to this file as JSON instead of printing it.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Gateway mode: rounds of (direct, purchase, gateway); medians are reported.
    #[arg(long, default_value_t = 3, requires = "gateway")]
    pub rounds: usize,
}
