//! [`Builder`]: a [`Session`]'s options, and [`Retry`], which requests the library
//! sends a second time by itself.

use std::sync::Arc;
use std::time::Duration;

use ports::{CryptoProvider, P256PublicKey, Protocol};

use crate::session::Session;
use crate::{Endpoint, Error, InitRoute};

/// Which requests the library sends a second time by itself, after setting up a new
/// session because the server answered `SESSION_EXPIRED`. That answer is not
/// authenticated: an attacker on the path can forward a request, drop its answer and
/// forge it, so only a request that may safely run twice is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retry {
    /// `GET`, `PUT`, `DELETE` and `OPTIONS` (idempotent by HTTP's definition) are sent
    /// again; any other method gets [`Error::OutcomeUnknown`]. The default.
    #[default]
    Idempotent,
    /// Nothing is sent again: every such refusal is [`Error::OutcomeUnknown`].
    Never,
}

impl Retry {
    /// Whether a request with `method` may be sent again.
    pub fn allows(self, method: &str) -> bool {
        self == Self::Idempotent
            && ["GET", "PUT", "DELETE", "OPTIONS"]
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method))
    }
}

/// Options of a [`Session`]; [`Builder::connect`] opens it.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use session_crypto_client::{Retry, Session};
///
/// let pem = std::fs::read_to_string("server.pub.pem")?;
/// let key = session_crypto_client::parse_server_key(&pem).ok_or("not a P-256 key")?;
/// let session = Session::builder("http://127.0.0.1:3000", "MY_APP")
///     .pinned_key(key)
///     .timeout(Duration::from_secs(10))
///     .connect_timeout(Duration::from_secs(2))
///     .retry(Retry::Never)
///     .connect()
///     .await?;
/// // One session for many tasks: clones share it.
/// let other = session.clone();
/// tokio::spawn(async move { other.get("/api/orders").send().await });
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    pub(crate) url: String,
    pub(crate) client_id: String,
    pub(crate) protocol: Protocol,
    pub(crate) pinned: Vec<P256PublicKey>,
    pub(crate) crypto: Option<CryptoProvider>,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) route: InitRoute,
    pub(crate) ttl_sec: Option<u64>,
    pub(crate) retry: Retry,
    pub(crate) timeout: Option<Duration>,
    pub(crate) connect_timeout: Option<Duration>,
}

impl Builder {
    pub(crate) fn new(url: &str, client_id: &str) -> Self {
        Self {
            url: url.to_owned(),
            client_id: client_id.to_owned(),
            protocol: Protocol::V2,
            pinned: Vec::new(),
            crypto: None,
            tls: None,
            route: InitRoute::Unversioned,
            ttl_sec: None,
            retry: Retry::default(),
            timeout: None,
            connect_timeout: None,
        }
    }

    /// Which requests are sent again after a `SESSION_EXPIRED` refusal (default
    /// [`Retry::Idempotent`]).
    #[must_use]
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The time limit of every call, the set-up and a re-init included (none by
    /// default); past it [`Error::Timeout`]. A call can set its own
    /// ([`crate::RequestBuilder::timeout`]).
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// How long connecting (TCP and TLS) may take (none by default); past it
    /// [`Error::Connect`].
    #[must_use]
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = Some(limit);
        self
    }

    /// The protocol version (default 2; 1 for servers that predate it).
    #[must_use]
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Pins a server signing key (`GET /.well-known/session-crypto`, or the
    /// operator's `session-crypto keygen --signing` output, read with
    /// [`crate::parse_server_key`]): a v2 init that is not signed by a pinned key is
    /// refused. Each call adds a key to the set: during a rotation pin the `current`
    /// and the `next` key (docs/operations.md). Requires protocol 2.
    #[must_use]
    pub fn pinned_key(mut self, key: P256PublicKey) -> Self {
        self.pinned.push(key);
        self
    }

    /// Pins every key of `keys` (see [`Self::pinned_key`]); for example those
    /// [`crate::parse_server_keys`] read from a file of PEM public keys.
    #[must_use]
    pub fn pinned_keys(mut self, keys: impl IntoIterator<Item = P256PublicKey>) -> Self {
        self.pinned.extend(keys);
        self
    }

    /// The crypto backend (default: RustCrypto, with the `rustcrypto` feature).
    #[must_use]
    pub fn crypto(mut self, crypto: CryptoProvider) -> Self {
        self.crypto = Some(crypto);
        self
    }

    /// TLS settings for an `https://` URL ([`crate::tls::client_config`] makes them
    /// from the platform's roots or a CA file).
    #[must_use]
    pub fn tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Which init route to use (default `POST /session/init`).
    #[must_use]
    pub fn init_route(mut self, route: InitRoute) -> Self {
        self.route = route;
        self
    }

    /// The session lifetime to ask for (`ttlSec`; the server clamps it).
    #[must_use]
    pub fn ttl_sec(mut self, ttl_sec: u64) -> Self {
        self.ttl_sec = Some(ttl_sec);
        self
    }

    /// Connects and sets up a session.
    ///
    /// # Errors
    /// [`Error`]; [`Error::Handshake`] for a tampered init or a wrong pinned key.
    pub async fn connect(self) -> Result<Session, Error> {
        if !self.pinned.is_empty() && self.protocol != Protocol::V2 {
            return Err(Error::Invalid(
                "a pinned server key needs protocol 2".into(),
            ));
        }
        let crypto = match self.crypto {
            Some(c) => c,
            None => default_crypto()?,
        };
        let mut endpoint = Endpoint::parse(&self.url)?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.with_tls(Arc::clone(tls));
        }
        if let Some(limit) = self.connect_timeout {
            endpoint = endpoint.with_connect_timeout(limit);
        }
        Session::open(self, endpoint, crypto).await
    }
}

#[cfg(feature = "rustcrypto")]
fn default_crypto() -> Result<CryptoProvider, Error> {
    Ok(crypto_rustcrypto::PROVIDER)
}

#[cfg(not(feature = "rustcrypto"))]
fn default_crypto() -> Result<CryptoProvider, Error> {
    Err(Error::Invalid(
        "no crypto backend: enable the `rustcrypto` feature or call Builder::crypto".into(),
    ))
}
