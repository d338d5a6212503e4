//! [`Session`]: the library's API — connect, call, revoke — shared by every clone and
//! task, over a small pool of keep-alive connections.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use domain::client::ClientSession;
use ports::{CryptoProvider, P256PublicKey, Protocol};
use zeroize::Zeroizing;

use crate::builder::{Builder, Retry};
use crate::request::Prepared;
use crate::{
    Connection, Endpoint, Error, FlowError, InitRoute, Outgoing, ProtocolClient, Response,
};

mod clock;
mod pool;

use clock::{init_correcting, skew_or_error};

/// Idle connections kept for later calls (more are opened while calls run at once).
const IDLE_CONNECTIONS: usize = 16;

/// An established session: cheap to clone (every clone is the same session) and usable
/// from many tasks at once (`&self`). Each call borrows a keep-alive connection from
/// the session's pool, or opens one; a connection that failed, or whose call was
/// cancelled half-way (its future dropped, a time limit passed), is never reused, and
/// one the server closed while idle is opened again before anything is sent on it.
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoint: Endpoint,
    crypto: CryptoProvider,
    client_id: String,
    protocol: Protocol,
    pinned: Vec<P256PublicKey>,
    route: InitRoute,
    ttl_sec: Option<u64>,
    retry: Retry,
    timeout: Option<Duration>,
    /// The session in use; replaced by a re-init.
    current: RwLock<Arc<ClientSession>>,
    /// One re-init at a time, shared by every call that found the session gone.
    renewing: tokio::sync::Mutex<()>,
    /// Server − this machine (ms), from authenticated server times: every request.
    clock_offset_ms: AtomicI64,
    /// Whether an authenticated server time was learned (until then `date_offset_ms`).
    auth_clock: AtomicBool,
    /// Server − this machine (ms) by an unsealed refusal's `Date` (not authenticated):
    /// inits and idempotent calls only, until an authenticated time is known.
    date_offset_ms: AtomicI64,
    idle: Mutex<Vec<Connection>>,
    revoked: AtomicBool,
}

