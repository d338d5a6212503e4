//! Talking to an upstream: a connection pool per route (HTTP/1.1 connections driven by
//! their requests, `h1_pool.rs`; for h2c, hyper-util's client on one multiplexed
//! connection), the forwarded request's headers, and reading the answer within the
//! route's timeout and body limit.

use domain::headers::name;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::h1_pool::{Address, H1Pool, SendError};
use crate::pipeline::body::{BodyBudget, Held};

/// The identity headers the gateway sets; a client's copies are removed.
pub(crate) const X_SESSION_CLIENT_ID: HeaderName = HeaderName::from_static(name::SESSION_CLIENT_ID);
pub(crate) const X_SESSION_ID: HeaderName = HeaderName::from_static(name::SESSION_ID);
pub(crate) const X_SESSION_PROTOCOL: HeaderName = HeaderName::from_static(name::SESSION_PROTOCOL);

/// Headers never forwarded: hop-by-hop ones (RFC 9110 §7.6.1; every `Proxy-*` name is
/// dropped too), the ones the gateway sets itself, and the protocol's own (they describe
/// the envelope, not the request).
const NOT_FORWARDED: [&str; 19] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "host",
    "content-length",
    "content-type",
    name::KID,
    name::IDEMPOTENCY_KEY,
    name::CLIENT_ID,
    name::INNER_CONTENT_TYPE,
    name::ENVELOPE,
    name::REQUEST_ID,
    "x-forwarded-for",
    "x-forwarded-proto",
    "forwarded",
];

/// Headers an upstream may take as an instruction about the request itself — which
/// method or URL it "really" is, or who sent it — and which any party on the path can
/// add (they are outside the AAD): dropped unless a route lists them (`pass_headers`).
/// The gateway sets `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` itself.
pub(crate) const DROPPED_BY_DEFAULT: [&str; 12] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-method",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-real-ip",
    "x-client-ip",
];

/// Whether a client header (its name as hyper holds it: lower case) goes upstream.
///
/// A name with `_` never does: CGI, WSGI and several servers read `X_Session_Id` and
/// `X-Session-Id` as the same `HTTP_X_SESSION_ID`, so an underscore name could pass for
/// any header the gateway sets or drops (nginx drops them by default too). Names are
/// compared folded (`_` read as `-`) all the same.
fn forwardable(name: &str, named_by_connection: &[String], pass: &[HeaderName]) -> bool {
    if name.contains('_') {
        return false;
    }
    let folded = name;
    if NOT_FORWARDED.contains(&folded)
        || folded.starts_with("proxy-")
        || folded.starts_with(name::SESSION_PREFIX)
        || named_by_connection.iter().any(|c| c == folded)
    {
        return false;
    }
    !DROPPED_BY_DEFAULT.contains(&folded) || pass.iter().any(|p| p.as_str() == folded)
}

/// For the fuzz target (`crypto_conformance::fuzz::gateway_forwarding`): the names of
/// the headers that go upstream from a client request with these header names (and the
/// route passing `pass`), and the names the gateway sets itself, from one forwarded
/// request each.
#[doc(hidden)]
pub fn forwarded_names(client: &[HeaderName], pass: &[HeaderName]) -> (Vec<String>, Vec<String>) {
    let identity = Identity {
        client_id: "c",
        session: "s",
        protocol: 2,
        request_id: "r",
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        proto: "http",
    };
    let names = |headers: &HeaderMap| {
        request(
            Method::POST,
            "/",
            headers,
            None,
            &identity,
            pass,
            Bytes::new(),
        )
        .map(|r| r.headers().keys().map(|k| k.as_str().to_owned()).collect())
        .unwrap_or_default()
    };
    let own: Vec<String> = names(&HeaderMap::new());
    let mut headers = HeaderMap::new();
    for name in client {
        headers.append(name.clone(), HeaderValue::from_static("x"));
    }
    let all: Vec<String> = names(&headers);
    let from_client = all.into_iter().filter(|n| !own.contains(n)).collect();
    (from_client, own)
}

/// Whether a route may list `name` in `pass_headers`: not a header the gateway always
/// drops or sets itself, and not a name with `_`.
pub(crate) fn passable(name: &HeaderName) -> bool {
    forwardable(name.as_str(), &[], std::slice::from_ref(name))
}

