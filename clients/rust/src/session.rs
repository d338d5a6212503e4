//! [`Session`]: the library's API — connect, send, revoke.

use std::sync::Arc;

use domain::client::ClientSession;
use ports::{CryptoProvider, P256PublicKey, Protocol};
use zeroize::Zeroizing;

use crate::{Endpoint, Error, InitRoute, Outgoing, ProtocolClient, Response};

/// Which requests the library sends a second time by itself, after setting up a new
/// session because the server answered `SESSION_EXPIRED`. That answer is not
/// authenticated: an attacker on the path can forward a request, drop its answer and
/// forge it, so only a request that may safely run twice is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retry {
    /// `GET`, `HEAD`, `PUT`, `DELETE` and `OPTIONS` (idempotent by HTTP's definition)
    /// are sent again; any other method gets [`Error::OutcomeUnknown`]. The default.
    #[default]
    Idempotent,
    /// Nothing is sent again: every such refusal is [`Error::OutcomeUnknown`].
    Never,
}

impl Retry {
    /// Whether a request with `method` may be sent again.
    pub fn allows(self, method: &str) -> bool {
        self == Self::Idempotent
            && ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method))
    }
}

/// Options of a [`Session`]; [`Builder::connect`] opens it.
#[derive(Debug, Clone)]
pub struct Builder {
    url: String,
    client_id: String,
    protocol: Protocol,
    pinned: Vec<P256PublicKey>,
    crypto: Option<CryptoProvider>,
    tls: Option<Arc<rustls::ClientConfig>>,
    route: InitRoute,
    ttl_sec: Option<u64>,
    retry: Retry,
}

impl Builder {
    /// Which requests are sent again after a `SESSION_EXPIRED` refusal (default
    /// [`Retry::Idempotent`]).
    #[must_use]
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The protocol version (default 2; 1 for servers that predate it).
    #[must_use]
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Pins a server signing key (`GET /.well-known/session-crypto`, or the
    /// operator's `session-crypto keygen --signing` output): a v2 init that is not
    /// signed by a pinned key is refused. Each call adds a key to the set: during a
    /// rotation pin the `current` and the `next` key (docs/operations.md). Requires
    /// protocol 2.
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

    /// TLS settings for an `https://` URL.
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
        let crypto = match self.crypto {
            Some(c) => c,
            None => default_crypto()?,
        };
        if !self.pinned.is_empty() && self.protocol != Protocol::V2 {
            return Err(Error::Protocol(
                "a pinned server key needs protocol 2".into(),
            ));
        }
        let mut endpoint = Endpoint::parse(&self.url)?;
        if let Some(tls) = self.tls {
            endpoint = endpoint.with_tls(tls);
        }
        let mut client = ProtocolClient::connect_to(&endpoint, crypto, &self.client_id)
            .await?
            .with_protocol(self.protocol)
            .with_pinned_keys(self.pinned);
        let (session, _) = client.init(self.route, self.ttl_sec).await?;
        Ok(Session {
            client,
            session,
            route: self.route,
            ttl_sec: self.ttl_sec,
            retry: self.retry,
        })
    }
}

#[cfg(feature = "rustcrypto")]
fn default_crypto() -> Result<CryptoProvider, Error> {
    Ok(crypto_rustcrypto::PROVIDER)
}

#[cfg(not(feature = "rustcrypto"))]
fn default_crypto() -> Result<CryptoProvider, Error> {
    Err(Error::Protocol(
        "no crypto backend: enable the `rustcrypto` feature or call Builder::crypto".into(),
    ))
}

/// An established session over one keep-alive connection.
#[derive(Debug)]
pub struct Session {
    client: ProtocolClient,
    session: ClientSession,
    route: InitRoute,
    ttl_sec: Option<u64>,
    retry: Retry,
}

