//! Routing, request decoding and the mapping of domain results to responses.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domain::encoding::{base64_decode, base64_encode, iso_timestamp};
use domain::limits::{IpRange, rate_limited_ip};
use domain::purchase::{PayloadError, Purchase};
use domain::service::{KeyRelease, PurchaseOutcome};
use domain::{
    Family, InitBody, InitError, InitOutcome, InitRequest, PurchaseError, PurchaseRequest,
    ReleaseError, RequestedTtl, ResponseContext, SessionService,
};
use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ports::{Clock, NonceError, NonceStore, Quotas, SessionCache, SessionStore};
use serde::Serialize;
use tracing::{error, info};

use crate::health::{Dependency, HealthCheck};
use crate::wire::{
    Body, InitJson, InitResponse, JSON, OCTETS, PurchaseJson, PurchaseResponse, code_error,
    identity_error, is_json_object, json, response,
};

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public API: unversioned routes, `POST /v1/session/init`, health, CORS.
    Public,
    /// The private-network listener: the `/v1` family including the raw key release
    /// `GET /v1/session/{id}`, and health. Never expose it publicly.
    Internal,
}

/// CORS policy of the public listener (PROTOCOL.md §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// Any origin (reflected, with `Vary: Origin`).
    AnyOrigin,
    /// Only these exact origins.
    Origins(Vec<String>),
    /// No CORS headers at all.
    Disabled,
}

impl Cors {
    fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            Self::AnyOrigin => true,
            Self::Origins(list) => origin.to_str().is_ok_and(|o| list.iter().any(|a| a == o)),
            Self::Disabled => false,
        }
    }
}

/// HTTP-level limits and policies.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest accepted request body (bytes); larger → 413.
    pub body_limit: usize,
    /// Longest time to receive a request body; slower → 408.
    pub body_timeout: Duration,
    /// CORS on the public listener.
    pub cors: Cors,
    /// Peers whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpRange>,
    /// Client addresses the per-IP rate limit does not apply to (`RATE_LIMIT_EXEMPT`).
    pub rate_limit_exempt: Vec<IpRange>,
}

/// Addresses exempt from the per-IP limit unless configured otherwise: loopback and
/// private ranges (a proxy in front, or a client on the same network).
pub const DEFAULT_RATE_LIMIT_EXEMPT: &str =
    "127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

/// [`DEFAULT_RATE_LIMIT_EXEMPT`], parsed.
pub fn default_exempt_ranges() -> Vec<IpRange> {
    IpRange::parse_list(DEFAULT_RATE_LIMIT_EXEMPT).unwrap_or_default()
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            cors: Cors::AnyOrigin,
            trusted_proxies: Vec::new(),
            rate_limit_exempt: default_exempt_ranges(),
        }
    }
}

/// The service behind the HTTP routes.
#[derive(Debug)]
pub struct Api<S, C, N, K, Q, H> {
    service: SessionService<S, C, N, K, Q>,
    health: H,
    config: ApiConfig,
}

const EXPOSED: HeaderValue =
    HeaderValue::from_static("Server-Timing, X-Kid, X-Idempotency-Key, Retry-After, X-Request-Id");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const ALLOWED_HEADERS: HeaderValue =
    HeaderValue::from_static("Content-Type, X-Idempotency-Key, X-ClientId, X-Kid, Authorization");
const X_KID: HeaderName = HeaderName::from_static("x-kid");
const X_IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("x-idempotency-key");
const X_CLIENT_ID: HeaderName = HeaderName::from_static("x-clientid");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

fn header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    // A value that is not visible ASCII cannot satisfy any header grammar of the
    // protocol; treat it as malformed text the domain will refuse.
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"))
}

#[derive(Clone, Copy)]
enum Route {
    Init(Family),
    Purchase,
    Revoke,
    ReleaseKey,
    Health,
    Ready,
    OpenApi,
    Page,
    PageScript,
}

/// Which listeners serve a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The public listener only.
    Public,
    /// The internal listener only.
    Internal,
    /// Both.
    Both,
}

