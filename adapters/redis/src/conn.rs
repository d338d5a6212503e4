//! One connection type over the three topologies: a standalone server
//! (`ConnectionManager`, reconnecting on its own), a Redis Cluster (redis-rs'
//! `ClusterConnection`, following slot moves and failovers on its own) and a primary
//! found through Sentinel (re-resolved through the sentinels after any connection
//! error or a `READONLY` answer, so a failover is followed without a restart).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{
    SentinelClient, SentinelClientBuilder, SentinelNodeConnectionInfo, SentinelServerType,
};
use redis::{
    AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult,
    TlsCertificates, Value,
};

use crate::RedisError;

mod redirect;

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// `REDIS_URL`: one server.
    Standalone(String),
    /// `REDIS_CLUSTER_URLS`: seed nodes of a Redis Cluster.
    Cluster(Vec<String>),
    /// `REDIS_SENTINEL_URLS` + `REDIS_SENTINEL_MASTER`.
    Sentinel {
        /// The sentinels.
        urls: Vec<String>,
        /// The monitored primary's name.
        master: String,
    },
}

impl Topology {
    /// The setting that names this topology, for messages.
    pub fn setting(&self) -> &'static str {
        match self {
            Self::Standalone(_) => "REDIS_URL",
            Self::Cluster(_) => "REDIS_CLUSTER_URLS",
            Self::Sentinel { .. } => "REDIS_SENTINEL_URLS",
        }
    }

    /// Whether any URL asks for TLS (`rediss://`).
    pub fn uses_tls(&self) -> bool {
        let urls: Vec<&String> = match self {
            Self::Standalone(u) => vec![u],
            Self::Cluster(u) | Self::Sentinel { urls: u, .. } => u.iter().collect(),
        };
        urls.iter().any(|u| u.starts_with("rediss://"))
    }
}

/// A connection to whichever topology is configured. Cheap to clone.
#[derive(Clone)]
pub(crate) enum Conn {
    Standalone(ConnectionManager),
    Cluster(Arc<Lazy<ClusterConnection>>),
    Sentinel(Arc<Lazy<MultiplexedConnection>>),
}

/// A connection made on first use and made again after it failed.
pub(crate) struct Lazy<C> {
    current: RwLock<Option<C>>,
    connect: Box<dyn Fn() -> RedisFuture<'static, C> + Send + Sync>,
    /// Whether an error drops the connection (Sentinel: find the primary again).
    drop_on_error: bool,
    gate: tokio::sync::Mutex<()>,
}

impl<C: Clone + Send + Sync + 'static> Lazy<C> {
    fn current(&self) -> Option<C> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn get(&self) -> RedisResult<C> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _one_at_a_time = self.gate.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let c = (self.connect)().await?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
        Ok(c)
    }

    /// Forgets the connection: the next request makes a new one.
    fn reset(&self) {
        self.current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn failed(&self, e: &redis::RedisError) {
        let stale = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly);
        if self.drop_on_error && stale {
            self.current
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
    }
}

fn bad(setting: &str, e: impl std::fmt::Display) -> RedisError {
    RedisError::Url(format!("{setting}: {e}"))
}

impl Conn {
    /// Prepares the connection without connecting. `ca_pem`: the certificate
    /// authority that signed the servers' TLS certificates, when not a system one.
    /// `replaced`: counts the Sentinel connections made anew to a primary that is not
    /// the one before ([`crate::Redis::interruptions`]).
    pub(crate) fn new(
        topology: &Topology,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
        replaced: &Arc<AtomicU64>,
    ) -> Result<Self, RedisError> {
        let setting = topology.setting();
        let certs = ca_pem
            .filter(|_| topology.uses_tls())
            .map(|pem| TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            });
        match topology {
            Topology::Standalone(url) => {
                let client = match &certs {
                    Some(c) => Client::build_with_tls(url.as_str(), c.clone()),
                    None => Client::open(url.as_str()),
                }
                .map_err(|e| bad(setting, e))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(client, config)
                    .map(Self::Standalone)
                    .map_err(|e| bad(setting, e))
            }
            Topology::Cluster(urls) => {
                let mut builder = ClusterClient::builder(urls.iter().map(String::as_str))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2);
                if let Some(c) = &certs {
                    builder = builder.certs(c.clone());
                }
                let client = builder.build().map_err(|e| bad(setting, e))?;
                Ok(Self::Cluster(Arc::new(Lazy {
                    current: RwLock::new(None),
                    connect: Box::new(move || {
                        let client = client.clone();
                        Box::pin(async move { client.get_async_connection().await })
                    }),
                    drop_on_error: false,
                    gate: tokio::sync::Mutex::new(()),
                })))
            }
            Topology::Sentinel { urls, master } => {
                let client =
                    sentinel_client(urls, master, certs.as_ref()).map_err(|e| bad(setting, e))?;
                let client = Arc::new(tokio::sync::Mutex::new(client));
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let known = Arc::new(Mutex::new(None));
                let replaced = Arc::clone(replaced);
                Ok(Self::Sentinel(Arc::new(Lazy {
                    current: RwLock::new(None),
                    connect: Box::new(move || {
                        let (client, config) = (Arc::clone(&client), config.clone());
                        let (known, replaced) = (Arc::clone(&known), Arc::clone(&replaced));
                        Box::pin(async move {
                            let primary = client.lock().await.async_get_client().await?;
                            let mut c = primary
                                .get_multiplexed_async_connection_with_config(&config)
                                .await?;
                            let id = identity(&mut c).await?;
                            let mut known = known.lock().unwrap_or_else(PoisonError::into_inner);
                            // Not the first connection, and not to the same primary (or
                            // unknown): what it lacks may be claims made before.
                            if known.as_ref().is_some_and(|before: &Option<String>| {
                                before.is_none() || *before != id
                            }) {
                                replaced.fetch_add(1, Ordering::SeqCst);
                            }
                            *known = Some(id);
                            Ok(c)
                        })
                    }),
                    drop_on_error: true,
                    gate: tokio::sync::Mutex::new(()),
                })))
            }
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The cluster connection, for commands routed to every primary.
    pub(crate) async fn cluster(&self) -> Option<RedisResult<ClusterConnection>> {
        match self {
            Self::Cluster(lazy) => Some(lazy.get().await),
            _ => None,
        }
    }
}

