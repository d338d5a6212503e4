//! Talking to an upstream: a connection pool per route (HTTP/1.1 connections driven by
//! their requests, `h1_pool.rs`, plain, over TLS or a Unix socket; for h2c, hyper-util's
//! client on one multiplexed connection), and reading the answer within the route's
//! timeout, body limit and the buffer budget. The forwarded request is `forwarded.rs`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::h1_pool::{Address, H1Pool, SendError};
use crate::pipeline::body::{BodyBudget, Held};

/// A route's connection pool: HTTP/1.1 connections driven by their requests
/// ([`H1Pool`]), or for h2c upstreams hyper-util's client (one multiplexed connection).
#[derive(Debug)]
pub(crate) enum Pool {
    Http1 {
        pool: H1Pool,
        /// The `Host` of every request.
        host: HeaderValue,
    },
    Http2 {
        client: Box<Client<HttpConnector, Full<Bytes>>>,
        /// `http://host:port`, before each origin-form target.
        origin: String,
    },
}

impl Pool {
    /// Keep-alive connections (90 s idle) to `origin` (`http://host:port`, or
    /// `unix:<path>`), `connect_timeout`, TCP_NODELAY; HTTP/2 with prior knowledge when
    /// `http2` (TCP only).
    pub(crate) fn new(
        origin: &str,
        connect_timeout: Duration,
        http2: bool,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<Self, String> {
        if let Some(path) = origin.strip_prefix("unix:") {
            if http2 {
                return Err("http2 is only supported over TCP (http://) upstreams".into());
            }
            return Ok(Self::Http1 {
                pool: H1Pool::new(Address::Unix(path.into()), connect_timeout),
                host: HeaderValue::from_static("localhost"),
            });
        }
        if let Some(authority) = origin.strip_prefix("https://") {
            if http2 {
                return Err("http2 (h2c) is only supported to http:// upstreams".into());
            }
            let config = tls.ok_or("an https upstream needs TLS settings")?;
            let (host, dial) = dial_address(authority, 443)?;
            let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
            return Ok(Self::Http1 {
                pool: H1Pool::new(
                    Address::Tls {
                        authority: dial,
                        server_name,
                        connector: tokio_rustls::TlsConnector::from(config),
                    },
                    connect_timeout,
                ),
                host: HeaderValue::from_str(authority).map_err(|e| e.to_string())?,
            });
        }
        let authority = origin.trim_start_matches("http://");
        if !http2 {
            let (_, dial) = dial_address(authority, 80)?;
            return Ok(Self::Http1 {
                pool: H1Pool::new(Address::Tcp(dial), connect_timeout),
                host: HeaderValue::from_str(authority).map_err(|e| e.to_string())?,
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(true)
            .build(connector);
        Ok(Self::Http2 {
            client: Box::new(client),
            origin: origin.to_owned(),
        })
    }
}

/// The host of `authority` (`host[:port]`, IPv6 in brackets) and the `host:port` to
/// dial, with `default_port` when it names none.
fn dial_address(authority: &str, default_port: u16) -> Result<(String, String), String> {
    let uri: hyper::http::uri::Authority = authority
        .parse()
        .map_err(|e| format!("{authority:?}: {e}"))?;
    let host = uri.host().trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(default_port);
    let dial = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((host.to_owned(), dial))
}

/// Why the upstream gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection (refused, unreachable, connect timeout) or a broken one.
    Unreachable,
    /// No whole answer within the route's timeout.
    Timeout,
    /// The answer's body is over the route's limit.
    TooLarge,
    /// The answer cannot be passed on (a content type that is not visible ASCII).
    BadAnswer,
    /// A final answer with a 1xx status (`101 Switching Protocols`, or any other the
    /// client library did not take as interim): nothing to seal, the exchange is over.
    Informational,
    /// The answer would take the buffer budget past its bound.
    OverBudget,
}

impl Failure {
    /// The metrics and log label.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::TooLarge => "too_large",
            Self::BadAnswer => "bad_answer",
            Self::Informational => "informational",
            Self::OverBudget => "over_budget",
        }
    }
}

/// The upstream's answer, read whole.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    /// Its `Content-Type`, empty when it sent none.
    pub(crate) content_type: String,
    pub(crate) body: Vec<u8>,
}