impl Scope {
    fn serves(self, listener: Listener) -> bool {
        match self {
            Self::Both => true,
            Self::Public => listener == Listener::Public,
            Self::Internal => listener == Listener::Internal,
        }
    }
}

/// Every route: scope, method, path (`{id}` matches the rest of the path), handler.
/// Exact paths come before templates.
const ROUTES: &[(Scope, &str, &str, Route)] = &[
    (
        Scope::Public,
        "POST",
        "/session/init",
        Route::Init(Family::Unversioned),
    ),
    (
        Scope::Public,
        "POST",
        "/transaction/purchase",
        Route::Purchase,
    ),
    (Scope::Public, "POST", "/session/revoke", Route::Revoke),
    (
        Scope::Both,
        "POST",
        "/v1/session/init",
        Route::Init(Family::V1),
    ),
    (Scope::Both, "GET", "/health", Route::Health),
    (Scope::Both, "GET", "/ready", Route::Ready),
    (Scope::Public, "GET", "/openapi.json", Route::OpenApi),
    (Scope::Public, "GET", "/", Route::Page),
    (Scope::Public, "GET", "/demo.js", Route::PageScript),
    (
        Scope::Internal,
        "GET",
        "/v1/session/{id}",
        Route::ReleaseKey,
    ),
];

/// The routes served: `(scope, method, path template)`.
pub fn routes() -> impl Iterator<Item = (Scope, &'static str, &'static str)> {
    ROUTES
        .iter()
        .map(|(scope, method, path, _)| (*scope, *method, *path))
}

/// The route, its method and its path template.
fn route(listener: Listener, path: &str) -> Option<(Route, &'static str, &'static str)> {
    ROUTES
        .iter()
        .find(|(scope, _, template, _)| {
            scope.serves(listener)
                && match template.strip_suffix("{id}") {
                    Some(prefix) => path.starts_with(prefix),
                    None => *template == path,
                }
        })
        .map(|(_, method, template, route)| (*route, *method, *template))
}

fn family_of(path: &str) -> Family {
    if path.starts_with("/v1/") {
        Family::V1
    } else {
        Family::Unversioned
    }
}

enum BodyFailure {
    TooLarge,
    Timeout,
    Broken,
}

