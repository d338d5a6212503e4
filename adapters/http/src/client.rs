//! The HTTP client side: one keep-alive HTTP/1.1 connection per [`Connection`], and a
//! [`ProtocolClient`] that runs init and purchase flows with the domain's client code.
//! Used by `session-crypto client`, `session-crypto bench` and the end-to-end tests.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use domain::ReplayPolicy;
use domain::client::{ClientError, ClientSession, Handshake};
use domain::encoding::{base64_decode, base64_encode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use ports::CryptoProvider;
use tokio::net::TcpStream;

/// Client-side failures of a flow.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The URL is not `http://host[:port]`.
    #[error("unsupported URL {0:?}: expected http://host[:port]")]
    Url(String),
    /// Connecting or talking HTTP failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered with a non-200 status.
    #[error("{path} answered {status}: {body}")]
    Status {
        /// Path requested.
        path: &'static str,
        /// Status received.
        status: StatusCode,
        /// Body, as text.
        body: String,
    },
    /// The answer did not follow the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl From<ClientError> for FlowError {
    fn from(e: ClientError) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// `http://host:port` or `https://host:port`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    https: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    /// Parses `http://host[:port][/]` or `https://host[:port][/]` (port defaults to 80
    /// or 443). An `https` endpoint needs [`Endpoint::with_tls`] before connecting.
    ///
    /// # Errors
    /// [`FlowError::Url`].
    pub fn parse(url: &str) -> Result<Self, FlowError> {
        let bad = || FlowError::Url(url.to_owned());
        let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(bad()),
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(bad());
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse().map_err(|_| bad())?)
            }
            _ => (rest, if https { 443 } else { 80 }),
        };
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            https,
            tls: None,
        })
    }

    /// The TLS client settings for an `https` endpoint (ignored for `http`).
    #[must_use]
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Whether the URL was `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One HTTP/1.1 keep-alive connection.
#[derive(Debug)]
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

impl Connection {
    /// Connects (TCP_NODELAY on).
    ///
    /// # Errors
    /// [`FlowError::Transport`].
    pub async fn open(endpoint: &Endpoint) -> Result<Self, FlowError> {
        let t = |e: &dyn std::fmt::Display| {
            FlowError::Transport(format!("{}: {e}", endpoint.authority()))
        };
        let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| t(&e))?;
        let _ = stream.set_nodelay(true);
        let sender = if endpoint.https {
            let config = endpoint.tls.clone().ok_or_else(|| {
                FlowError::Url(format!(
                    "https://{}: no TLS client settings (--ca-file)",
                    endpoint.authority()
                ))
            })?;
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
                .map_err(|e| t(&e))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| t(&format!("TLS: {e}")))?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| t(&e))?;
            tokio::spawn(conn);
            sender
        } else {
            let (sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| t(&e))?;
            tokio::spawn(conn);
            sender
        };
        let host = HeaderValue::from_str(&endpoint.authority()).map_err(|e| t(&e))?;
        Ok(Self { sender, host })
    }

    /// Sends one request and reads the whole response.
    ///
    /// # Errors
    /// [`FlowError::Transport`].
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<HttpResponse, FlowError> {
        let t = |e: &dyn std::fmt::Display| FlowError::Transport(e.to_string());
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(body.into()))
            .map_err(|e| t(&e))?;
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| t(&e))?;
            h.append(name, HeaderValue::from_str(value).map_err(|e| t(&e))?);
        }
        self.sender.ready().await.map_err(|e| t(&e))?;
        let resp = self.sender.send_request(req).await.map_err(|e| t(&e))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| t(&e))?.to_bytes();
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Milliseconds since the epoch (client clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh `<now>.<uuid v4>` for requests that carry no envelope (init).
pub fn fresh_idempotency_key(crypto: CryptoProvider) -> Result<String, FlowError> {
    let mut r = [0u8; 16];
    crypto
        .random
        .fill(&mut r)
        .map_err(|_| FlowError::Protocol("rng failure".into()))?;
    Ok(format!("{}.{}", now_ms(), domain::encoding::uuid_v4(r)))
}

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

/// The route an init goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitRoute {
    /// `POST /session/init`.
    Unversioned,
    /// `POST /v1/session/init`.
    V1,
}

/// One POST, timed, with the server's `Server-Timing` kept; any status but `expected`
/// is an error.
async fn exchange(
    conn: &mut Connection,
    path: &'static str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
    expected: StatusCode,
    timings: &mut StepTimings,
) -> Result<HttpResponse, FlowError> {
    let t = Instant::now();
    let resp = conn.send(Method::POST, path, headers, body).await?;
    timings.http = t.elapsed();
    timings.server_timing = resp.header("server-timing").map(str::to_owned);
    if resp.status != expected {
        return Err(FlowError::Status {
            path,
            status: resp.status,
            body: String::from_utf8_lossy(&resp.body).into(),
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
        let conn = Connection::open(endpoint).await?;
        Ok(Self {
            conn,
            crypto,
            client_id: client_id.to_owned(),
            window: ReplayPolicy::DEFAULT,
        })
    }

    /// The underlying connection, for hand-made requests.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Steps 1–5: key pair, init request, key derivation.
    ///
    /// # Errors
    /// [`FlowError`].
    pub async fn init(
        &mut self,
        route: InitRoute,
        ttl_sec: Option<u64>,
    ) -> Result<(ClientSession, StepTimings), FlowError> {
        let mut timings = StepTimings::default();
        let t = Instant::now();
        let handshake = Handshake::start(self.crypto)?;
        timings.crypto.push(("ecdh-keygen", t.elapsed()));
        let body = match ttl_sec {
            Some(ttl) => format!(
                r#"{{"clientPublicKey":"{}","ttlSec":{ttl}}}"#,
                base64_encode(&handshake.public_key().0)
            ),
            None => format!(
                r#"{{"clientPublicKey":"{}"}}"#,
                base64_encode(&handshake.public_key().0)
            ),
        };
        let key = fresh_idempotency_key(self.crypto)?;
        let path = match route {
            InitRoute::Unversioned => "/session/init",
            InitRoute::V1 => "/v1/session/init",
        };
        let headers = [
            ("content-type", "application/json"),
            ("x-idempotency-key", key.as_str()),
            ("x-clientid", &self.client_id),
        ];
        let resp = exchange(
            &mut self.conn,
            path,
            &headers,
            body,
            StatusCode::OK,
            &mut timings,
        )
        .await?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct InitAnswer {
            session_id: String,
            server_public_key: String,
        }
        let answer: InitAnswer = serde_json::from_slice(&resp.body)
            .map_err(|e| FlowError::Protocol(format!("init answer: {e}")))?;
        let server_key = base64_decode(&answer.server_public_key)
            .ok_or_else(|| FlowError::Protocol("serverPublicKey is not base64".into()))?;
        let t = Instant::now();
        let session = handshake.finish(&answer.session_id, &server_key, &self.client_id)?;
        timings.crypto.push(("ecdh-compute+hkdf", t.elapsed()));
        Ok((session, timings))
    }

    /// `POST /session/revoke` with an empty JSON object: ends the session (204).
    ///
    /// # Errors
    /// [`FlowError`] (a non-204 answer is [`FlowError::Status`]).
    pub async fn revoke(&mut self, session: &ClientSession) -> Result<(), FlowError> {
        let sealed = session.seal_request(now_ms(), b"{}")?;
        let headers = [
            ("content-type", "application/octet-stream"),
            ("x-kid", session.kid()),
            ("x-idempotency-key", sealed.idempotency_key.as_str()),
            ("x-clientid", session.client_id()),
        ];
        let path = "/session/revoke";
        let mut timings = StepTimings::default();
        exchange(
            &mut self.conn,
            path,
            &headers,
            sealed.envelope,
            StatusCode::NO_CONTENT,
            &mut timings,
        )
        .await?;
        Ok(())
    }

    /// Steps 6–8: seal, send, check and open the answer.
    ///
    /// # Errors
    /// [`FlowError`].
    pub async fn purchase(
        &mut self,
        session: &ClientSession,
        payload: &[u8],
    ) -> Result<(Vec<u8>, StepTimings), FlowError> {
        let mut timings = StepTimings::default();
        let t = Instant::now();
        let sealed = session.seal_request(now_ms(), payload)?;
        timings.crypto.push(("aes-gcm-encrypt", t.elapsed()));
        let headers = [
            ("content-type", "application/octet-stream"),
            ("x-kid", session.kid()),
            ("x-idempotency-key", sealed.idempotency_key.as_str()),
            ("x-clientid", session.client_id()),
        ];
        let path = "/transaction/purchase";
        let resp = exchange(
            &mut self.conn,
            path,
            &headers,
            sealed.envelope,
            StatusCode::OK,
            &mut timings,
        )
        .await?;
        if resp.header("x-kid") != Some(session.kid()) {
            return Err(FlowError::Protocol(
                "response X-Kid differs from ours".into(),
            ));
        }
        let key = resp
            .header("x-idempotency-key")
            .ok_or_else(|| FlowError::Protocol("no response X-Idempotency-Key".into()))?;
        let t = Instant::now();
        let plain = session.open_response(key, resp.body.to_vec(), now_ms(), &self.window)?;
        timings.crypto.push(("aes-gcm-decrypt", t.elapsed()));
        Ok((plain.to_vec(), timings))
    }
}