impl From<SendError> for Failure {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Connect(e) => tracing::info!(error = %e, "cannot connect to the upstream"),
            SendError::Http(e) => tracing::info!(error = %e, "upstream request failed"),
            SendError::Closed => {
                tracing::info!("the upstream closed the connection before answering")
            }
        }
        Self::Unreachable
    }
}

/// An answer's share of the buffer budget: what is reserved so far, grown as the answer
/// arrives, and held (by the sealed answer's body) until the client has it.
pub(crate) struct AnswerBudget<'a> {
    pub(crate) budget: &'a BodyBudget,
    pub(crate) held: Held,
    pub(crate) reserved: usize,
}

impl AnswerBudget<'_> {
    /// Makes sure `total` bytes are reserved.
    pub(crate) fn cover(&mut self, total: usize) -> Result<(), Failure> {
        if total > self.reserved {
            self.budget
                .take(&mut self.held, total - self.reserved)
                .map_err(|_| Failure::OverBudget)?;
            self.reserved = total;
        }
        Ok(())
    }
}

/// Sends `req` (origin-form target) and reads the whole answer within `timeout`, at
/// most `max_body` bytes, each byte of it (and the tag its sealing adds) taken from
/// `budget` before it is kept.
pub(crate) async fn send(
    pool: &Pool,
    mut req: Request<Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
    budget: &mut AnswerBudget<'_>,
) -> Result<Answer, Failure> {
    let exchange = async {
        match pool {
            Pool::Http1 { pool, host } => {
                req.headers_mut().insert(header::HOST, host.clone());
                pool.send(req, |resp| read_answer(resp, max_body, budget))
                    .await
            }
            Pool::Http2 { client, origin } => {
                // The client picks the connection by the absolute URI.
                let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                *req.uri_mut() = format!("{origin}{target}")
                    .parse()
                    .map_err(|_| Failure::Unreachable)?;
                let resp = client.request(req).await.map_err(|e| {
                    tracing::info!(error = %e, connect = e.is_connect(), "upstream request failed");
                    Failure::Unreachable
                })?;
                read_answer(resp, max_body, budget).await
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

/// The answer's status, content type and body (at most `max_body` bytes).
async fn read_answer(
    resp: hyper::Response<hyper::body::Incoming>,
    max_body: usize,
    budget: &mut AnswerBudget<'_>,
) -> Result<Answer, Failure> {
    let (parts, body) = resp.into_parts();
    if parts.status.is_informational() {
        return Err(Failure::Informational);
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return Err(Failure::TooLarge);
    }
    let content_type = match parts.headers.get(header::CONTENT_TYPE) {
        None => String::new(),
        Some(v) => v.to_str().map_err(|_| Failure::BadAnswer)?.to_owned(),
    };
    // Read straight into the buffer the sealing encrypts in place, with room for its
    // tag; every byte counted against the budget before it is kept.
    let tag = ports::crypto::TAG_LEN;
    let expected = declared.map_or(0, |n| n as usize);
    budget.cover(expected + tag)?;
    let mut plaintext = Vec::with_capacity(expected + tag);
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| Failure::Unreachable)?.into_data() else {
            continue; // trailers
        };
        if plaintext.len() + data.len() > max_body {
            return Err(Failure::TooLarge);
        }
        budget.cover(plaintext.len() + data.len() + tag)?;
        plaintext.extend_from_slice(&data);
    }
    Ok(Answer {
        status: parts.status,
        content_type,
        body: plaintext,
    })
}
