//! One keep-alive HTTP/1.1 (or HTTP/2 over TLS) connection and its responses.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::FlowError;

/// `http://host:port` or `https://host:port`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    https: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Option<std::time::Duration>,
    /// Where the server is mounted (`/sc` of `https://host/sc/`; empty: the root).
    prefix: String,
}

impl Endpoint {
    /// Parses `http://host[:port][/prefix][/]` or `https://…` (port defaults to 80 or
    /// 443). A path prefix is where the server is mounted behind a proxy that strips
    /// it: every request goes to `<prefix><path>`, while v2 binds `<path>`, what the
    /// server receives. An `https` endpoint needs [`Endpoint::with_tls`] before
    /// connecting.
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
        let (rest, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if rest.is_empty()
            || prefix.contains(['?', '#', '%', ' '])
            || prefix.split('/').any(|s| s == "." || s == "..")
        {
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
            connect_timeout: None,
            prefix: prefix.to_owned(),
        })
    }

    /// How long connecting (TCP and TLS) may take; past it [`FlowError::Connect`].
    #[must_use]
    pub fn with_connect_timeout(mut self, limit: std::time::Duration) -> Self {
        self.connect_timeout = Some(limit);
        self
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

/// One HTTP/1.1 keep-alive connection to an endpoint, opened again when it is found
/// closed before a request is sent (the server's idle close, a restart, a call dropped
/// half-way): nothing was sent on the old one, so nothing can run twice.
#[derive(Debug)]
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    host: HeaderValue,
    endpoint: Endpoint,
}

impl Connection {
    /// Connects (TCP_NODELAY on), within the endpoint's connect timeout if it has one.
    ///
    /// # Errors
    /// [`FlowError::Connect`] (nothing was sent), [`FlowError::Url`] (https without TLS
    /// settings).
    pub async fn open(endpoint: &Endpoint) -> Result<Self, FlowError> {
        match endpoint.connect_timeout {
            None => Self::open_now(endpoint).await,
            Some(limit) => tokio::time::timeout(limit, Self::open_now(endpoint))
                .await
                .unwrap_or_else(|_| {
                    Err(FlowError::Connect(format!(
                        "{}: not connected within {} ms",
                        endpoint.authority(),
                        limit.as_millis()
                    )))
                }),
        }
    }

    async fn open_now(endpoint: &Endpoint) -> Result<Self, FlowError> {
        // Nothing is sent before the connection stands: a failure here is a Connect.
        let t = |e: &dyn std::fmt::Display| {
            FlowError::Connect(format!("{}: {e}", endpoint.authority()))
        };
        let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| t(&e))?;
        let _ = stream.set_nodelay(true);
        let sender = if endpoint.https {
            let config = endpoint.tls.clone().ok_or_else(|| {
                FlowError::Url(format!(
                    "https://{}: no TLS client settings (Builder::tls or Endpoint::with_tls)",
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
        Ok(Self {
            sender,
            host,
            endpoint: endpoint.clone(),
        })
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
        let target = format!("{}{path}", self.endpoint.prefix);
        let mut req = Request::builder()
            .method(method)
            .uri(target)
            .body(Full::new(body.into()))
            .map_err(|e| t(&e))?;
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| t(&e))?;
            h.append(name, HeaderValue::from_str(value).map_err(|e| t(&e))?);
        }
        if self.sender.is_closed() || self.sender.ready().await.is_err() {
            // Closed before this request: open a new connection and send it there.
            *self = Self::open(&self.endpoint).await?;
            self.sender.ready().await.map_err(|e| t(&e))?;
        }
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
