//! Command line and environment. Every setting has a `--flag` and an environment
//! variable (flags win); `--help` lists them with their defaults.

use std::net::IpAddr;

pub use crate::operator_commands::{MigrateArgs, RevokeArgs};
pub use crate::redis_settings::RedisArgs;
use clap::{Args, Parser, Subcommand};

pub use session_crypto_cli::args::{BenchArgs, ClientArgs};

/// Encrypted, replay-proof application-layer channel (ECDH P-256 + HKDF-SHA256 +
/// AES-256-GCM envelopes) — server, client and load generator.
#[derive(Debug, Parser)]
#[command(name = "session-crypto", version, propagate_version = true)]
pub struct Cli {
    // The backends' names come from the list (crypto-backends).
    #[arg(
        long,
        env = "CRYPTO_BACKEND",
        global = true,
        help = format!(
            "Crypto backend: {} (must be compiled in). Default: the only compiled backend, \
             or the non-default one chosen with --features",
            crypto_backends::names_text("", " or ")
        )
    )]
    pub backend: Option<String>,

    /// Log format on stderr: `text` (human-readable) or `json` (one JSON object per line,
    /// with the request span's fields). Filter with RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// TOML file of settings (keys: the environment-variable names, e.g. `port`,
    /// `database_url`); environment variables and flags override it.
    #[arg(long, env = "SESSION_CRYPTO_CONFIG", global = true)]
    pub config: Option<std::path::PathBuf>,

    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Command,
}

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
    /// Validate the server configuration (file, environment, flags) and print the
    /// effective settings with their sources, secrets redacted; exit 1 if invalid.
    CheckConfig(Box<ServeArgs>),
    /// One init + one purchase against a server, with a timing table.
    Client(ClientArgs),
    /// Load generator: N init + purchase flows at a given concurrency.
    Bench(BenchArgs),
    /// Print the crypto backends compiled into this binary.
    Backends,
    /// Apply the embedded database migrations (DATABASE_URL) and exit.
    Migrate(MigrateArgs),
    /// Print a fresh key-wrapping key (base64 of 32 random bytes) for SESSION_KEK, or
    /// with --signing a P-256 signing key pair for SERVER_SIGNING_KEY_FILE.
    Keygen(KeygenArgs),
    /// End every session of one client id (PostgreSQL, and Redis when set). Running
    /// servers stop accepting them within SESSION_LOCAL_CACHE_MS.
    Revoke(RevokeArgs),
}

/// `keygen` settings.
#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// Print a P-256 signing key pair (private PKCS#8 PEM, public SPKI PEM, key id)
    /// instead of a key-wrapping key.
    #[arg(long)]
    pub signing: bool,
}