fn server_timing(steps: &[(&'static str, u64)], started: Instant) -> HeaderValue {
    // `<name>;dur=<ms with 3 decimals>`, formatted with integer arithmetic (this runs
    // on every init and purchase).
    fn push(s: &mut String, name: &str, ns: u64) {
        let us = ns / 1000;
        let _ = write!(s, "{name};dur={}.{:03}", us / 1000, us % 1000);
    }
    let mut s = String::with_capacity(192);
    for (name, ns) in steps {
        push(&mut s, name, *ns);
        s.push_str(", ");
    }
    push(
        &mut s,
        "total",
        u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
    );
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("total;dur=0.000"))
}

impl<S, C, N, K, Q, H> Api<S, C, N, K, Q, H>
where
    S: SessionStore + 'static,
    C: SessionCache + 'static,
    N: NonceStore + 'static,
    K: Clock + 'static,
    Q: Quotas + 'static,
    H: HealthCheck,
{
    /// Wraps a service.
    pub fn new(service: SessionService<S, C, N, K, Q>, health: H, config: ApiConfig) -> Arc<Self> {
        Arc::new(Self {
            service,
            health,
            config,
        })
    }

    /// The service.
    pub fn service(&self) -> &SessionService<S, C, N, K, Q> {
        &self.service
    }

    /// Answers one request from the TCP peer `peer`, inside a `request` span carrying
    /// a request id (the client's `X-Request-Id` when it is 1–64 of `[A-Za-z0-9._-]`,
    /// else a fresh one), which is echoed in the response. Never fails: every problem
    /// becomes a JSON response.
    pub async fn handle<B>(
        &self,
        listener: Listener,
        peer: IpAddr,
        req: Request<B>,
    ) -> Response<Body>
    where
        B: HttpBody<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        use tracing::Instrument as _;
        let started = Instant::now();
        let id = request_id(req.headers());
        // The route template, never the raw path (which may hold a session id).
        let found = route(listener, req.uri().path());
        let template = found.map_or("unmatched", |(_, _, t)| t);
        let span =
            tracing::info_span!("request", id = %id, method = %req.method(), route = template);
        let mut resp = self
            .handle_inner(listener, peer, found, req, started)
            .instrument(span)
            .await;
        record_request(listener, template, resp.status(), started);
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(X_REQUEST_ID, v);
        }
        resp
    }

    async fn handle_inner<B>(
        &self,
        listener: Listener,
        peer: IpAddr,
        found: Option<(Route, &'static str, &'static str)>,
        req: Request<B>,
        started: Instant,
    ) -> Response<Body>
    where
        B: HttpBody<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let origin = req.headers().get(header::ORIGIN).cloned();
        let path = req.uri().path().to_owned();
        let mut resp = if req.method() == Method::OPTIONS && listener == Listener::Public {
            self.preflight(&path, origin.as_ref())
        } else {
            self.dispatch(peer, found, req, &path, started).await
        };
        if listener == Listener::Public
            && let Some(origin) = origin.filter(|o| self.config.cors.allows(o))
        {
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        resp
    }

    fn preflight(&self, path: &str, origin: Option<&HeaderValue>) -> Response<Body> {
        let Some((_, method, _)) = route(Listener::Public, path) else {
            return not_found(path);
        };
        let mut r = response(StatusCode::NO_CONTENT, JSON, Bytes::new());
        r.headers_mut().remove(header::CONTENT_TYPE);
        if origin.is_some_and(|o| self.config.cors.allows(o)) {
            let h = r.headers_mut();
            let allow = if method == "GET" {
                "GET, OPTIONS"
            } else {
                "POST, OPTIONS"
            };
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(allow),
            );
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS);
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        r
    }

    async fn dispatch<B>(
        &self,
        peer: IpAddr,
        found: Option<(Route, &'static str, &'static str)>,
        req: Request<B>,
        path: &str,
        started: Instant,
    ) -> Response<Body>
    where
        B: HttpBody<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some((route, method, template)) = found else {
            return not_found(path);
        };
        if req.method().as_str() != method {
            let mut r = match family_of(path) {
                Family::V1 => identity_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                Family::Unversioned => {
                    code_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED")
                }
            };
            let allow = if method == "GET" { "GET" } else { "POST" };
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            return r;
        }
        match route {
            Route::OpenApi => response(StatusCode::OK, JSON, OPENAPI),
            Route::Page => static_asset(PAGE, "text/html; charset=utf-8"),
            Route::PageScript => static_asset(PAGE_SCRIPT, "text/javascript; charset=utf-8"),
            Route::Health => self.health().await,
            Route::Ready => self.ready().await,
            Route::ReleaseKey => self.release_key(&req, path).await,
            Route::Init(family) => {
                let (parts, body) = req.into_parts();
                match self.read_body(&parts.headers, body).await {
                    Ok(bytes) => {
                        self.init(family, peer, &parts.headers, &bytes, started)
                            .await
                    }
                    Err(f) => body_failure(family, template, f),
                }
            }
            Route::Purchase | Route::Revoke => {
                let (parts, body) = req.into_parts();
                match self.read_body(&parts.headers, body).await {
                    Ok(bytes) if matches!(route, Route::Purchase) => {
                        self.purchase(&parts.headers, Vec::from(bytes), started)
                            .await
                    }
                    Ok(bytes) => self.revoke(&parts.headers, Vec::from(bytes), started).await,
                    Err(f) => body_failure(Family::Unversioned, template, f),
                }
            }
        }
    }

    /// Reads the whole body, at most `body_limit` bytes, within `body_timeout`.
    ///
    /// An oversized body is still read and discarded — up to 8 × the limit, within the
    /// same deadline — before the 413 goes out ("lingering close"): a server that closes
    /// on unread data makes the kernel reset the connection, and the client would see a
    /// write error instead of the 413. Larger bodies are refused without reading them.
    async fn read_body<B>(&self, headers: &HeaderMap, body: B) -> Result<Bytes, BodyFailure>
    where
        B: HttpBody<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.config.body_limit;
        let drain_limit = limit.saturating_mul(8);
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > drain_limit as u64) {
            return Err(BodyFailure::TooLarge);
        }
        let read = async {
            let mut body = std::pin::pin!(body);
            let mut buf = bytes::BytesMut::new();
            let mut seen = 0usize;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.map_err(Into::into)?.into_data() else {
                    continue; // trailers
                };
                seen = seen.saturating_add(data.len());
                if seen > drain_limit {
                    return Ok(None);
                }
                if seen <= limit {
                    buf.extend_from_slice(&data);
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((seen <= limit).then(|| buf.freeze()))
        };
        match tokio::time::timeout(self.config.body_timeout, read).await {
            Err(_) => Err(BodyFailure::Timeout),
            Ok(Ok(Some(bytes))) => Ok(bytes),
            Ok(Ok(None)) => Err(BodyFailure::TooLarge),
            Ok(Err(_)) => Err(BodyFailure::Broken),
        }
    }

    async fn init(
        &self,
        family: Family,
        peer: IpAddr,
        headers: &HeaderMap,
        body: &[u8],
        started: Instant,
    ) -> Response<Body> {
        let remote_ip = if self.service.config().limits.init_per_ip.is_off() {
            None
        } else {
            rate_limited_ip(
                peer,
                header(headers, &X_FORWARDED_FOR),
                &self.config.trusted_proxies,
                &self.config.rate_limit_exempt,
            )
        };
        let req = InitRequest {
            family,
            idempotency_key: header(headers, &X_IDEMPOTENCY_KEY),
            client_id: header(headers, &X_CLIENT_ID),
            authorization: header(headers, &header::AUTHORIZATION),
            remote_ip,
            body: parse_init_body(body),
        };
        match self.service.init(req).await {
            Ok(out) => init_success(family, &out, started),
            Err(e) => init_failure(family, &e),
        }
    }

    async fn purchase(
        &self,
        headers: &HeaderMap,
        mut body: Vec<u8>,
        started: Instant,
    ) -> Response<Body> {
        let kid = header(headers, &X_KID);
        let req = PurchaseRequest {
            kid,
            idempotency_key: header(headers, &X_IDEMPOTENCY_KEY),
            client_id: header(headers, &X_CLIENT_ID),
            body: &mut body,
        };
        let service = &self.service;
        let result = service.purchase(req, purchase_response).await;
        match result {
            Ok(out) => purchase_success(kid.unwrap_or_default(), out, started),
            Err(e) => purchase_failure("/transaction/purchase", &e),
        }
    }

    async fn revoke(
        &self,
        headers: &HeaderMap,
        mut body: Vec<u8>,
        started: Instant,
    ) -> Response<Body> {
        let req = PurchaseRequest {
            kid: header(headers, &X_KID),
            idempotency_key: header(headers, &X_IDEMPOTENCY_KEY),
            client_id: header(headers, &X_CLIENT_ID),
            body: &mut body,
        };
        let check = |plain: &[u8]| {
            if is_json_object(plain)
                && serde_json::from_slice::<serde::de::IgnoredAny>(plain).is_ok()
            {
                Ok(())
            } else {
                Err(PayloadError::Shape(
                    "revocation plaintext is not a JSON object",
                ))
            }
        };
        match self.service.revoke(req, check).await {
            Ok(timings) => {
                info!(route = "/session/revoke", "session revoked");
                if metrics_on() {
                    metrics::counter!("session_crypto_sessions_revoked_total").increment(1);
                }
                let mut r = response(StatusCode::NO_CONTENT, JSON, Bytes::new());
                r.headers_mut().remove(header::CONTENT_TYPE);
                r.headers_mut()
                    .insert(SERVER_TIMING, server_timing(timings.entries(), started));
                r
            }
            Err(e) => purchase_failure("/session/revoke", &e),
        }
    }

    async fn release_key<B>(&self, req: &Request<B>, path: &str) -> Response<Body> {
        let id = path.trim_start_matches("/v1/session/");
        match self
            .service
            .release_key(id, header(req.headers(), &X_CLIENT_ID))
            .await
        {
            Ok(KeyRelease { record }) => {
                #[derive(Serialize)]
                #[serde(rename_all = "camelCase")]
                struct R<'a> {
                    session_id: &'a str,
                    session_key: &'a str,
                    expires_at: u64,
                }
                let key = zeroize::Zeroizing::new(base64_encode(record.key.expose()));
                info!(session = %&record.id[..10], "session key released on the internal listener");
                json(
                    StatusCode::OK,
                    &R {
                        session_id: &record.id,
                        session_key: &key,
                        expires_at: record.expires_at_ms,
                    },
                )
            }
            Err(e) => {
                let status = match e {
                    ReleaseError::MissingClientId | ReleaseError::MalformedId => {
                        StatusCode::BAD_REQUEST
                    }
                    ReleaseError::NotFound => StatusCode::NOT_FOUND,
                    ReleaseError::Forbidden => StatusCode::FORBIDDEN,
                    ReleaseError::Expired => StatusCode::GONE,
                    ReleaseError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                };
                info!(route = "GET /v1/session/{id}", status = status.as_u16(), reason = %e, "rejected");
                record_rejection(
                    "/v1/session/{id}",
                    match e {
                        ReleaseError::MissingClientId | ReleaseError::MalformedId => "bad_header",
                        ReleaseError::NotFound => "unknown_session",
                        ReleaseError::Forbidden => "client_mismatch",
                        ReleaseError::Expired => "expired_session",
                        ReleaseError::Store(_) => "store_unavailable",
                    },
                );
                identity_error(status, &e.to_string())
            }
        }
    }

    async fn health(&self) -> Response<Body> {
        let report = self.health.report().await;
        let ok = report.postgres != Dependency::Down && report.redis != Dependency::Down;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct H<'a> {
            status: &'a str,
            timestamp: String,
            redis: &'a str,
            postgres: &'a str,
            session_store: &'a str,
            crypto_backend: &'a str,
        }
        json(
            StatusCode::OK,
            &H {
                status: if ok { "ok" } else { "degraded" },
                timestamp: iso_timestamp(self.service.clock().now_ms()),
                redis: report.redis.health_word(),
                postgres: report.postgres.health_word(),
                session_store: report.session_store,
                crypto_backend: self.service.crypto().name,
            },
        )
    }

    async fn ready(&self) -> Response<Body> {
        let report = self.health.report().await;
        #[derive(Serialize)]
        struct R<'a> {
            status: &'a str,
            database: &'a str,
            cache: &'a str,
            timestamp: String,
        }
        let cache = match report.redis {
            Dependency::Up => "up",
            Dependency::Down => "degraded",
            Dependency::Disabled => "disabled",
        };
        let timestamp = iso_timestamp(self.service.clock().now_ms());
        if report.postgres == Dependency::Down {
            let cache = if cache == "degraded" { "down" } else { cache };
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                &R {
                    status: "unhealthy",
                    database: "down",
                    cache,
                    timestamp,
                },
            )
        } else {
            json(
                StatusCode::OK,
                &R {
                    status: "ready",
                    database: "up",
                    cache,
                    timestamp,
                },
            )
        }
    }
}

