//! The gateway's settings: one upstream from `GATEWAY_UPSTREAM` and its companions,
//! and several from the config file's `[[gateway.routes]]` tables (carried here as
//! JSON in the hidden `gateway_routes` setting), validated into
//! [`http_adapter::Gateway`].

use clap::Args;
use http_adapter::{Gateway, RouteSpec};
use ports::CryptoProvider;
use zeroize::Zeroizing;

use crate::config::ServeArgs;

/// The single-upstream form of the gateway.
#[derive(Debug, Clone, Default, Args)]
pub struct GatewayArgs {
    /// Gateway: forward encrypted requests under GATEWAY_PREFIX to this upstream
    /// (`http://host:port[/base]`), decrypted, and seal its answers. Off unless set.
    #[arg(long, env = "GATEWAY_UPSTREAM")]
    pub gateway_upstream: Option<String>,
    /// Path prefix of the gateway route (`<prefix><rest>` → `<upstream>/<rest>`).
    #[arg(long, env = "GATEWAY_PREFIX", default_value = "/api/")]
    pub gateway_prefix: String,
    /// Methods the gateway route forwards, comma-separated.
    #[arg(
        long,
        env = "GATEWAY_METHODS",
        default_value = "GET,POST,PUT,PATCH,DELETE"
    )]
    pub gateway_methods: String,
    /// Let protocol v1 sessions use the gateway route. Their AAD does not bind the
    /// method or path, so a captured v1 request could be sent to another path.
    #[arg(long, env = "GATEWAY_ALLOW_V1", default_value_t = false, action = clap::ArgAction::Set)]
    pub gateway_allow_v1: bool,
    /// Time the upstream has to answer, head and body (ms); slower → 504.
    #[arg(long, env = "GATEWAY_TIMEOUT_MS", default_value_t = http_adapter::gateway::DEFAULT_TIMEOUT_MS)]
    pub gateway_timeout_ms: u64,
    /// Time to connect to the upstream (ms); slower → 502.
    #[arg(long, env = "GATEWAY_CONNECT_TIMEOUT_MS", default_value_t = http_adapter::gateway::DEFAULT_CONNECT_TIMEOUT_MS)]
    pub gateway_connect_timeout_ms: u64,
    /// Largest request envelope and largest upstream answer on the gateway route
    /// (bytes); a larger request → 413, a larger answer → 502. Default: BODY_LIMIT_BYTES.
    #[arg(long, env = "GATEWAY_BODY_LIMIT_BYTES")]
    pub gateway_body_limit_bytes: Option<usize>,
    /// Speak HTTP/2 to the upstream (prior knowledge, h2c) instead of HTTP/1.1.
    #[arg(long, env = "GATEWAY_HTTP2", default_value_t = false, action = clap::ArgAction::Set)]
    pub gateway_http2: bool,
    /// Client headers the gateway drops by default (method overrides, X-Forwarded-Host,
    /// X-Real-IP, …) that the route passes on, comma-separated.
    #[arg(long, env = "GATEWAY_PASS_HEADERS", default_value = "")]
    pub gateway_pass_headers: String,
    /// For an https:// GATEWAY_UPSTREAM: PEM file of the CAs to trust (default: the
    /// system's bundle).
    #[arg(long, env = "GATEWAY_CA_FILE")]
    pub gateway_ca_file: Option<String>,
    /// Gateway answers one connection may hold at once, from the request to the last
    /// byte of the answer written (an HTTP/2 client can open many streams and read none);
    /// more → 503. 0 = no cap.
    #[arg(long, env = "GATEWAY_MAX_ANSWERS_PER_CONNECTION", default_value_t = http_adapter::gateway::DEFAULT_ANSWERS_PER_CONNECTION)]
    pub gateway_max_answers_per_connection: usize,
    /// The config file's `[[gateway.routes]]`, as JSON (set by the file layer).
    #[arg(long, hide = true)]
    pub gateway_routes: Option<String>,
}