/// `serve` settings.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the public listener.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port of the public listener (0 = any free port).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,
    /// Port of the internal listener (whole /v1 family including the raw key release
    /// GET /v1/session/{id}). Off unless set. Private networks only.
    #[arg(long, env = "INTERNAL_PORT")]
    pub internal_port: Option<u16>,
    /// Address of the internal listener.
    #[arg(long, env = "INTERNAL_HOST", default_value = "127.0.0.1")]
    pub internal_host: IpAddr,

    /// PEM certificate chain: with TLS_KEY_FILE, the public and internal listeners speak
    /// HTTPS (TLS 1.2/1.3 with rustls; HTTP/2 by ALPN).
    #[arg(long, env = "TLS_CERT_FILE")]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE")]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Close a connection whose TLS handshake takes longer than this (ms).
    #[arg(long, env = "TLS_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000)]
    pub tls_handshake_timeout_ms: u64,

    /// Port of the admin listener serving GET /metrics (Prometheus). Off unless set;
    /// metrics are only collected when it is on.
    #[arg(long, env = "ADMIN_PORT")]
    pub admin_port: Option<u16>,
    /// Address of the admin listener.
    #[arg(long, env = "ADMIN_HOST", default_value = "127.0.0.1")]
    pub admin_host: IpAddr,

    /// Accepted clock difference of X-Idempotency-Key timestamps (ms, ≥ 1000).
    #[arg(long, env = "TIMESTAMP_WINDOW_MS", default_value_t = 300_000)]
    pub timestamp_window_ms: u64,
    /// How long a used nonce is remembered (s); must be ≥ 2 × the window.
    #[arg(long, env = "NONCE_TTL_SEC", default_value_t = 600)]
    pub nonce_ttl_sec: u64,

    /// Shortest session lifetime on /session/init (s); shorter requests are raised to it.
    #[arg(long, env = "SESSION_TTL_MIN_SEC", default_value_t = 300)]
    pub session_ttl_min_sec: u64,
    /// Longest session lifetime on /session/init (s); longer requests are lowered to it.
    #[arg(long, env = "SESSION_TTL_MAX_SEC", default_value_t = 3600)]
    pub session_ttl_max_sec: u64,
    /// Lifetime on /session/init when the body has no ttlSec (s).
    #[arg(long, env = "SESSION_TTL_DEFAULT_SEC", default_value_t = 1800)]
    pub session_ttl_default_sec: u64,
    /// Lifetime of /v1 sessions without trusted Authorization (s).
    #[arg(long, env = "SESSION_TTL_ANONYMOUS_SEC", default_value_t = 1800)]
    pub session_ttl_anonymous_sec: u64,
    /// Lifetime of /v1 sessions with trusted Authorization (s).
    #[arg(long, env = "SESSION_TTL_AUTHENTICATED_SEC", default_value_t = 3600)]
    pub session_ttl_authenticated_sec: u64,
    /// Trust that a gateway in front verified Authorization; only then does its presence
    /// on /v1/session/init select the authenticated lifetime.
    #[arg(long, env = "TRUST_UPSTREAM_AUTH", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_upstream_auth: bool,

    /// Memory for the embedded nonce store (bytes, about 64 per live nonce): the default
    /// 256 MiB holds about 4 million, enough for ~7,000 requests/s sustained with the
    /// default TTL. When full, requests are refused (fail closed) until nonces expire.
    #[arg(long, env = "MEMORY_NONCE_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub memory_nonce_max_bytes: usize,
    /// The share of the embedded nonce store one client id may hold (percent): one
    /// client filling it is refused alone, and the others keep the rest.
    #[arg(long, env = "MEMORY_NONCE_CLIENT_SHARE_PERCENT", default_value_t = 50)]
    pub memory_nonce_client_share_percent: usize,
    /// Most live nonces the embedded store holds, instead of sizing it by memory.
    #[arg(long, env = "MEMORY_NONCE_MAX_SIZE")]
    pub memory_nonce_max_size: Option<usize>,
    /// Deprecated and ignored: the reference server's sweep threshold. The embedded
    /// nonce store drops expired nonces as it goes; accepted so that deployments
    /// written for the reference start, with a warning.
    #[arg(long, env = "MEMORY_NONCE_CLEANUP_THRESHOLD", hide = true)]
    pub memory_nonce_cleanup_threshold: Option<String>,
    /// Most sessions the embedded store holds (about 200 bytes each); when full of live
    /// sessions, init → 503.
    #[arg(long, env = "MEMORY_SESSION_MAX_SIZE", default_value_t = 2_000_000)]
    pub memory_session_max_size: usize,

    /// Largest request body (bytes); larger → 413.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1_048_576)]
    pub body_limit_bytes: usize,
    /// Request bytes buffered at once across all requests; a body that would go past
    /// it → 503 (0 = no bound). HTTP/2 lets one client send many bodies at once.
    #[arg(long, env = "BODY_BUFFER_BUDGET_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub body_buffer_budget_bytes: usize,
    /// Time allowed to receive a request body (ms); slower → 408.
    #[arg(long, env = "BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,
    /// Time allowed to receive request headers (ms): a new connection must complete
    /// its first request head within it from accept (whatever it sends meanwhile), and
    /// HTTP/1.1 keep-alive connections their next one; slower → connection closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Concurrent connections per listener; more wait in the kernel's accept queue.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Concurrent connections from one client address; more are closed at once. Behind
    /// a proxy every connection comes from the proxy's address: raise it, or 0 = no cap.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,
    /// Close a connection on which nothing was read or written for this long (ms): an
    /// HTTP/2 connection left open, a client that stalls mid-request.
    #[arg(long, env = "CONNECTION_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub connection_idle_timeout_ms: u64,
    /// Close a connection whose answer cannot be written for this long (ms): a client
    /// that sends requests and never reads the answers.
    #[arg(long, env = "WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    pub write_timeout_ms: u64,
    /// Concurrent HTTP/2 streams (requests) per connection.
    #[arg(long, env = "HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 32)]
    pub http2_max_concurrent_streams: u32,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish (ms).
    #[arg(long, env = "SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,
    /// CORS on the public listener: `*` (any origin, reflected), `none`, or a
    /// comma-separated list of exact origins.
    #[arg(long, env = "CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long, env = "WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Session inits per minute per X-ClientId (both init routes); 0 = off. Off by
    /// default: the shipped clients share one hard-coded client id among all users.
    #[arg(long, env = "INIT_RATE_LIMIT_PER_CLIENT", default_value_t = 0)]
    pub init_rate_limit_per_client: u32,
    /// Inits one client id may make at once before the per-minute rate applies.
    #[arg(long, env = "INIT_RATE_LIMIT_PER_CLIENT_BURST", default_value_t = 60)]
    pub init_rate_limit_per_client_burst: u32,
    /// Session inits per minute per client address (IPv6: per /64); 0 = off.
    #[arg(long, env = "INIT_RATE_LIMIT_PER_IP", default_value_t = 600)]
    pub init_rate_limit_per_ip: u32,
    /// Inits one address may make at once before the per-minute rate applies.
    #[arg(long, env = "INIT_RATE_LIMIT_PER_IP_BURST", default_value_t = 100)]
    pub init_rate_limit_per_ip_burst: u32,
    /// Client addresses (comma-separated CIDR ranges) exempt from the per-IP limit.
    /// Default: loopback and private ranges, so that a proxy in front is never limited
    /// as one client (set TRUSTED_PROXIES to limit the clients behind it).
    #[arg(long, env = "RATE_LIMIT_EXEMPT", default_value = http_adapter::DEFAULT_RATE_LIMIT_EXEMPT)]
    pub rate_limit_exempt: String,
    /// Proxies (comma-separated CIDR ranges) whose X-Forwarded-For names the client
    /// address for the per-IP limit. Empty: the TCP peer is the client.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Live sessions one client id may hold; more inits → 429. 0 = no cap (the
    /// default: client ids are not authenticated and the shipped clients share one, so
    /// anyone could fill a client id's cap and lock out all its users).
    #[arg(long, env = "MAX_SESSIONS_PER_CLIENT", default_value_t = 0)]
    pub max_sessions_per_client: u64,
    /// AES-GCM encryptions (requests + responses) under one session key; beyond it the
    /// session ends (401 SESSION_EXPIRED) and the client starts a new one. 0 = no cap.
    #[arg(long, env = "MAX_ENCRYPTIONS_PER_SESSION", default_value_t = 1 << 24)]
    pub max_encryptions_per_session: u64,
    /// End a session unused for this long (s), on top of its absolute lifetime. 0 = off.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT_SEC", default_value_t = 0)]
    pub session_idle_timeout_sec: u64,

    /// PostgreSQL URL; when set, sessions live in PostgreSQL (migrations applied at
    /// start-up) instead of the embedded store.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// A read replica of DATABASE_URL: session lookups that miss the cache go there
    /// first, and to the primary when the replica does not have the session (yet).
    #[arg(long, env = "PG_READ_URL")]
    pub pg_read_url: Option<String>,
    /// Where Redis is (one of REDIS_URL, REDIS_CLUSTER_URLS, REDIS_SENTINEL_URLS).
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The gateway (GATEWAY_UPSTREAM, or the config file's [[gateway.routes]]).
    #[command(flatten)]
    pub gateway: crate::gateway_settings::GatewayArgs,
    /// This deployment is one instance: while Redis cannot vouch for a nonce, claim it
    /// in this process's memory instead of PostgreSQL. Never with several instances
    /// (a replay sent to another instance would be accepted). Without DATABASE_URL the
    /// deployment is single-instance anyway (sessions live in memory).
    #[arg(long, env = "SINGLE_INSTANCE", default_value_t = false, action = clap::ArgAction::Set)]
    pub single_instance: bool,
    /// Nonce fence: a request stamped more than this ahead of the server's clock is
    /// also claimed in the shared store, and after Redis trouble, requests stamped up
    /// to this after the last Redis-only claim are refused (ms). Also the allowance
    /// for clock differences between instances.
    #[arg(long, env = "REPLAY_FENCE_MARGIN_MS", default_value_t = 2_000)]
    pub replay_fence_margin_ms: u64,
    /// Nonce fence: how long an instance keeps claiming nonces in Redis alone without
    /// reading the shared fence in PostgreSQL (ms; it reads every 250 ms). A
    /// PostgreSQL outage shorter than this does not stop purchases.
    #[arg(long, env = "REPLAY_FENCE_LEASE_MS", default_value_t = 10_000)]
    pub replay_fence_lease_ms: u64,
    /// Key-wrapping key: base64 of 32 bytes (`session-crypto keygen`). Required with
    /// DATABASE_URL: session keys are stored only wrapped under it.
    #[arg(long, env = "SESSION_KEK", hide_env_values = true)]
    pub session_kek: Option<String>,
    /// File holding SESSION_KEK (alternative to SESSION_KEK).
    #[arg(long, env = "SESSION_KEK_FILE")]
    pub session_kek_file: Option<std::path::PathBuf>,
    /// The server's P-256 signing key (PEM, or base64 of the DER; PKCS#8 or SEC1): v2
    /// init responses are signed with it and its public key is published at
    /// GET /.well-known/session-crypto. `session-crypto keygen --signing` makes one.
    #[arg(long, env = "SERVER_SIGNING_KEY", hide_env_values = true)]
    pub server_signing_key: Option<String>,
    /// File holding SERVER_SIGNING_KEY (alternative to SERVER_SIGNING_KEY).
    #[arg(long, env = "SERVER_SIGNING_KEY_FILE")]
    pub server_signing_key_file: Option<std::path::PathBuf>,
    /// Rotation: the next signing key, published (status `next`) so that clients pin
    /// it before it signs. A public key (SPKI PEM, or base64 of the point) or the
    /// private key file `keygen --signing` wrote (only its public part is used).
    #[arg(long, env = "SERVER_SIGNING_KEY_NEXT", hide_env_values = true)]
    pub server_signing_key_next: Option<String>,
    /// File holding SERVER_SIGNING_KEY_NEXT (alternative to SERVER_SIGNING_KEY_NEXT).
    #[arg(long, env = "SERVER_SIGNING_KEY_NEXT_FILE")]
    pub server_signing_key_next_file: Option<std::path::PathBuf>,
    /// Rotation: the signing key before the current one, still published (status
    /// `previous`) while other instances may sign with it. Same forms as
    /// SERVER_SIGNING_KEY_NEXT; prefer its public key.
    #[arg(long, env = "SERVER_SIGNING_KEY_PREVIOUS", hide_env_values = true)]
    pub server_signing_key_previous: Option<String>,
    /// File holding SERVER_SIGNING_KEY_PREVIOUS.
    #[arg(long, env = "SERVER_SIGNING_KEY_PREVIOUS_FILE")]
    pub server_signing_key_previous_file: Option<std::path::PathBuf>,
    /// When the previous key stops being published and trusted (RFC 3339 UTC, e.g.
    /// 2026-12-31T12:00:00Z): the end of the roll-out plus the well-known cache time.
    #[arg(long, env = "SERVER_SIGNING_KEY_PREVIOUS_NOT_AFTER")]
    pub server_signing_key_previous_not_after: Option<String>,
    /// Retired key-wrapping keys (comma-separated base64) that still unwrap older sessions.
    #[arg(long, env = "SESSION_KEK_PREVIOUS", hide_env_values = true)]
    pub session_kek_previous: Option<String>,
    /// PostgreSQL pool size.
    #[arg(long, env = "PG_POOL_MAX", default_value_t = 16)]
    pub pg_pool_max: usize,
    /// Time to open a PostgreSQL connection (ms).
    #[arg(long, env = "PG_CONNECTION_TIMEOUT_MS", default_value_t = 5_000)]
    pub pg_connection_timeout_ms: u64,
    /// Server-side statement_timeout of every PostgreSQL connection (ms); also bounds
    /// each whole store operation on the client side.
    #[arg(long, env = "PG_STATEMENT_TIMEOUT_MS", default_value_t = 5_000)]
    pub pg_statement_timeout_ms: u64,
    /// Most sessions written by one grouped INSERT (group commit).
    #[arg(long, env = "PG_INSERT_BATCH_MAX", default_value_t = 256)]
    pub pg_insert_batch_max: usize,
    /// Grouped INSERTs in flight at once (fewer = bigger groups, less database CPU).
    #[arg(long, env = "PG_INSERT_WRITERS", default_value_t = 1)]
    pub pg_insert_writers: usize,
    /// How long start-up waits for PostgreSQL to accept the migrations (ms).
    #[arg(long, env = "PG_STARTUP_TIMEOUT_MS", default_value_t = 30_000)]
    pub pg_startup_timeout_ms: u64,
    /// With Redis: also keep sessions in an in-process cache for at most this long (ms),
    /// saving a Redis round trip per purchase. Another instance's deletion of a session
    /// is seen here within this time. 0 = off.
    #[arg(long, env = "SESSION_LOCAL_CACHE_MS", default_value_t = 1_000)]
    pub session_local_cache_ms: u64,
    /// Bound on every Redis command (ms).
    #[arg(long, env = "REDIS_COMMAND_TIMEOUT_MS", default_value_t = 2_000)]
    pub redis_command_timeout_ms: u64,
    /// After a Redis failure, how long to use the fallback before trying Redis again (ms).
    #[arg(long, env = "REDIS_RETRY_INTERVAL_MS", default_value_t = 1_000)]
    pub redis_retry_interval_ms: u64,
    /// Start even though Redis may evict keys (`maxmemory-policy` other than
    /// `noeviction`). Evicted nonces make requests replayable: only for a Redis that can
    /// never reach its `maxmemory`. The server then warns and sets
    /// `session_crypto_redis_eviction_unsafe` to 1.
    #[arg(long, env = "REDIS_ALLOW_EVICTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub redis_allow_eviction: bool,
    /// Expiry range of one partition of the sessions table (s, ≥ 60). The cleanup job
    /// drops a partition once all its sessions have expired, so expired rows stay at
    /// most this long plus the cleanup interval.
    #[arg(long, env = "SESSION_PARTITION_SEC", default_value_t = 3_600)]
    pub session_partition_sec: u64,
    /// Period of the expired-session cleanup job (ms); it also runs at start-up.
    #[arg(long, env = "SESSION_CLEANUP_INTERVAL_MS", default_value_t = 3_600_000)]
    pub session_cleanup_interval_ms: u64,
    /// Rows deleted per cleanup statement.
    #[arg(long, env = "SESSION_CLEANUP_BATCH_SIZE", default_value_t = 1_000)]
    pub session_cleanup_batch_size: i64,
    /// Pause between full cleanup batches (ms).
    #[arg(long, env = "SESSION_CLEANUP_BATCH_DELAY_MS", default_value_t = 100)]
    pub session_cleanup_batch_delay_ms: u64,
}

/// Arguments with `serve` inserted when no subcommand is named, so that
/// `session-crypto --port 4000` serves.
pub fn args_with_default_subcommand() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = <Cli as clap::CommandFactory>::command();
    let subcommands: Vec<&str> = command
        .get_subcommands()
        .map(clap::Command::get_name)
        .chain(["help"])
        .collect();
    let named = args
        .iter()
        .skip(1)
        .any(|a| a.to_str().is_some_and(|a| subcommands.contains(&a)));
    let asks_help = args
        .iter()
        .skip(1)
        .any(|a| matches!(a.to_str(), Some("-h" | "--help" | "-V" | "--version")));
    let needs_serve = !named && (args.len() == 1 || !asks_help);
    if needs_serve {
        args.insert(1.min(args.len()), "serve".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
