//! [`Session`]: the library's API — connect, call, revoke — shared by every clone and
//! task, over a small pool of keep-alive connections.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use domain::client::ClientSession;
use ports::{CryptoProvider, P256PublicKey, Protocol};
use zeroize::Zeroizing;

use crate::builder::{Builder, Retry};
use crate::request::{Prepared, RequestBuilder};
use crate::{
    Connection, Endpoint, Error, FlowError, InitRoute, Outgoing, ProtocolClient, Response,
};

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

    /// The clock correction in use (server − this machine, ms): learned from
    /// authenticated server times (sealed refusals, v2 answers); before one is known,
    /// the one taken from an unsealed refusal's `Date` for inits and idempotent calls.
    pub fn clock_offset_ms(&self) -> i64 {
        if self.inner.auth_clock.load(Ordering::Relaxed) {
            self.inner.clock_offset_ms.load(Ordering::Relaxed)
        } else {
            self.inner.date_offset_ms.load(Ordering::Relaxed)
        }
    }

    /// Sets the clock correction, as if learned from an authenticated server time
    /// (tests; the library learns it by itself).
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.inner
            .clock_offset_ms
            .store(offset_ms, Ordering::Relaxed);
        self.inner.auth_clock.store(true, Ordering::Relaxed);
    }

    /// The offset that stamps a request: the authenticated one once known; before, the
    /// `Date` one for what may safely be sent twice (`corrected`) only.
    fn stamp_offset(&self, corrected: bool) -> i64 {
        if self.inner.auth_clock.load(Ordering::Relaxed) {
            self.inner.clock_offset_ms.load(Ordering::Relaxed)
        } else if corrected {
            self.inner.date_offset_ms.load(Ordering::Relaxed)
        } else {
            0
        }
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

    /// A request to `path` (path and optional query; v2 binds both) with `method` (any
    /// case), to fill in and [`RequestBuilder::send`] — as with reqwest.
    pub fn request(&self, method: &str, path: &str) -> RequestBuilder<'_> {
        RequestBuilder::new(self, method, path)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> RequestBuilder<'_> {
        self.request("GET", path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> RequestBuilder<'_> {
        self.request("POST", path)
    }

    /// `PUT path`.
    pub fn put(&self, path: &str) -> RequestBuilder<'_> {
        self.request("PUT", path)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> RequestBuilder<'_> {
        self.request("DELETE", path)
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

    /// A protocol client over a pooled (or new) connection, with this session's
    /// settings and clock: for hand-made requests, and for every call.
    ///
    /// # Errors
    /// [`Error::Connect`].
    pub async fn protocol_client(&self) -> Result<ProtocolClient, Error> {
        self.client_stamping(true).await
    }

    async fn client_stamping(&self, corrected: bool) -> Result<ProtocolClient, Error> {
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => Connection::open(&self.inner.endpoint).await?,
        };
        let mut client = ProtocolClient::over(conn, self.inner.crypto, &self.inner.client_id)
            .with_protocol(self.inner.protocol)
            .with_pinned_keys(self.inner.pinned.clone());
        client.set_clock_offset_ms(self.stamp_offset(corrected));
        Ok(client)
    }

    /// Takes back a client whose call completed: its clock, and its connection for the
    /// next call.
    fn give_back(&self, client: ProtocolClient, lent_offset: i64) {
        // The client moves its clock only on an authenticated server time.
        if client.clock_offset_ms() != lent_offset {
            self.set_clock_offset_ms(client.clock_offset_ms());
        }
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(client.into_connection());
        }
    }

    fn learn_time(&self, server_ms: u64) -> bool {
        let mut offset = self.inner.clock_offset_ms.load(Ordering::Relaxed);
        let changed = crate::protocol::learn_offset(&mut offset, server_ms);
        if changed {
            self.set_clock_offset_ms(offset);
        }
        changed
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

/// A refusal the answer's `Date` explains (400 `CRYPTO_ERROR` with the server's clock
/// more than 30 s from the one that stamped the request, this machine's + `lent_ms`)
/// as [`Error::ClockSkew`]; any other error as it is.
fn skew_or_error(e: FlowError, lent_ms: i64) -> Error {
    if let FlowError::Status {
        status,
        ref body,
        date_skew_ms: Some(raw_skew),
        ..
    } = e
        && status == hyper::StatusCode::BAD_REQUEST
        && (raw_skew - lent_ms).unsigned_abs() > crate::protocol::SKEW_FIX_MS
    {
        let code = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        if code == "CRYPTO_ERROR" {
            return Error::ClockSkew {
                skew_ms: raw_skew - lent_ms,
                status: status.as_u16(),
                code,
            };
        }
    }
    e.into()
}

/// An init, sent once more with the clock an unsealed refusal's `Date` gives when it
/// was refused while the clocks disagree (an init may run twice: it only sets up a
/// session); `offset_ms` is the stamping offset, updated when corrected.
async fn init_correcting(
    client: &mut ProtocolClient,
    route: InitRoute,
    ttl_sec: Option<u64>,
    offset_ms: &mut i64,
) -> Result<ClientSession, Error> {
    client.set_clock_offset_ms(*offset_ms);
    let lent = *offset_ms;
    match client
        .init(route, ttl_sec)
        .await
        .map_err(|e| skew_or_error(e, lent))
    {
        Err(Error::ClockSkew { skew_ms, .. }) => {
            *offset_ms += skew_ms;
            client.set_clock_offset_ms(*offset_ms);
            let lent = *offset_ms;
            let (session, _) = client
                .init(route, ttl_sec)
                .await
                .map_err(|e| skew_or_error(e, lent))?;
            Ok(session)
        }
        other => other.map(|(session, _)| session),
    }
}