/// The content type of a forwarded request whose client named none.
pub(crate) const DEFAULT_CONTENT_TYPE: &str = "application/json";

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

/// Who the request comes from, as the upstream is told.
pub(crate) struct Identity<'a> {
    pub(crate) client_id: &'a str,
    /// The keyed hash of the session id.
    pub(crate) session: &'a str,
    pub(crate) protocol: u8,
    pub(crate) request_id: &'a str,
    /// The client's address (the TCP peer, or behind trusted proxies the address they
    /// name), for `X-Forwarded-For` and `Forwarded`.
    pub(crate) client_ip: std::net::IpAddr,
    /// `http` or `https`: how the client reached the gateway.
    pub(crate) proto: &'static str,
}

/// The forwarded request: the client's end-to-end headers that are
/// [`forwardable`] (not hop-by-hop, not the protocol's, not in the `x-session-*` space,
/// no `_`, no override or forwarding header the route does not pass), the inner content
/// type, the identity headers, the request id and the gateway's own `X-Forwarded-For`,
/// `X-Forwarded-Proto` and `Forwarded`.
pub(crate) fn request(
    method: Method,
    target: &str,
    headers: &HeaderMap,
    content_type: Option<&str>,
    identity: &Identity<'_>,
    pass: &[HeaderName],
    body: Bytes,
) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase().replace('_', "-"))
        .collect();
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = target.parse::<hyper::Uri>()?;
    let out = req.headers_mut();
    for (header_name, value) in headers {
        if forwardable(header_name.as_str(), &named_by_connection, pass) {
            out.append(header_name.clone(), value.clone());
        }
    }
    let text = |v: &str| HeaderValue::from_str(v);
    out.insert(
        header::CONTENT_TYPE,
        text(content_type.unwrap_or(DEFAULT_CONTENT_TYPE))?,
    );
    out.insert(X_SESSION_CLIENT_ID, text(identity.client_id)?);
    out.insert(X_SESSION_ID, text(identity.session)?);
    out.insert(
        X_SESSION_PROTOCOL,
        HeaderValue::from(u16::from(identity.protocol)),
    );
    out.insert(name::REQUEST_ID, text(identity.request_id)?);
    let ip = identity.client_ip;
    out.insert("x-forwarded-for", text(&ip.to_string())?);
    out.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(identity.proto),
    );
    // RFC 7239 §6: an IPv6 address is quoted and bracketed.
    let node = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    out.insert(
        "forwarded",
        text(&format!("for={node};proto={}", identity.proto))?,
    );
    Ok(req)
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
    fn cover(&mut self, total: usize) -> Result<(), Failure> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_protocol_and_spoofed_identity_headers_are_not_forwarded() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("host", "gateway.example"),
            ("content-type", "application/octet-stream"),
            ("x-kid", "session:S-00"),
            ("x-session-client-id", "mallory"),
            ("x-session-id", "forged"),
            ("X-Session-Protocol", "2"),
            ("x-session-admin", "1"),
            ("x-request-id", "client-chosen"),
            ("accept", "application/json"),
            ("authorization", "Bearer app-token"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        let identity = alice();
        let req = request(
            Method::POST,
            "http://127.0.0.1:1/x",
            &h,
            Some("text/plain"),
            &identity,
            &[],
            Bytes::from_static(b"hi"),
        )
        .unwrap();
        let out = req.headers();
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        for gone in [
            "connection",
            "x-drop-me",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "te",
            "host",
            "x-kid",
            "x-session-admin",
        ] {
            assert!(!names.contains(&gone), "{gone} forwarded: {names:?}");
        }
        assert_eq!(out["content-type"], "text/plain");
        assert_eq!(out["x-session-client-id"], "alice");
        assert_eq!(out["x-session-id"], "hash");
        assert_eq!(out["x-session-protocol"], "2");
        assert_eq!(out["x-request-id"], "rid-1");
        assert_eq!(out.get_all("x-session-client-id").iter().count(), 1);
        assert_eq!(out["accept"], "application/json");
        assert_eq!(out["authorization"], "Bearer app-token");
        assert!(out.contains_key("traceparent"));

        let req = request(
            Method::GET,
            "http://127.0.0.1:1/x",
            &HeaderMap::new(),
            None,
            &identity,
            &[],
            Bytes::new(),
        )
        .unwrap();
        assert_eq!(req.headers()["content-type"], DEFAULT_CONTENT_TYPE);
    }

    fn alice() -> Identity<'static> {
        Identity {
            client_id: "alice",
            session: "hash",
            protocol: 2,
            request_id: "rid-1",
            client_ip: "192.0.2.7".parse().unwrap(),
            proto: "https",
        }
    }

    fn forwarded(headers: &[(&str, &str)], pass: &[HeaderName]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in headers {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let req = request(Method::GET, "/x", &h, None, &alice(), pass, Bytes::new()).unwrap();
        req.headers().clone()
    }

    #[test]
    fn underscore_names_never_reach_the_upstream() {
        let out = forwarded(
            &[
                ("x_session_client_id", "admin"),
                ("x-session_id", "forged"),
                ("x_session_protocol", "1"),
                ("x_request_id", "forged"),
                ("content_type", "text/evil"),
                ("x_custom", "1"),
                ("connection", "x_hop"),
                ("x-hop", "1"),
            ],
            &[],
        );
        for n in out.keys() {
            assert!(!n.as_str().contains('_'), "{n} forwarded");
        }
        assert_eq!(out["x-session-client-id"], "alice");
        assert_eq!(out.get_all("x-session-client-id").iter().count(), 1);
        // `Connection: x_hop` names `x-hop` once folded.
        assert!(!out.contains_key("x-hop"));
    }

    #[test]
    fn override_and_forwarding_headers_are_dropped_unless_passed_and_the_gateway_sets_its_own() {
        let client = [
            ("x-http-method-override", "DELETE"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "for=10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("proxy-authorization", "Basic x"),
            ("proxy-anything", "1"),
        ];
        let out = forwarded(&client, &[]);
        for gone in [
            "x-http-method-override",
            "x-original-url",
            "x-rewrite-url",
            "x-forwarded-host",
            "x-real-ip",
            "proxy-authorization",
            "proxy-anything",
        ] {
            assert!(!out.contains_key(gone), "{gone} forwarded");
        }
        assert_eq!(out["x-forwarded-for"], "192.0.2.7");
        assert_eq!(out.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(out["forwarded"], "for=192.0.2.7;proto=https");
        // A route that passes one gets it; the gateway's own three stay its own.
        let pass = [
            HeaderName::from_static("x-forwarded-host"),
            HeaderName::from_static("x-real-ip"),
        ];
        let out = forwarded(&client, &pass);
        assert_eq!(out["x-forwarded-host"], "evil.example");
        assert_eq!(out["x-real-ip"], "10.0.0.1");
        assert_eq!(out["x-forwarded-for"], "192.0.2.7");
        assert!(!out.contains_key("x-http-method-override"));
    }

    #[test]
    fn only_headers_dropped_by_default_can_be_passed() {
        for ok in ["x-forwarded-host", "x-http-method-override", "x-real-ip"] {
            assert!(passable(&HeaderName::from_static(ok)), "{ok}");
        }
        for refused in [
            "x-forwarded-for",
            "forwarded",
            "x-session-id",
            "x-kid",
            "connection",
            "proxy-authorization",
            "x-request-id",
            "x_custom",
        ] {
            let name = HeaderName::from_bytes(refused.as_bytes()).unwrap();
            assert!(!passable(&name), "{refused}");
        }
    }

    #[test]
    fn an_ipv6_client_is_bracketed_in_forwarded() {
        let mut who = alice();
        who.client_ip = "2001:db8::1".parse().unwrap();
        let req = request(
            Method::GET,
            "/x",
            &HeaderMap::new(),
            None,
            &who,
            &[],
            Bytes::new(),
        )
        .unwrap();
        assert_eq!(
            req.headers()["forwarded"],
            "for=\"[2001:db8::1]\";proto=https"
        );
        assert_eq!(req.headers()["x-forwarded-for"], "2001:db8::1");
    }
}