/// The OpenAPI 3.1 description of every route (`GET /openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");
const PAGE: &str = include_str!("../static/index.html");
const PAGE_SCRIPT: &str = include_str!("../static/demo.js");

/// A page or script of the browser demo: same-origin only, no inline code.
fn static_asset(body: &'static str, content_type: &'static str) -> Response<Body> {
    let mut r = response(
        StatusCode::OK,
        HeaderValue::from_static(content_type),
        Bytes::from_static(body.as_bytes()),
    );
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' \
             'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// The client's `X-Request-Id` if it is safe to log and echo, else a fresh id: 16 hex
/// digits from a per-process start value and a counter (unique, not secret).
fn request_id(headers: &HeaderMap) -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    if let Some(id) = headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok())
        && (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return id.to_owned();
    }
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        // Any varying value will do: ids only need to differ between restarts.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
    });
    format!(
        "{:016x}",
        start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
    )
}

/// Whether the server collects metrics (a recorder is installed): otherwise the
/// per-request label building is skipped altogether.
static METRICS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns metric recording on; call after installing a `metrics` recorder.
pub fn enable_metrics() {
    METRICS.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn metrics_on() -> bool {
    METRICS.load(std::sync::atomic::Ordering::Relaxed)
}

/// `http_requests_total` and `http_request_duration_seconds` per listener, route
/// template (`unmatched` for unknown paths, so that scanners cannot create label values
/// at will) and status. No-ops unless the server installed a metrics recorder.
fn record_request(listener: Listener, route: &'static str, status: StatusCode, started: Instant) {
    if !metrics_on() {
        return;
    }
    let listener = match listener {
        Listener::Public => "public",
        Listener::Internal => "internal",
    };
    let status = status.as_str().to_owned();
    metrics::counter!("http_requests_total", "listener" => listener, "route" => route, "status" => status.clone())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "listener" => listener, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
}

/// `session_crypto_rejections_total{route, reason}`.
fn record_rejection(route: &'static str, reason: &'static str) {
    if !metrics_on() {
        return;
    }
    metrics::counter!("session_crypto_rejections_total", "route" => route, "reason" => reason)
        .increment(1);
}

fn not_found(path: &str) -> Response<Body> {
    match family_of(path) {
        Family::V1 => identity_error(StatusCode::NOT_FOUND, "no such route"),
        Family::Unversioned => code_error(StatusCode::NOT_FOUND, "NOT_FOUND"),
    }
}

fn body_failure(family: Family, route: &'static str, failure: BodyFailure) -> Response<Body> {
    let (status, code, message) = match failure {
        BodyFailure::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "request body too large",
        ),
        BodyFailure::Timeout => (
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            "request body not received in time",
        ),
        BodyFailure::Broken => (
            StatusCode::BAD_REQUEST,
            "CRYPTO_ERROR",
            "request body could not be read",
        ),
    };
    info!(status = status.as_u16(), reason = message, "rejected");
    record_rejection(
        route,
        match failure {
            BodyFailure::TooLarge => "body_too_large",
            BodyFailure::Timeout => "body_timeout",
            BodyFailure::Broken => "body_unreadable",
        },
    );
    match family {
        Family::V1 => identity_error(status, message),
        Family::Unversioned => code_error(status, code),
    }
}

