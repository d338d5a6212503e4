//! [`ProtocolClient`]: init and encrypted-request flows with the domain's client code,
//! timed step by step.

use domain::headers::name;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domain::client::ClientSession;
use domain::{ReplayPolicy, RequestLine};
use hyper::{Method, StatusCode};
use ports::{CryptoProvider, P256PublicKey, Protocol};

mod fetch;
mod init;

pub(crate) use fetch::SKEW_FIX_MS;
pub use fetch::{Fetched, Outgoing, is_protocol_header};
pub use init::InitRoute;

use super::{Connection, Endpoint, FlowError, HttpResponse, now_ms};

/// Takes `server_ms`, an authenticated server time, into `offset_ms` (server − this
/// machine) when it is more than 30 s from the corrected clock and at most a day from
/// this machine's. Returns whether the correction changed.
pub(crate) fn learn_offset(offset_ms: &mut i64, server_ms: u64) -> bool {
    let raw = now_ms();
    let skew =
        i64::try_from(server_ms).unwrap_or(i64::MAX) - i64::try_from(raw).unwrap_or(i64::MAX);
    if skew.abs_diff(*offset_ms) > SKEW_FIX_MS && skew.unsigned_abs() <= fetch::MAX_SKEW_FIX_MS {
        *offset_ms = skew;
        return true;
    }
    false
}

/// The plaintext of a revocation (the route refuses any other).
pub const REVOKE_PLAINTEXT: &[u8] = br#"{"action":"revoke"}"#;

/// Where a flow step spent its time.
#[derive(Debug, Clone, Default)]
pub struct StepTimings {
    /// Client-side crypto steps, in order.
    pub crypto: Vec<(&'static str, Duration)>,
    /// Request written → response read.
    pub http: Duration,
    /// The server's `Server-Timing` header, verbatim.
    pub server_timing: Option<String>,
}

impl StepTimings {
    /// The server's steps from its `Server-Timing` header, in order: each metric's name
    /// and its `dur` (milliseconds, as the server wrote it). Metrics without a `dur`
    /// are left out.
    pub fn server_steps(&self) -> impl Iterator<Item = (&str, &str)> {
        self.server_timing
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter_map(|metric| {
                let mut params = metric.trim().split(';');
                let name = params.next().filter(|n| !n.is_empty())?;
                let dur = params.find_map(|p| p.trim().strip_prefix("dur="))?;
                Some((name, dur))
            })
    }
}

/// One POST, timed, with the server's `Server-Timing` kept; any status but `expected`
/// is an error.
async fn exchange(
    conn: &mut Connection,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
    expected: StatusCode,
    timings: &mut StepTimings,
) -> Result<HttpResponse, FlowError> {
    let t = Instant::now();
    let resp = conn.send(method, path, headers, body).await?;
    timings.http = t.elapsed();
    timings.server_timing = resp.header("server-timing").map(str::to_owned);
    if resp.status != expected {
        return Err(FlowError::Status {
            path: path.to_owned(),
            status: resp.status,
            body: String::from_utf8_lossy(&resp.body).into(),
            retry_after: resp
                .header("retry-after")
                .and_then(|v| v.trim().parse().ok()),
            date_skew_ms: crate::http_date::skew_ms(resp.header("date")),
        });
    }
    Ok(resp)
}

/// Runs protocol flows over one connection.
#[derive(Debug)]
pub struct ProtocolClient {
    conn: Connection,
    crypto: CryptoProvider,
    client_id: String,
    window: ReplayPolicy,
    protocol: Protocol,
    pinned: Vec<P256PublicKey>,
    unmarked_v1_answers: bool,
    /// Added to this machine's clock to stamp requests and check answers (ms).
    clock_offset_ms: i64,
}

impl ProtocolClient {
    /// Connects.
    ///
    /// # Errors
    /// [`FlowError`].
    pub async fn connect(
        url: &str,
        crypto: CryptoProvider,
        client_id: &str,
    ) -> Result<Self, FlowError> {
        Self::connect_to(&Endpoint::parse(url)?, crypto, client_id).await
    }

    /// Connects to an endpoint (use this for `https` with [`Endpoint::with_tls`]).
    ///
    /// # Errors
    /// [`FlowError::Url`] or [`FlowError::Transport`].
    pub async fn connect_to(
        endpoint: &Endpoint,
        crypto: CryptoProvider,
        client_id: &str,
    ) -> Result<Self, FlowError> {
        Ok(Self::over(
            Connection::open(endpoint).await?,
            crypto,
            client_id,
        ))
    }

    /// A client over an open connection (a [`crate::Session`] lends it one of its
    /// connections per call).
    pub fn over(conn: Connection, crypto: CryptoProvider, client_id: &str) -> Self {
        Self {
            conn,
            crypto,
            client_id: client_id.to_owned(),
            window: ReplayPolicy::DEFAULT,
            protocol: Protocol::V1,
            pinned: Vec::new(),
            unmarked_v1_answers: false,
            clock_offset_ms: 0,
        }
    }