impl Session {
    /// A v2 session with the default backend.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn connect(url: &str, client_id: &str) -> Result<Self, Error> {
        Self::builder(url, client_id).connect().await
    }

    /// Options first (protocol, pinned key, backend, TLS, init route, lifetime).
    pub fn builder(url: &str, client_id: &str) -> Builder {
        Builder {
            url: url.to_owned(),
            client_id: client_id.to_owned(),
            protocol: Protocol::V2,
            pinned: Vec::new(),
            crypto: None,
            tls: None,
            route: InitRoute::Unversioned,
            ttl_sec: None,
            retry: Retry::default(),
        }
    }

    /// The session's protocol version.
    pub fn protocol(&self) -> Protocol {
        self.session.protocol()
    }

    /// The clock correction in use (server − this machine, ms), learned only from
    /// authenticated server times: sealed refusals and v2 answers.
    pub fn clock_offset_ms(&self) -> i64 {
        self.client.clock_offset_ms()
    }

    /// `X-Kid` of the current session (`session:S-…`).
    pub fn kid(&self) -> &str {
        self.session.kid()
    }

    /// Seals `body`, sends it with `method` to `path` (path and optional query; v2
    /// binds both) and returns the opened answer — [`Self::fetch`] without a content
    /// type.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn send(&mut self, method: &str, path: &str, body: &[u8]) -> Result<Response, Error> {
        self.fetch(method, path, None, body).await
    }

    /// A request to any encrypted route, a gateway route (`/api/orders`) included:
    /// `body` sealed, `content_type` sent as `X-Inner-Content-Type` (bound by v2; a
    /// gateway defaults to `application/json` without it). The answer's status is the
    /// upstream's — a sealed 404 is a [`Response`], the gateway's own errors (502, 504)
    /// are [`Error::Refused`]. When the server answers 401 `SESSION_EXPIRED`, a new
    /// session is set up; the request is sent once more, freshly sealed, only if the
    /// [`Retry`] policy allows its method (by default the idempotent ones) — otherwise
    /// the answer is [`Error::OutcomeUnknown`], since that refusal is not
    /// authenticated and the request may have run. A second `SESSION_EXPIRED` is
    /// returned as [`Error::Refused`].
    ///
    /// Every call carries an `Idempotency-Key` the library makes for it (the same on a
    /// re-send of the call); [`Self::fetch_keyed`] takes the application's own.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn fetch(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Response, Error> {
        let mut random = [0u8; 16];
        self.client
            .crypto()
            .random
            .fill(&mut random)
            .map_err(|_| Error::Protocol("the random number generator failed".into()))?;
        let key = format!("\"{}\"", domain::encoding::uuid_v4(random));
        self.fetch_keyed(method, path, content_type, &key, body)
            .await
    }

    /// [`Self::fetch`] with the application's `Idempotency-Key` for the call — the
    /// header's value, quoted (`"order-1234"`): keep it when the application sends the
    /// call again after an error, so that an upstream that deduplicates runs it once.
    /// A v2 session binds it (docs/PROTOCOL.md §15); a gateway forwards it.
    ///
    /// # Errors
    /// [`Error`]; [`Error::Protocol`] for a key that is not a quoted string of 1–255
    /// visible ASCII characters without `"` or `\`.
    pub async fn fetch_keyed(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        call_key: &str,
        body: &[u8],
    ) -> Result<Response, Error> {
        domain::CallKey::parse(call_key)
            .map_err(|_| Error::Protocol(format!("invalid Idempotency-Key {call_key:?}")))?;
        let request = Outgoing {
            method,
            path,
            content_type,
            body,
            call_key: Some(call_key),
        };
        let first = match self.fetch_once(request).await {
            // Refused, provably before it ran, with the server's authenticated clock
            // far from ours: corrected, the call is sent once more.
            Err(Error::RefusedSealed {
                ref code,
                server_time_ms,
                ..
            }) if code == "CRYPTO_ERROR" && self.client.learn_time(server_time_ms) => {
                self.fetch_once(request).await
            }
            other => other,
        };
        match first {
            Err(e) if e.is_session_expired() => {
                self.reinit().await?;
                if self.retry.allows(method) {
                    return self.fetch_once(request).await;
                }
                match e {
                    Error::Refused { status, code, body } => {
                        Err(Error::OutcomeUnknown { status, code, body })
                    }
                    other => Err(other),
                }
            }
            other => other,
        }
    }

    async fn fetch_once(&mut self, request: Outgoing<'_>) -> Result<Response, Error> {
        let (answer, _) = self.client.fetch(&self.session, request).await?;
        Ok(Response {
            status: answer.status.as_u16(),
            content_type: answer.content_type,
            body: Zeroizing::new(answer.body),
        })
    }

    /// Sets up a new session on the same connection, replacing the current one.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn reinit(&mut self) -> Result<(), Error> {
        let (session, _) = self.client.init(self.route, self.ttl_sec).await?;
        self.session = session;
        Ok(())
    }

    /// Ends the session on the server (`POST /session/revoke`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn revoke(mut self) -> Result<(), Error> {
        self.client.revoke(&self.session).await.map_err(Error::from)
    }

    /// The underlying protocol client and session, for hand-made requests.
    pub fn parts(&mut self) -> (&mut ProtocolClient, &ClientSession) {
        (&mut self.client, &self.session)
    }
}
