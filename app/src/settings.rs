//! Settings → validated policies: the service's rules, the HTTP settings, the
//! key-wrapping keys and TLS, every error naming the setting at fault.

use std::sync::Arc;
use std::time::Duration;

use domain::keywrap::KeyWrapper;
use domain::limits::IpRange;
use domain::{AbuseLimits, ReplayPolicy, ServiceConfig, TtlPolicy, V1TtlPolicy};
use http_adapter::{ApiConfig, Cors};
use ports::{CryptoProvider, RateLimit};

use crate::config::ServeArgs;
use crate::redis_settings::redis_config;

fn decode_kek(name: &str, text: &str) -> Result<[u8; 32], String> {
    let bytes = domain::encoding::base64_decode(text.trim()).ok_or_else(|| {
        format!("{name} is not base64 (generate one with `session-crypto keygen`)")
    })?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| format!("{name} must be base64 of exactly 32 bytes (got {len})"))
}

/// The key-wrapping keys from SESSION_KEK / SESSION_KEK_FILE / SESSION_KEK_PREVIOUS.
///
/// # Errors
/// A message naming the setting.
pub fn key_wrapper(
    args: &ServeArgs,
    crypto: CryptoProvider,
) -> Result<Option<KeyWrapper>, crate::Error> {
    let Some(current) = current_kek(args)? else {
        return Ok(None);
    };
    let current = *current;
    let previous = args
        .session_kek_previous
        .iter()
        .flat_map(|list| list.split(','))
        .filter(|k| !k.trim().is_empty())
        .map(|k| decode_kek("SESSION_KEK_PREVIOUS", k))
        .collect::<Result<Vec<_>, _>>()?;
    KeyWrapper::new(crypto, current, previous)
        .map(Some)
        .map_err(|_| "cannot derive the KEK id".into())
}

/// The current key-wrapping key from SESSION_KEK / SESSION_KEK_FILE.
fn current_kek(args: &ServeArgs) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>, crate::Error> {
    let kek = match (&args.session_kek, &args.session_kek_file) {
        (Some(_), Some(_)) => return Err("set only one of SESSION_KEK and SESSION_KEK_FILE".into()),
        (Some(k), None) => decode_kek("SESSION_KEK", k)?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("SESSION_KEK_FILE {}: {e}", path.display()))?;
            decode_kek("SESSION_KEK_FILE", &text)?
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(zeroize::Zeroizing::new(kek)))
}

/// Validated service policies from the arguments.
///
/// # Errors
/// A message naming the offending setting.
pub fn service_config(args: &ServeArgs) -> Result<ServiceConfig, crate::Error> {
    let replay = ReplayPolicy::new(args.timestamp_window_ms, args.nonce_ttl_sec)
        .map_err(|e| e.to_string())?;
    let ttl = TtlPolicy::new(
        args.session_ttl_min_sec,
        args.session_ttl_default_sec,
        args.session_ttl_max_sec,
    )
    .map_err(|e| e.to_string())?;
    if args.session_ttl_anonymous_sec == 0 || args.session_ttl_authenticated_sec == 0 {
        return Err(
            "SESSION_TTL_ANONYMOUS_SEC and SESSION_TTL_AUTHENTICATED_SEC must be > 0".into(),
        );
    }
    let v1_ttl = V1TtlPolicy {
        anonymous_sec: args.session_ttl_anonymous_sec,
        authenticated_sec: args.session_ttl_authenticated_sec,
        trust_upstream_auth: args.trust_upstream_auth,
    };
    let rate = |name: &str, per_minute: u32, burst: u32| {
        if per_minute > 0 && burst == 0 {
            return Err(format!("{name}_BURST must be ≥ 1 while {name} is on"));
        }
        Ok(RateLimit { per_minute, burst })
    };
    let limits = AbuseLimits {
        init_per_client: rate(
            "INIT_RATE_LIMIT_PER_CLIENT",
            args.init_rate_limit_per_client,
            args.init_rate_limit_per_client_burst,
        )?,
        init_per_ip: rate(
            "INIT_RATE_LIMIT_PER_IP",
            args.init_rate_limit_per_ip,
            args.init_rate_limit_per_ip_burst,
        )?,
        max_sessions_per_client: args.max_sessions_per_client,
        max_encryptions_per_session: args.max_encryptions_per_session,
        idle_timeout_sec: args.session_idle_timeout_sec,
    };
    Ok(ServiceConfig {
        replay,
        ttl,
        v1_ttl,
        limits,
    })
}

/// The HTTP settings, validated.
///
/// # Errors
/// A message naming the offending setting.
pub fn api_config(args: &ServeArgs) -> Result<ApiConfig, crate::Error> {
    let ranges =
        |name: &str, text: &str| IpRange::parse_list(text).map_err(|e| format!("{name}: {e}"));
    Ok(ApiConfig {
        body_limit: args.body_limit_bytes,
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        body_budget: http_adapter::BodyBudget::new(args.body_buffer_budget_bytes),
        cors: cors(&args.cors_origins),
        trusted_proxies: ranges("TRUSTED_PROXIES", &args.trusted_proxies)?,
        rate_limit_exempt: ranges("RATE_LIMIT_EXEMPT", &args.rate_limit_exempt)?,
        gateway: Arc::default(),
        scheme: if args.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        },
        gateway_answers_per_connection: args.gateway.gateway_max_answers_per_connection,
    })
}