impl Session {
    /// A v2 session with the default backend.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn connect(url: &str, client_id: &str) -> Result<Self, Error> {
        Self::builder(url, client_id).connect().await
    }

    /// Options first (protocol, pinned keys, backend, TLS, time limits, init route,
    /// lifetime).
    pub fn builder(url: &str, client_id: &str) -> Builder {
        Builder::new(url, client_id)
    }

    pub(crate) async fn open(
        options: Builder,
        endpoint: Endpoint,
        crypto: CryptoProvider,
    ) -> Result<Self, Error> {
        let conn = Connection::open(&endpoint).await?;
        let mut client = ProtocolClient::over(conn, crypto, &options.client_id)
            .with_protocol(options.protocol)
            .with_pinned_keys(options.pinned.clone());
        let mut date_offset = 0;
        let init = init_correcting(
            &mut client,
            options.route,
            options.ttl_sec,
            &mut date_offset,
        );
        let session = match options.timeout {
            Some(limit) => tokio::time::timeout(limit, init)
                .await
                .map_err(|_| Error::Timeout(limit))??,
            None => init.await?,
        };
        let inner = Inner {
            endpoint,
            crypto,
            client_id: options.client_id,
            protocol: options.protocol,
            pinned: options.pinned,
            route: options.route,
            ttl_sec: options.ttl_sec,
            retry: options.retry,
            timeout: options.timeout,
            current: RwLock::new(Arc::new(session)),
            renewing: tokio::sync::Mutex::new(()),
            clock_offset_ms: AtomicI64::new(0),
            auth_clock: AtomicBool::new(false),
            date_offset_ms: AtomicI64::new(date_offset),
            idle: Mutex::new(vec![client.into_connection()]),
            revoked: AtomicBool::new(false),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The crypto backend in use.
    pub fn crypto(&self) -> CryptoProvider {
        self.inner.crypto
    }

    /// The session in use (for hand-made requests with [`Self::protocol_client`]).
    pub fn current(&self) -> Arc<ClientSession> {
        Arc::clone(
            &self
                .inner
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// The session's protocol version.
    pub fn protocol(&self) -> Protocol {
        self.current().protocol()
    }

    /// The id of the session in use (`S-…`, as the TypeScript library's `sessionId`).
    pub fn session_id(&self) -> String {
        let kid = self.kid();
        kid.strip_prefix("session:").unwrap_or(&kid).to_owned()
    }

    /// `X-Kid` of the session in use (`session:S-…`).
    pub fn kid(&self) -> String {
        self.current().kid().to_owned()
    }

    /// Seals `body`, sends it with `method` to `path` and returns the opened answer —
    /// [`Self::fetch`] without a content type.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn send(&self, method: &str, path: &str, body: &[u8]) -> Result<Response, Error> {
        self.request(method, path).body(body.to_vec()).send().await
    }

    /// A request to any encrypted route, a gateway route (`/api/orders`) included:
    /// `body` sealed, `content_type` sent as `X-Inner-Content-Type` (bound by v2; a
    /// gateway defaults to `application/json` without it). The answer's status is the
    /// upstream's — a sealed 404 is a [`Response`], the gateway's own errors (502, 504)
    /// are [`Error::Refused`]. When the server answers 401 `SESSION_EXPIRED`, a new
    /// session is set up (one for every call that found the old one gone); the request
    /// is sent once more, freshly sealed, only if the [`Retry`] policy allows its
    /// method (by default the idempotent ones) — otherwise the answer is
    /// [`Error::OutcomeUnknown`], since that refusal is not authenticated and the
    /// request may have run. A second `SESSION_EXPIRED` is returned as
    /// [`Error::Refused`]. Every call carries an `Idempotency-Key` the library makes for
    /// it (the same on a re-send); [`Self::fetch_keyed`] takes the application's own.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn fetch(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Response, Error> {
        let mut r = self.request(method, path).body(body.to_vec());
        if let Some(ct) = content_type {
            r = r.content_type(ct);
        }
        r.send().await
    }

    /// [`Self::fetch`] with the application's `Idempotency-Key` for the call — the
    /// header's value, quoted (`"order-1234"`): keep it when the application sends the
    /// call again after an error, so that an upstream that deduplicates runs it once.
    /// A v2 session binds it (docs/PROTOCOL.md §15); a gateway forwards it.
    ///
    /// # Errors
    /// [`Error`]; [`Error::Invalid`] for a key that is not a quoted string of 1–255
    /// visible ASCII characters without `"` or `\`.
    pub async fn fetch_keyed(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        call_key: &str,
        body: &[u8],
    ) -> Result<Response, Error> {
        let mut r = self
            .request(method, path)
            .body(body.to_vec())
            .quoted_idempotency_key(call_key);
        if let Some(ct) = content_type {
            r = r.content_type(ct);
        }
        r.send().await
    }

    /// Runs a prepared call within its time limit.
    pub(crate) async fn execute(&self, call: Prepared) -> Result<Response, Error> {
        if self.inner.revoked.load(Ordering::SeqCst) {
            return Err(Error::Revoked);
        }
        match call.timeout.or(self.inner.timeout) {
            Some(limit) => tokio::time::timeout(limit, self.run(&call))
                .await
                .map_err(|_| Error::Timeout(limit))?,
            None => self.run(&call).await,
        }
    }

    async fn run(&self, call: &Prepared) -> Result<Response, Error> {
        let headers: Vec<(&str, &str)> = call
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let request = Outgoing {
            method: &call.method,
            path: &call.path,
            content_type: call.content_type.as_deref(),
            body: &call.body,
            call_key: Some(&call.call_key),
            headers: &headers,
        };
        let session = self.current();
        let repeatable = self.inner.retry.allows(&call.method);
        let first = match self.fetch_once(&session, request, repeatable).await {
            // Refused, provably before it ran, with the server's authenticated clock
            // far from ours: corrected, the call is sent once more.
            Err(Error::RefusedSealed {
                ref code,
                server_time_ms,
                ..
            }) if code == "CRYPTO_ERROR" && self.learn_time(server_time_ms) => {
                self.fetch_once(&session, request, repeatable).await
            }
            // Refused, unsealed, while the answer's Date is far from our clock: sent
            // once more with the clock that Date gives only if running it twice is
            // harmless and no authenticated time is known; otherwise said so.
            Err(Error::ClockSkew { skew_ms, .. })
                if repeatable && !self.inner.auth_clock.load(Ordering::Relaxed) =>
            {
                self.inner
                    .date_offset_ms
                    .fetch_add(skew_ms, Ordering::Relaxed);
                self.fetch_once(&session, request, repeatable).await
            }
            other => other,
        };
        match first {
            Err(e) if e.is_session_expired() => {
                if self.inner.revoked.load(Ordering::SeqCst) {
                    return Err(outcome_unknown(e));
                }
                let fresh = self.renew(&session).await?;
                if repeatable {
                    return self.fetch_once(&fresh, request, repeatable).await;
                }
                Err(outcome_unknown(e))
            }
            other => other,
        }
    }

    async fn fetch_once(
        &self,
        session: &ClientSession,
        request: Outgoing<'_>,
        corrected: bool,
    ) -> Result<Response, Error> {
        let mut client = self.client_stamping(corrected).await?;
        let lent = client.clock_offset_ms();
        let answer = client.fetch(session, request).await;
        // A connection that carried a whole exchange (an answer, or the server's own
        // refusal) can carry the next; one that failed is dropped.
        if !matches!(answer, Err(FlowError::Transport(_) | FlowError::Connect(_))) {
            self.give_back(client, lent);
        }
        let (answer, _) = answer.map_err(|e| skew_or_error(e, lent))?;
        Ok(Response {
            status: answer.status.as_u16(),
            content_type: answer.content_type,
            headers: answer.headers,
            body: Zeroizing::new(answer.body),
        })
    }

    /// A new session in place of `failed`, unless another call already replaced it.
    async fn renew(&self, failed: &Arc<ClientSession>) -> Result<Arc<ClientSession>, Error> {
        let _one = self.inner.renewing.lock().await;
        let current = self.current();
        if !Arc::ptr_eq(&current, failed) {
            return Ok(current);
        }
        self.reinit().await?;
        Ok(self.current())
    }

    /// Sets up a new session, replacing the current one for every clone.
    ///
    /// # Errors
    /// [`Error`].
    pub async fn reinit(&self) -> Result<(), Error> {
        let mut client = self.client_stamping(true).await?;
        let lent = client.clock_offset_ms();
        let mut offset = lent;
        let session = init_correcting(
            &mut client,
            self.inner.route,
            self.inner.ttl_sec,
            &mut offset,
        )
        .await?;
        if offset != lent && !self.inner.auth_clock.load(Ordering::Relaxed) {
            self.inner.date_offset_ms.store(offset, Ordering::Relaxed);
        }
        self.give_back(client, offset);
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(session);
        Ok(())
    }

    /// Ends the session on the server (`POST /session/revoke`). Final for every clone:
    /// later calls are [`Error::Revoked`]. Revoking again sends nothing.
    ///
    /// # Errors
    /// [`Error`] (the session then still counts as revoked here).
    pub async fn revoke(&self) -> Result<(), Error> {
        if self.inner.revoked.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let mut client = self.client_stamping(true).await?;
        let lent = client.clock_offset_ms();
        let session = self.current();
        let revoke = client.revoke(&session);
        match self.inner.timeout {
            Some(limit) => tokio::time::timeout(limit, revoke)
                .await
                .map_err(|_| Error::Timeout(limit))??,
            None => revoke.await?,
        }
        self.give_back(client, lent);
        Ok(())
    }
}

/// A refusal that is not authenticated, for a call that may have run.
fn outcome_unknown(e: Error) -> Error {
    match e {
        Error::Refused {
            status, code, body, ..
        } => Error::OutcomeUnknown { status, code, body },
        other => other,
    }
}