/// The routes the settings name, each with the setting it came from.
fn specs(args: &GatewayArgs) -> Result<Vec<(String, RouteSpec)>, String> {
    let mut specs = Vec::new();
    if let Some(upstream) = &args.gateway_upstream {
        specs.push((
            "GATEWAY_UPSTREAM".to_owned(),
            RouteSpec {
                prefix: args.gateway_prefix.clone(),
                upstream: upstream.clone(),
                methods: Some(
                    args.gateway_methods
                        .split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ),
                timeout_ms: Some(args.gateway_timeout_ms),
                connect_timeout_ms: Some(args.gateway_connect_timeout_ms),
                max_body_bytes: args.gateway_body_limit_bytes,
                allow_v1: args.gateway_allow_v1,
                http2: args.gateway_http2,
                ca_file: args.gateway_ca_file.clone(),
                pass_headers: args
                    .gateway_pass_headers
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
        ));
    }
    if let Some(json) = &args.gateway_routes {
        let table: Vec<RouteSpec> =
            serde_json::from_str(json).map_err(|e| format!("gateway.routes: {e}"))?;
        for (i, spec) in table.into_iter().enumerate() {
            specs.push((format!("gateway.routes[{i}]"), spec));
        }
    }
    Ok(specs)
}

/// The gateway, validated; off when nothing is configured.
///
/// `X-Session-Id` is keyed by a key derived from the current SESSION_KEK, so every
/// instance (and a restart) hashes a session alike; without a KEK — sessions then live
/// in this process only — by a random key.
///
/// # Errors
/// A message naming the setting at fault.
pub fn gateway(
    args: &ServeArgs,
    crypto: CryptoProvider,
    kek: Option<&[u8; 32]>,
) -> Result<Gateway, crate::Error> {
    let specs = specs(&args.gateway)?;
    if specs.is_empty() {
        return Ok(Gateway::off());
    }
    let mut key = Zeroizing::new([0u8; 32]);
    match kek {
        Some(kek) => {
            *key = crypto
                .digests
                .hmac_sha256(kek, &[b"session-crypto gateway session id key"]);
        }
        None => crypto
            .random
            .fill(key.as_mut())
            .map_err(|_| "the random number generator failed")?,
    }
    let built_in: Vec<&str> = http_adapter::router::routes()
        .filter(|(scope, _, _)| *scope != http_adapter::router::Scope::Internal)
        .map(|(_, _, path)| path)
        .collect();
    // An https:// upstream uses the rustls provider the backend list gives the backend.
    let tls = crypto_backends::tls_provider(crypto.name).map(|(provider, _)| provider);
    Ok(Gateway::new(
        specs,
        &built_in,
        args.body_limit_bytes,
        *key,
        tls.as_ref(),
    )?)
}

/// The `[[gateway.routes]]` of a config file's `gateway` table, as the JSON text of the
/// hidden `gateway_routes` setting.
///
/// # Errors
/// A message naming the file and what is wrong.
pub fn routes_from_file(name: &str, value: toml::Value) -> Result<String, crate::Error> {
    let toml::Value::Table(mut table) = value else {
        return Err(
            format!("config file {name}: `gateway` must be a table ([[gateway.routes]])").into(),
        );
    };
    let routes = table.remove("routes").ok_or_else(|| {
        format!("config file {name}: `gateway` has no `routes` ([[gateway.routes]])")
    })?;
    if let Some(key) = table.keys().next() {
        return Err(format!(
            "config file {name}: unknown key `gateway.{key}` (only [[gateway.routes]] tables; \
             the single-upstream form is GATEWAY_UPSTREAM)"
        )
        .into());
    }
    let specs: Vec<RouteSpec> = routes
        .try_into()
        .map_err(|e| format!("config file {name}: gateway.routes: {e}"))?;
    serde_json::to_string(&specs).map_err(|e| crate::Error::Config(e.to_string()))
}
