//! One gateway route: its settings validated (prefix, upstream URL, methods, timeouts,
//! body limit), and the upstream target of an outer path, refused when it could leave
//! the route.

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Uri};

use super::header_filter::passable;
use super::upstream::Pool;
use super::{DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, GATEWAY_METHODS, RouteSpec};

/// A validated gateway route, with its connection pool.
#[derive(Debug)]
pub struct GatewayRoute {
    /// The prefix (leaked once at start-up: it is the route's label in logs and
    /// metrics, which take `'static` names).
    pub(crate) prefix: &'static str,
    /// What the route is called in error messages (`GATEWAY_UPSTREAM`, or
    /// `gateway.routes[1]`).
    pub(crate) source: String,
    /// `scheme://authority`.
    pub(crate) origin: String,
    /// The upstream's base path, without a trailing `/` (often empty).
    pub(crate) base_path: String,
    pub(crate) methods: Vec<Method>,
    /// `Allow` / `Access-Control-Allow-Methods`.
    pub(crate) allow: HeaderValue,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_body: usize,
    pub(crate) allow_v1: bool,
    pub(crate) http2: bool,
    /// Headers dropped by default that this route passes on.
    pub(crate) pass_headers: Vec<HeaderName>,
    pub(crate) pool: Pool,
}

impl GatewayRoute {
    pub(super) fn new(
        source: String,
        spec: RouteSpec,
        default_body_limit: usize,
        tls_provider: Option<&Arc<CryptoProvider>>,
    ) -> Result<Self, String> {
        let prefix = spec.prefix.trim();
        if !prefix.starts_with('/')
            || !prefix.ends_with('/')
            || prefix.contains(['?', '#', '%', '\\', ' '])
            || check_rest(&prefix[1..]).is_err()
        {
            return Err(format!(
                "{source}: prefix {prefix:?} must start and end with `/` and hold plain path \
                 segments (e.g. /api/)"
            ));
        }
        let (origin, base_path) = parse_upstream(&spec.upstream)
            .map_err(|why| format!("{source}: upstream {:?}: {why}", spec.upstream))?;
        let methods: Vec<String> = match &spec.methods {
            None => GATEWAY_METHODS.iter().map(|m| m.to_string()).collect(),
            Some(list) => list.iter().map(|m| m.trim().to_ascii_uppercase()).collect(),
        };
        if methods.is_empty() {
            return Err(format!("{source}: methods must name at least one method"));
        }
        let mut parsed = Vec::new();
        for m in &methods {
            if !GATEWAY_METHODS.contains(&m.as_str()) {
                return Err(format!(
                    "{source}: method {m:?} cannot be forwarded (allowed: {})",
                    GATEWAY_METHODS.join(", ")
                ));
            }
            let m = Method::from_bytes(m.as_bytes()).map_err(|e| format!("{source}: {e}"))?;
            if !parsed.contains(&m) {
                parsed.push(m);
            }
        }
        let allow = parsed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let positive = |name: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(format!("{source}: {name} must be > 0")),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let timeout = positive("timeout_ms", spec.timeout_ms, DEFAULT_TIMEOUT_MS)?;
        let connect = positive(
            "connect_timeout_ms",
            spec.connect_timeout_ms,
            DEFAULT_CONNECT_TIMEOUT_MS,
        )?;
        let max_body = positive(
            "max_body_bytes",
            spec.max_body_bytes.map(|b| b as u64),
            default_body_limit as u64,
        )? as usize;
        let mut pass_headers = Vec::new();
        for text in &spec.pass_headers {
            let header = HeaderName::from_bytes(text.trim().as_bytes())
                .ok()
                .filter(passable)
                .ok_or_else(|| {
                    format!(
                        "{source}: pass_headers: {text:?} cannot be passed (a header the gateway \
                         sets or always drops, or a name with `_`)"
                    )
                })?;
            pass_headers.push(header);
        }
        let connect_timeout = Duration::from_millis(connect);
        let tls = if origin.starts_with("https://") {
            let provider = tls_provider.ok_or_else(|| {
                format!(
                    "{source}: an https upstream needs a rustls provider, and this build has \
                     none for the crypto backend"
                )
            })?;
            let ca_file = spec.ca_file.as_deref().map(std::path::Path::new);
            Some(
                crate::tls::upstream_client_config(Arc::clone(provider), ca_file)
                    .map_err(|e| format!("{source}: {e}"))?,
            )
        } else {
            if spec.ca_file.is_some() {
                return Err(format!(
                    "{source}: ca_file only applies to an https:// upstream"
                ));
            }
            None
        };
        let pool = Pool::new(&origin, connect_timeout, spec.http2, tls)
            .map_err(|why| format!("{source}: {why}"))?;
        Ok(Self {
            prefix: Box::leak(prefix.to_owned().into_boxed_str()),
            source,
            origin,
            base_path,
            allow: HeaderValue::from_str(&allow).map_err(|e| e.to_string())?,
            methods: parsed,
            timeout: Duration::from_millis(timeout),
            connect_timeout,
            max_body,
            allow_v1: spec.allow_v1,
            http2: spec.http2,
            pass_headers,
            pool,
        })
    }