    /// The connection back, for another call.
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    /// The protocol version [`Self::init`] asks for (default v1, so that hand-made
    /// v1 requests keep working; the [`crate::Session`] API defaults to v2).
    #[must_use]
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Pinned server signing keys: a v2 init whose signature verifies under none of
    /// them is refused (none: signatures are not checked).
    #[must_use]
    pub fn with_pinned_keys(mut self, keys: Vec<P256PublicKey>) -> Self {
        self.pinned = keys;
        self
    }

    /// The crypto backend in use.
    pub fn crypto(&self) -> CryptoProvider {
        self.crypto
    }

    /// The clock correction in use (server − this machine, ms): added to this
    /// machine's clock to stamp requests and check answers' timestamps.
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms
    }

    /// Sets the clock correction — from an authenticated server time only (a sealed
    /// refusal's, or a v2 answer's timestamp), never from an unauthenticated `Date`.
    pub fn set_clock_offset_ms(&mut self, offset_ms: i64) {
        self.clock_offset_ms = offset_ms;
    }

    /// Takes `server_ms`, an authenticated server time, as the clock when it is more
    /// than 30 s from the corrected clock (and at most a day from this machine's).
    /// Returns whether the correction changed.
    pub fn learn_time(&mut self, server_ms: u64) -> bool {
        learn_offset(&mut self.clock_offset_ms, server_ms)
    }

    /// This machine's clock, corrected (ms since the epoch).
    pub(crate) fn now_ms(&self) -> u64 {
        now_ms().saturating_add_signed(self.clock_offset_ms)
    }

    /// The pinned server keys.
    pub fn pinned_keys(&self) -> &[P256PublicKey] {
        &self.pinned
    }

    /// v1 sessions set up from now on accept answers without the `rsp_` mark of this
    /// server's answers — only for a server that does not mark them (the reference
    /// server): see [`ClientSession::accept_unmarked_v1_answers`].
    #[must_use]
    pub fn with_unmarked_v1_answers(mut self, accept: bool) -> Self {
        self.unmarked_v1_answers = accept;
        self
    }

    /// The version [`Self::init`] asks for.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The underlying connection, for hand-made requests.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// `POST /session/revoke` with `{"action":"revoke"}`: ends the session (204).
    ///
    /// # Errors
    /// [`FlowError`] (a non-204 answer is [`FlowError::Status`]).
    pub async fn revoke(&mut self, session: &ClientSession) -> Result<(), FlowError> {
        let path = "/session/revoke";
        let line = RequestLine {
            method: "POST",
            target: path,
            content_type: "",
        };
        let sealed = session.seal(self.now_ms(), line, REVOKE_PLAINTEXT)?;
        let headers = [
            ("content-type", "application/octet-stream"),
            (name::KID, session.kid()),
            (name::IDEMPOTENCY_KEY, sealed.idempotency_key.as_str()),
            (name::CLIENT_ID, session.client_id()),
        ];
        let mut timings = StepTimings::default();
        exchange(
            &mut self.conn,
            Method::POST,
            path,
            &headers,
            sealed.envelope,
            StatusCode::NO_CONTENT,
            &mut timings,
        )
        .await?;
        Ok(())
    }

    /// `POST /transaction/purchase` with `payload` (steps 6–8).
    ///
    /// # Errors
    /// [`FlowError`].
    pub async fn purchase(
        &mut self,
        session: &ClientSession,
        payload: &[u8],
    ) -> Result<(Vec<u8>, StepTimings), FlowError> {
        self.send(session, "POST", "/transaction/purchase", payload)
            .await
    }

    /// Any encrypted route (steps 6–8): seal `payload` for `method` and `path` (a path
    /// and optional query, bound by a v2 session), send it, check the answer's headers
    /// and open it. Only a 200 is a success.
    ///
    /// # Errors
    /// [`FlowError`] (any other answer is [`FlowError::Status`]).
    pub async fn send(
        &mut self,
        session: &ClientSession,
        method: &str,
        path: &str,
        payload: &[u8],
    ) -> Result<(Vec<u8>, StepTimings), FlowError> {
        let request = Outgoing {
            call_key: None,
            method,
            path,
            content_type: None,
            body: payload,
            headers: &[],
        };
        let (answer, timings) = self.fetch(session, request).await?;
        if answer.status != StatusCode::OK {
            return Err(FlowError::Status {
                path: path.to_owned(),
                status: answer.status,
                body: String::from_utf8_lossy(&answer.body).into(),
                retry_after: None,
                date_skew_ms: None,
            });
        }
        Ok((answer.body, timings))
    }
}