/// Parses an init body (JSON object with `clientPublicKey` in base64 and optional
/// `ttlSec`); the error is a reason for the logs.
///
/// # Errors
/// The reason the body is unusable.
pub fn parse_init_body(body: &[u8]) -> Result<InitBody, &'static str> {
    if !is_json_object(body) {
        return Err("body is not a JSON object");
    }
    let parsed: InitJson<'_> =
        serde_json::from_slice(body).map_err(|_| "body is not valid init JSON")?;
    let key_text = parsed.client_public_key.unwrap_or_default();
    let client_public_key = if key_text.is_empty() {
        Vec::new()
    } else {
        base64_decode(&key_text).ok_or("clientPublicKey is not base64")?
    };
    let ttl = match parsed.ttl_sec {
        None => RequestedTtl::Absent,
        Some(raw) => {
            let text = raw.get();
            match text.bytes().next() {
                Some(b'-' | b'0'..=b'9') => text
                    .parse()
                    .map_or(RequestedTtl::NotANumber, RequestedTtl::Number),
                _ => RequestedTtl::NotANumber,
            }
        }
    };
    Ok(InitBody {
        client_public_key,
        ttl,
    })
}

fn init_success(family: Family, out: &InitOutcome, started: Instant) -> Response<Body> {
    if metrics_on() {
        metrics::counter!("session_crypto_sessions_created_total", "family" => match family {
            Family::Unversioned => "unversioned",
            Family::V1 => "v1",
        })
        .increment(1);
    }
    let key = base64_encode(&out.server_public_key.0);
    let mut r = json(
        StatusCode::OK,
        &InitResponse {
            session_id: out.session_id.as_str(),
            server_public_key: &key,
            enc_alg: out.enc_alg,
            expires_in_sec: out.expires_in_sec,
        },
    );
    let h = r.headers_mut();
    if family == Family::V1
        && let Ok(v) = HeaderValue::from_str(out.session_id.as_str())
    {
        h.insert(X_KID, v);
    }
    h.insert(SERVER_TIMING, server_timing(out.timings.entries(), started));
    r
}