fn cors(spec: &str) -> Cors {
    match spec.trim() {
        "*" => Cors::AnyOrigin,
        "" | "none" => Cors::Disabled,
        list => Cors::Origins(
            list.split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
        ),
    }
}

/// The Redis topology and CA file, the read replica, the partitions and the fence.
fn store_settings(args: &ServeArgs, crypto: CryptoProvider) -> Result<(), crate::Error> {
    redis_config(&args.redis, crypto, Duration::ZERO, Duration::ZERO)?;
    if args.pg_read_url.is_some() && args.database_url.is_none() {
        return Err("PG_READ_URL is a replica of DATABASE_URL, which is not set".into());
    }
    if args.database_url.is_some() {
        let interval = Duration::from_millis(args.session_cleanup_interval_ms.max(1000));
        crate::stores::partitioning(args, interval)?;
    }
    let poll = crate::stores::fence::POLL.as_millis() as u64;
    if args.replay_fence_lease_ms < 2 * poll {
        return Err(format!(
            "REPLAY_FENCE_LEASE_MS must be at least {} (two reads of the fence)",
            2 * poll
        )
        .into());
    }
    Ok(())
}

/// Every check `serve` makes before it touches the network: policies, HTTP settings,
/// key-wrapping keys, store sizes, and that a database comes with a KEK.
///
/// # Errors
/// A message naming the offending setting.
pub fn validate(args: &ServeArgs, crypto: CryptoProvider) -> Result<Checked, crate::Error> {
    if args.memory_nonce_cleanup_threshold.is_some() {
        tracing::warn!(
            "MEMORY_NONCE_CLEANUP_THRESHOLD is deprecated and ignored: the embedded nonce \
             store drops expired nonces as it goes (size it with MEMORY_NONCE_MAX_SIZE)"
        );
    }
    let service = service_config(args)?;
    let mut api = api_config(args)?;
    if args.memory_nonce_max_size == Some(0)
        || args.memory_session_max_size == 0
        || args.memory_nonce_max_bytes < memory::BYTES_PER_NONCE
        || !(1..=100).contains(&args.memory_nonce_client_share_percent)
    {
        return Err(
            "MEMORY_NONCE_MAX_SIZE and MEMORY_SESSION_MAX_SIZE must be > 0, \
             MEMORY_NONCE_MAX_BYTES at least 40 and MEMORY_NONCE_CLIENT_SHARE_PERCENT \
             1-100"
                .into(),
        );
    }
    let wrapper = key_wrapper(args, crypto)?;
    if args.database_url.is_some() && wrapper.is_none() {
        return Err(NO_KEK.into());
    }
    let kek = current_kek(args)?;
    api.gateway = Arc::new(crate::gateway_settings::gateway(
        args,
        crypto,
        kek.as_deref(),
    )?);
    store_settings(args, crypto)?;
    let tls = tls_config(args, crypto)?;
    let signing = crate::identity::signing_keys(args, crypto)?;
    Ok(Checked {
        service,
        api,
        wrapper,
        tls,
        signing,
    })
}

/// What [`validate`] built from the arguments, so `serve` builds it once.
#[derive(Debug)]
pub struct Checked {
    /// Service policies.
    pub service: ServiceConfig,
    /// HTTP settings.
    pub api: ApiConfig,
    /// Key-wrapping keys, when configured.
    pub wrapper: Option<KeyWrapper>,
    /// TLS settings and the rustls provider's name, when configured.
    pub tls: Option<(Arc<rustls::ServerConfig>, &'static str)>,
    /// The v2 signing keys: the current one, and those published beside it.
    pub signing: domain::SigningKeys,
}

/// The TLS server settings from TLS_CERT_FILE and TLS_KEY_FILE, with the name of the
/// rustls provider used; `None` without them.
///
/// # Errors
/// Only one of the two set, unreadable files, or no provider in this build.
pub fn tls_config(
    args: &ServeArgs,
    crypto: CryptoProvider,
) -> Result<Option<(Arc<rustls::ServerConfig>, &'static str)>, crate::Error> {
    match (&args.tls_cert_file, &args.tls_key_file) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            let (provider, name) = crate::backend::tls_provider(crypto)?;
            Ok(Some((
                http_adapter::tls::server_config(provider, cert, key)?,
                name,
            )))
        }
        _ => Err("set both TLS_CERT_FILE and TLS_KEY_FILE (or neither)".into()),
    }
}

pub(crate) const NO_KEK: &str = "DATABASE_URL is set but no key-wrapping key is configured: session keys are \
                      stored only wrapped. Set SESSION_KEK to base64 of 32 random bytes (e.g. \
                      SESSION_KEK=$(session-crypto keygen)) or SESSION_KEK_FILE to a file \
                      holding it.";