/// The primary's credentials and TLS come from the first sentinel URL: sentinels and
/// the primary are usually run with the same password (see the README).
fn sentinel_client(
    urls: &[String],
    master: &str,
    certs: Option<&TlsCertificates>,
) -> RedisResult<SentinelClient> {
    let infos = urls
        .iter()
        .map(|u| u.as_str().into_connection_info())
        .collect::<RedisResult<Vec<_>>>()?;
    let first = infos.first().ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no URL"))
    })?;
    let settings = first.redis_settings();
    let tls = match first.addr() {
        redis::ConnectionAddr::TcpTls { insecure: true, .. } => Some(redis::TlsMode::Insecure),
        redis::ConnectionAddr::TcpTls { .. } => Some(redis::TlsMode::Secure),
        _ => None,
    };
    let Some(certs) = certs.filter(|_| tls.is_some()) else {
        // Each sentinel URL carries its own credentials; the primary gets the first's.
        let mut node =
            SentinelNodeConnectionInfo::default().set_redis_connection_info(settings.clone());
        if let Some(mode) = tls {
            node = node.set_tls_mode(mode);
        }
        return SentinelClient::build(
            urls.iter().map(String::as_str).collect(),
            master,
            Some(node),
            SentinelServerType::Master,
        );
    };
    // A private CA: the builder takes certificates for both sides.
    let mut builder = SentinelClientBuilder::new(
        infos.iter().map(|i| i.addr().clone()),
        master,
        SentinelServerType::Master,
    )?
    .set_client_to_redis_certificates(certs.clone())
    .set_client_to_sentinel_certificates(certs.clone());
    if let Some(mode) = tls {
        builder = builder
            .set_client_to_redis_tls_mode(mode)
            .set_client_to_sentinel_tls_mode(mode);
    }
    if let Some(user) = settings.username() {
        builder = builder
            .set_client_to_redis_username(user)
            .set_client_to_sentinel_username(user);
    }
    if let Some(password) = settings.password() {
        builder = builder
            .set_client_to_redis_password(password)
            .set_client_to_sentinel_password(password);
    }
    if settings.db() != 0 {
        builder = builder.set_client_to_redis_db(settings.db());
    }
    builder.build()
}

/// The `run_id` of the server behind `c`; `None` when it cannot say (`INFO` refused).
async fn identity(c: &mut MultiplexedConnection) -> RedisResult<Option<String>> {
    match redis::cmd("INFO")
        .arg("server")
        .query_async::<String>(c)
        .await
    {
        Ok(info) => Ok(crate::watch::run_id(&info)),
        Err(e) if crate::answered(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Conn {
    /// Whether redis-rs may make the connection anew on its own after `e` (a standalone
    /// connection manager, a cluster client: a connection dropped or refused), so that
    /// the next command may reach another server. A Sentinel connection is made anew
    /// here instead, and counted as it is made when it reaches another primary; a
    /// timeout leaves a connection as it is.
    pub(crate) fn may_reconnect_after(&self, e: &redis::RedisError) -> bool {
        !matches!(self, Self::Sentinel(_))
            && (e.is_unrecoverable_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal())
    }

    /// Makes the connection anew on the next request (cluster and sentinel; the
    /// standalone connection manager reconnects by itself).
    pub(crate) fn reconnect(&self) {
        match self {
            Self::Standalone(_) => {}
            Self::Cluster(lazy) => lazy.reset(),
            Self::Sentinel(lazy) => lazy.reset(),
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(c) => c.req_packed_command(cmd),
            Self::Cluster(lazy) => Box::pin(async move {
                let mut c = lazy.get().await?;
                c.req_packed_command(cmd).await
            }),
            Self::Sentinel(lazy) => Box::pin(async move {
                let mut c = lazy.get().await?;
                let r = c.req_packed_command(cmd).await;
                if let Err(e) = &r {
                    lazy.failed(e);
                }
                r
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(lazy) => Box::pin(async move {
                let mut c = lazy.get().await?;
                c.req_packed_commands(pipeline, offset, count).await
            }),
            Self::Sentinel(lazy) => Box::pin(async move {
                let mut c = lazy.get().await?;
                let r = c.req_packed_commands(pipeline, offset, count).await;
                if let Err(e) = &r {
                    lazy.failed(e);
                }
                r
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(c) => c.get_db(),
            Self::Cluster(_) => 0,
            Self::Sentinel(_) => 0,
        }
    }
}