fn init_failure(family: Family, e: &InitError) -> Response<Body> {
    let route = match family {
        Family::Unversioned => "/session/init",
        Family::V1 => "/v1/session/init",
    };
    let status = match (family, e) {
        (_, InitError::Crypto) => StatusCode::INTERNAL_SERVER_ERROR,
        (_, InitError::Store(_) | InitError::Quota(_)) => StatusCode::SERVICE_UNAVAILABLE,
        (_, InitError::RateLimited { .. } | InitError::TooManySessions) => {
            StatusCode::TOO_MANY_REQUESTS
        }
        (Family::V1, InitError::Replay) => StatusCode::CONFLICT,
        (Family::V1, InitError::NonceStore(_)) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    if status.is_server_error() {
        error!(route, status = status.as_u16(), reason = %e, "init failed");
    } else {
        info!(route, status = status.as_u16(), reason = %e, "rejected");
    }
    record_rejection(route, e.reason());
    let mut r = match family {
        Family::V1 => identity_error(status, v1_message(e)),
        Family::Unversioned => code_error(
            status,
            match (status, e) {
                (StatusCode::SERVICE_UNAVAILABLE, _) => "SERVICE_UNAVAILABLE",
                (StatusCode::INTERNAL_SERVER_ERROR, _) => "INTERNAL_ERROR",
                (_, InitError::TooManySessions) => "TOO_MANY_SESSIONS",
                (StatusCode::TOO_MANY_REQUESTS, _) => "RATE_LIMITED",
                _ => "CRYPTO_ERROR",
            },
        ),
    };
    if let InitError::RateLimited { retry_after_ms, .. } = e {
        // Whole seconds, rounded up, so a retry at that time is not refused again.
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_ms.div_ceil(1000)),
        );
    }
    r
}

