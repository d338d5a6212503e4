//! Where Redis is: the settings of the three topologies (exactly one of a server, a
//! Redis Cluster, or a primary behind Sentinel), their validation, and the connection
//! settings built from them.

use std::time::Duration;

use clap::Args;
use ports::CryptoProvider;

/// Where Redis is: exactly one of a server, a cluster, or a primary behind Sentinel.
#[derive(Debug, Clone, Default, Args)]
pub struct RedisArgs {
    /// Redis URL (`redis://[:password@]host:port[/db]`, `rediss://` for TLS); when set,
    /// nonces are claimed in Redis (shared by every instance) and, with DATABASE_URL,
    /// sessions are cached there.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster, comma-separated (`redis://h1:p1,redis://h2:p2`),
    /// instead of REDIS_URL.
    #[arg(long, env = "REDIS_CLUSTER_URLS", value_delimiter = ',')]
    pub redis_cluster_urls: Vec<String>,
    /// Sentinels, comma-separated, instead of REDIS_URL; with REDIS_SENTINEL_MASTER.
    /// The primary is reached with the first URL's password and TLS setting.
    #[arg(long, env = "REDIS_SENTINEL_URLS", value_delimiter = ',')]
    pub redis_sentinel_urls: Vec<String>,
    /// The name of the primary the sentinels monitor.
    #[arg(long, env = "REDIS_SENTINEL_MASTER")]
    pub redis_sentinel_master: Option<String>,
    /// PEM file of the certificate authority that signed the Redis servers' TLS
    /// certificates (`rediss://`), when the system trust store does not hold it.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
}

/// The Redis topology the settings name, if any.
///
/// # Errors
/// A message naming the settings: more than one topology, a Sentinel without its
/// primary's name (or a name without sentinels), or an empty list.
pub fn redis_topology(args: &RedisArgs) -> Result<Option<redis_adapter::Topology>, crate::Error> {
    use redis_adapter::Topology;
    let cluster: Vec<String> = nonempty(&args.redis_cluster_urls);
    let sentinels: Vec<String> = nonempty(&args.redis_sentinel_urls);
    let chosen = [
        args.redis_url.is_some(),
        !cluster.is_empty(),
        !sentinels.is_empty(),
    ];
    if chosen.iter().filter(|c| **c).count() > 1 {
        return Err("set only one of REDIS_URL, REDIS_CLUSTER_URLS and REDIS_SENTINEL_URLS".into());
    }
    if sentinels.is_empty() != args.redis_sentinel_master.is_none() {
        return Err("REDIS_SENTINEL_URLS and REDIS_SENTINEL_MASTER go together".into());
    }
    let topology = match (&args.redis_url, &args.redis_sentinel_master) {
        (Some(url), _) => Topology::Standalone(url.clone()),
        (None, Some(master)) if !master.trim().is_empty() => Topology::Sentinel {
            urls: sentinels,
            master: master.trim().to_owned(),
        },
        (None, Some(_)) => return Err("REDIS_SENTINEL_MASTER is empty".into()),
        (None, None) if !cluster.is_empty() => Topology::Cluster(cluster),
        (None, None) => return Ok(None),
    };
    for url in topology_urls(&topology) {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(format!(
                "{}: {:?} is not a redis:// or rediss:// URL",
                topology.setting(),
                crate::layered::redact_url(url)
            )
            .into());
        }
    }
    Ok(Some(topology))
}

/// The Redis connection settings, if Redis is configured: the topology, the CA file,
/// and a process-wide TLS provider for `rediss://` (redis-rs builds its TLS
/// configurations with rustls' default provider: the crypto backend's).
///
/// # Errors
/// A message naming the setting at fault.
pub fn redis_config(
    args: &RedisArgs,
    crypto: CryptoProvider,
    command_timeout: Duration,
    retry_interval: Duration,
) -> Result<Option<redis_adapter::RedisConfig>, crate::Error> {
    let Some(topology) = redis_topology(args)? else {
        if args.redis_ca_file.is_some() {
            return Err("REDIS_CA_FILE is set but no Redis is".into());
        }
        return Ok(None);
    };
    let ca_pem = match &args.redis_ca_file {
        Some(path) => Some(
            std::fs::read(path).map_err(|e| format!("REDIS_CA_FILE {}: {e}", path.display()))?,
        ),
        None => None,
    };
    if ca_pem.is_some() && !topology.uses_tls() {
        return Err(format!(
            "REDIS_CA_FILE is set but {} does not use TLS (rediss://)",
            topology.setting()
        )
        .into());
    }
    if topology.uses_tls() {
        let (provider, _) = crate::backend::tls_provider(crypto)?;
        // Already installed (by an earlier call in this process) is fine.
        let _ = rustls::crypto::CryptoProvider::install_default((*provider).clone());
    }
    Ok(Some(redis_adapter::RedisConfig {
        topology,
        ca_pem,
        command_timeout,
        retry_interval,
    }))
}

fn nonempty(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect()
}

fn topology_urls(t: &redis_adapter::Topology) -> Vec<&String> {
    match t {
        redis_adapter::Topology::Standalone(u) => vec![u],
        redis_adapter::Topology::Cluster(u) | redis_adapter::Topology::Sentinel { urls: u, .. } => {
            u.iter().collect()
        }
    }
}