    /// The upstream target of an outer path and query (origin form): the rest after the
    /// prefix, under the upstream's base path, with the query as sent.
    pub(crate) fn target(&self, path: &str, query: Option<&str>) -> Result<String, PathRefused> {
        let rest = path.strip_prefix(self.prefix).ok_or(PathRefused)?;
        check_rest(rest)?;
        let mut target = format!("{}/{rest}", self.base_path);
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        Ok(target)
    }
}

/// An outer path the gateway does not forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathRefused;

/// Refuses a path after the prefix that an upstream could resolve outside the route:
/// dot segments (`.`, `..`, also percent-encoded, and also before a `;` parameter —
/// `..;` and `%2e%2e;x`, which servlet containers strip to `..`), encoded slashes or
/// backslashes, and empty interior segments (`//`, or `/;x/`).
fn check_rest(rest: &str) -> Result<(), PathRefused> {
    // Without allocating: this runs on every forwarded request.
    let bytes = rest.as_bytes();
    let encoded = |i: usize, hex: &[u8; 2]| {
        bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.eq_ignore_ascii_case(hex))
    };
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\\' || (b == b'%' && (encoded(i, b"2f") || encoded(i, b"5c"))) {
            return Err(PathRefused);
        }
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        // What a servlet container keeps of the segment: the part before the first `;`
        // (literal or `%3b`), its path parameters stripped.
        let kept = segment_before_parameters(segment);
        if kept.is_empty() && segment.len() > kept.len() {
            return Err(PathRefused);
        }
        // `.` and `..`, with each dot possibly written `%2e`.
        let mut dots = 0;
        let mut s = kept.as_bytes();
        while !s.is_empty() {
            if s[0] == b'.' {
                s = &s[1..];
            } else if s.len() >= 3 && s[0] == b'%' && s[1..3].eq_ignore_ascii_case(b"2e") {
                s = &s[3..];
            } else {
                dots = 3;
                break;
            }
            dots += 1;
        }
        if dots == 1 || dots == 2 {
            return Err(PathRefused);
        }
        // Only the last segment may be empty (a trailing slash, or the prefix itself).
        if segment.is_empty() && segments.peek().is_some() {
            return Err(PathRefused);
        }
    }
    Ok(())
}

/// The upstream target of `rest` (the path after a route's prefix) under `base_path`, or
/// `None` when the gateway refuses it: the confinement rule alone, for the fuzz target
/// (`crypto_conformance::fuzz::gateway_forwarding`).
#[doc(hidden)]
pub fn confined_target(base_path: &str, rest: &str) -> Option<String> {
    check_rest(rest)
        .ok()
        .map(|()| format!("{base_path}/{rest}"))
}

/// A segment up to its first `;` or `%3b` (path parameters, RFC 3986 §3.3).
fn segment_before_parameters(segment: &str) -> &str {
    let b = segment.as_bytes();
    let end = (0..b.len())
        .find(|&i| {
            b[i] == b';'
                || (b[i] == b'%'
                    && b.get(i + 1..i + 3)
                        .is_some_and(|h| h.eq_ignore_ascii_case(b"3b")))
        })
        .unwrap_or(b.len());
    &segment[..end]
}

/// `(scheme://authority, base path without trailing /)` of an upstream URL, or
/// `(unix:<path>, "")` for a Unix domain socket.
fn parse_upstream(text: &str) -> Result<(String, String), String> {
    if let Some(path) = text.trim().strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err("a unix: upstream is an absolute socket path (unix:/run/app.sock)".into());
        }
        return Ok((format!("unix:{path}"), String::new()));
    }
    let uri: Uri = text
        .trim()
        .parse()
        .map_err(|e| format!("not a URL ({e})"))?;
    let scheme = match uri.scheme_str() {
        Some(scheme @ ("http" | "https")) => scheme,
        _ => {
            return Err(
                "must be an http:// or https:// URL (http://host:port[/base]) or \
                 unix:<socket path>"
                    .into(),
            );
        }
    };
    let authority = uri.authority().ok_or("has no host")?;
    if authority.as_str().contains('@') {
        return Err("must not hold credentials".into());
    }
    if authority.host().is_empty() {
        return Err("has no host".into());
    }
    if uri.query().is_some() || text.contains('#') {
        return Err("must not have a query or fragment".into());
    }
    let base = uri.path().trim_end_matches('/');
    check_rest(base.trim_start_matches('/')).map_err(|_| "has an unsafe path".to_owned())?;
    Ok((format!("{scheme}://{authority}"), base.to_owned()))
}