/// Short reasons for `/v1` bodies. Like the identity service, they name the failed
/// check class but never which cryptographic step failed.
fn v1_message(e: &InitError) -> &'static str {
    match e {
        InitError::Header(_) => "missing or malformed header",
        InitError::OutsideWindow => "timestamp outside the allowed window",
        InitError::Body(_) => "invalid request body",
        InitError::PublicKey(_) => "invalid clientPublicKey",
        InitError::Ttl => "invalid ttlSec",
        InitError::Replay => "replayed request",
        InitError::NonceStore(NonceError::Full) => "replay protection at capacity",
        InitError::NonceStore(NonceError::Unavailable(_)) => "replay protection unavailable",
        InitError::Crypto => "internal error",
        InitError::Store(_) => "session store unavailable",
        InitError::RateLimited { .. } => "too many requests, retry later",
        InitError::TooManySessions => "too many live sessions for this client id",
        InitError::Quota(_) => "rate limiting unavailable",
    }
}

/// Parses a purchase plaintext, confirms it with the service and returns the response
/// plaintext (JSON, §9 field order, `amount` echoed as sent).
///
/// # Errors
/// [`PayloadError`] for anything but a valid purchase.
pub fn purchase_response(plain: &[u8], context: &ResponseContext) -> Result<Vec<u8>, PayloadError> {
    if !is_json_object(plain) {
        return Err(PayloadError::Shape("plaintext is not a JSON object"));
    }
    let req: PurchaseJson<'_> = serde_json::from_slice(plain)
        .map_err(|_| PayloadError::Shape("plaintext is not purchase JSON"))?;
    let receipt = Purchase::validate(&req.scheme_code, req.amount.get())?
        .confirm(context.transaction_random, context.now_ms);
    let resp = PurchaseResponse {
        status: "SUCCESS",
        transaction_id: &receipt.transaction_id,
        scheme_code: receipt.scheme_code,
        amount: req.amount,
        timestamp: &receipt.timestamp,
        message: &receipt.message,
    };
    let mut out = Vec::with_capacity(256);
    serde_json::to_writer(&mut out, &resp)
        .map_err(|_| PayloadError::Shape("response serialisation"))?;
    Ok(out)
}

fn purchase_success(kid: &str, out: PurchaseOutcome, started: Instant) -> Response<Body> {
    let mut r = response(StatusCode::OK, OCTETS, out.envelope);
    let h = r.headers_mut();
    if let (Ok(kid), Ok(key)) = (
        HeaderValue::from_str(kid),
        HeaderValue::from_str(&out.idempotency_key),
    ) {
        h.insert(X_KID, kid);
        h.insert(X_IDEMPOTENCY_KEY, key);
    }
    h.insert(SERVER_TIMING, server_timing(out.timings.entries(), started));
    r
}

fn purchase_failure(route: &'static str, e: &PurchaseError) -> Response<Body> {
    let (status, code) = match e {
        e if e.is_session_state() => (StatusCode::UNAUTHORIZED, "SESSION_EXPIRED"),
        PurchaseError::Store(_) | PurchaseError::Quota(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
        }
        PurchaseError::Crypto => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        _ => (StatusCode::BAD_REQUEST, "CRYPTO_ERROR"),
    };
    if status.is_server_error() {
        error!(route, status = status.as_u16(), reason = %e, "request failed");
    } else {
        info!(route, status = status.as_u16(), reason = %e, "rejected");
    }
    record_rejection(route, e.reason());
    code_error(status, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_describes_every_route_the_router_serves_and_no_other() {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert_eq!(spec["openapi"], "3.1.0");
        let paths = spec["paths"].as_object().expect("paths");
        for (scope, method, path) in routes() {
            let op = &paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is served but not described"))
                [method.to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "{method} {path} is served but not described"
            );
            let listener = op["x-listener"].as_str().unwrap_or("public");
            let expected = match scope {
                Scope::Public => "public",
                Scope::Internal => "internal",
                Scope::Both => "both",
            };
            assert_eq!(listener, expected, "{method} {path}: x-listener");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
        }
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                assert!(
                    routes().any(|(_, m, p)| p == path && m.eq_ignore_ascii_case(method)),
                    "{method} {path} is described but not served"
                );
            }
        }
        // Every $ref resolves.
        let text = OPENAPI;
        for r in text.split("\"$ref\": \"#/").skip(1) {
            let pointer = format!("/{}", &r[..r.find('"').unwrap()]);
            assert!(spec.pointer(&pointer).is_some(), "dangling $ref {pointer}");
        }
    }

    #[test]
    fn loopback_and_private_addresses_are_exempt_by_default_public_ones_are_not() {
        let exempt = default_exempt_ranges();
        let is_exempt = |ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            exempt.iter().any(|r| r.contains(ip))
        };
        for ip in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.31.255.1",
            "192.168.0.9",
            "fd12::7",
        ] {
            assert!(is_exempt(ip), "{ip}");
        }
        for ip in ["8.8.8.8", "172.32.0.1", "2001:db8::1", "100.64.0.1"] {
            assert!(!is_exempt(ip), "{ip}");
        }
    }

    #[test]
    fn routes_resolve_per_listener() {
        assert!(route(Listener::Public, "/v1/session/S-00").is_none());
        assert!(matches!(
            route(Listener::Internal, "/v1/session/S-00"),
            Some((Route::ReleaseKey, "GET", "/v1/session/{id}"))
        ));
        assert!(matches!(
            route(Listener::Internal, "/v1/session/init"),
            Some((Route::Init(Family::V1), "POST", _))
        ));
        assert!(route(Listener::Internal, "/session/init").is_none());
        assert!(matches!(
            route(Listener::Public, "/"),
            Some((Route::Page, "GET", "/"))
        ));
    }
}
