//! The gateway's routes (docs/PROTOCOL.md §20): which prefix goes to which upstream,
//! with which methods, timeouts and body limit, validated at start-up; and the checks
//! of an outer path before anything is forwarded.
//!
//! The forwarding itself is in [`upstream`], the route that runs it in
//! `routes/gateway.rs`.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

pub(crate) mod forwarded;
mod h1_pool;
mod header_filter;
mod route;
mod slots;
pub(crate) mod upstream;

#[doc(hidden)]
pub use forwarded::forwarded_names;
pub use route::GatewayRoute;
#[doc(hidden)]
pub use route::confined_target;
pub use slots::{ConnectionSlots, DEFAULT_ANSWERS_PER_CONNECTION};

/// Methods a gateway route may allow: the ones whose request carries the envelope.
/// (`HEAD`'s answer cannot carry a sealed body; `OPTIONS` is the CORS preflight.)
pub const GATEWAY_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Default per-route upstream timeout (ms): the whole answer, head and body.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default connect timeout (ms).
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;

/// One route as configured (a `[[gateway.routes]]` table, or the single-upstream
/// settings), before validation.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Path prefix, starting and ending with `/` (e.g. `/api/`).
    pub prefix: String,
    /// `http://host:port[/base]`, or `unix:/path/to/socket` (HTTP/1.1 over a Unix
    /// domain socket).
    pub upstream: String,
    /// Allowed methods (default: all of [`GATEWAY_METHODS`]).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Upstream answer timeout (ms).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Connect timeout (ms).
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Largest request envelope and largest upstream answer (bytes).
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Whether protocol v1 sessions may use the route (their AAD binds no method or path).
    #[serde(default)]
    pub allow_v1: bool,
    /// Speak HTTP/2 (prior knowledge, h2c) to the upstream instead of HTTP/1.1.
    #[serde(default)]
    pub http2: bool,
    /// For an `https://` upstream: PEM file of the CAs to trust (default: the system's
    /// bundle).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client headers the gateway drops by default that this route passes on (e.g.
    /// `X-Forwarded-Host`); unauthenticated, like every client header but the protocol's.
    #[serde(default)]
    pub pass_headers: Vec<String>,
}

/// The gateway: its routes and the key of the `X-Session-Id` hash.
pub struct Gateway {
    routes: Vec<GatewayRoute>,
    session_hash_key: [u8; 32],
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.session_hash_key.zeroize();
    }
}

impl Default for Gateway {
    fn default() -> Self {
        Self::off()
    }
}

impl Gateway {
    /// No gateway routes.
    pub fn off() -> Self {
        Self {
            routes: Vec::new(),
            session_hash_key: [0; 32],
        }
    }

    /// Validates `specs` — each with the name of the setting it came from — against
    /// each other and the built-in routes `built_in` (path templates), and opens a
    /// connection pool per route. `default_body_limit` applies where a route sets none;
    /// `session_hash_key` keys the `X-Session-Id` hash.
    ///
    /// # Errors
    /// A message naming the setting at fault.
    pub fn new(
        specs: Vec<(String, RouteSpec)>,
        built_in: &[&str],
        default_body_limit: usize,
        session_hash_key: [u8; 32],
        tls_provider: Option<&std::sync::Arc<rustls::crypto::CryptoProvider>>,
    ) -> Result<Self, String> {
        let mut routes: Vec<GatewayRoute> = Vec::with_capacity(specs.len());
        for (source, spec) in specs {
            let route = GatewayRoute::new(source, spec, default_body_limit, tls_provider)?;
            if let Some(path) = built_in.iter().find(|p| covers(route.prefix, p)) {
                return Err(format!(
                    "{}: prefix {} covers the built-in route {path}; choose another prefix",
                    route.source, route.prefix
                ));
            }
            if let Some(other) = routes
                .iter()
                .find(|r| r.prefix.starts_with(route.prefix) || route.prefix.starts_with(r.prefix))
            {
                return Err(format!(
                    "{}: prefix {} overlaps {} of {}; prefixes must not contain each other",
                    route.source, route.prefix, other.prefix, other.source
                ));
            }
            routes.push(route);
        }
        Ok(Self {
            routes,
            session_hash_key,
        })
    }

    /// Whether any route is configured.
    pub fn is_on(&self) -> bool {
        !self.routes.is_empty()
    }

    /// The route whose prefix `path` starts with.
    pub(crate) fn route(&self, path: &str) -> Option<(usize, &GatewayRoute)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| path.starts_with(r.prefix))
    }

    pub(crate) fn get(&self, index: usize) -> Option<&GatewayRoute> {
        self.routes.get(index)
    }

    pub(crate) fn session_hash_key(&self) -> &[u8; 32] {
        &self.session_hash_key
    }

    /// One line per route, for `check-config` and the start-up log.
    pub fn describe(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|r| {
                let slash = if r.origin.starts_with("unix:") { "" } else { "/" };
                let passes = if r.pass_headers.is_empty() {
                    String::new()
                } else {
                    let names: Vec<&str> = r.pass_headers.iter().map(|h| h.as_str()).collect();
                    format!(", passes {}", names.join(", "))
                };
                format!(
                    "{} → {}{}{slash} ({}; {}, timeout {} ms, connect {} ms, body ≤ {} B, v1 {}{passes}; from {})",
                    r.prefix,
                    r.origin,
                    r.base_path,
                    r.allow.to_str().unwrap_or_default(),
                    if r.http2 { "h2c" } else { "HTTP/1.1" },
                    r.timeout.as_millis(),
                    r.connect_timeout.as_millis(),
                    r.max_body,
                    if r.allow_v1 { "allowed" } else { "refused" },
                    r.source,
                )
            })
            .collect()
    }
}

/// Whether a request path could match both `prefix` and the built-in route `template`
/// (an exact path, or a prefix ending in `{id}`).
fn covers(prefix: &str, template: &str) -> bool {
    match template.strip_suffix("{id}") {
        Some(t) => t.starts_with(prefix) || prefix.starts_with(t),
        None => template.starts_with(prefix),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::route::PathRefused;
    use super::*;

    fn spec(prefix: &str, upstream: &str) -> (String, RouteSpec) {
        (
            "test".into(),
            RouteSpec {
                prefix: prefix.into(),
                upstream: upstream.into(),
                methods: None,
                timeout_ms: None,
                connect_timeout_ms: None,
                max_body_bytes: None,
                allow_v1: false,
                http2: false,
                pass_headers: Vec::new(),
                ca_file: None,
            },
        )
    }

    fn gateway(specs: Vec<(String, RouteSpec)>) -> Result<Gateway, String> {
        Gateway::new(
            specs,
            &["/session/init", "/v1/session/{id}", "/"],
            1024,
            [7; 32],
            None,
        )
    }

    #[tokio::test]
    async fn the_rest_of_the_path_goes_under_the_upstream_base_with_the_query() {
        let g = gateway(vec![
            spec("/api/", "http://127.0.0.1:8080"),
            spec("/orders/", "http://127.0.0.1:9000/v2/"),
        ])
        .unwrap();
        let (_, api) = g.route("/api/echo/x").unwrap();
        assert_eq!(
            api.target("/api/echo/x", Some("a=1&b=%20")).unwrap(),
            "/echo/x?a=1&b=%20"
        );
        let (_, orders) = g.route("/orders/17").unwrap();
        assert_eq!(orders.target("/orders/17", None).unwrap(), "/v2/17");
        assert_eq!(orders.target("/orders/", None).unwrap(), "/v2/");
        assert!(g.route("/apix").is_none());
        assert!(g.route("/api").is_none());
    }

    #[tokio::test]
    async fn paths_that_could_leave_the_route_are_refused() {
        let g = gateway(vec![spec("/api/", "http://127.0.0.1:8080/base")]).unwrap();
        let (_, r) = g.route("/api/").unwrap();
        for path in [
            "/api/../admin",
            "/api/a/../../x",
            "/api/%2e%2e/x",
            "/api/.%2E/x",
            "/api/./x",
            "/api/a%2fb",
            "/api/a%5Cb",
            "/api/a\\b",
            "/api//x",
        ] {
            assert_eq!(r.target(path, None), Err(PathRefused), "{path}");
        }
        assert!(r.target("/api/a.b/..c/x.", None).is_ok());
    }

    #[tokio::test]
    async fn dot_segments_behind_path_parameters_are_refused() {
        // Tomcat and Spring strip `;params` from a segment before resolving dots:
        // `/public/..;/admin` is `/admin` to them.
        let g = gateway(vec![spec("/api/", "http://127.0.0.1:8080/public")]).unwrap();
        let (_, r) = g.route("/api/").unwrap();
        for path in [
            "/api/..;/admin",
            "/api/..;jsessionid=1/admin",
            "/api/%2e%2e;/admin",
            "/api/.%2e;x=1/admin",
            "/api/.;/admin",
            "/api/..%3b/admin",
            "/api/..%3B/admin",
            "/api/a/;x/b",
            "/api/;/admin",
        ] {
            assert_eq!(r.target(path, None), Err(PathRefused), "{path}");
        }
        // Parameters on an ordinary segment are forwarded as they are.
        assert_eq!(
            r.target("/api/orders;v=2/1", None).unwrap(),
            "/public/orders;v=2/1"
        );
        assert!(r.target("/api/a..;b/x", None).is_ok());
    }

    #[tokio::test]
    async fn a_route_passes_only_headers_dropped_by_default() {
        let mut ok = spec("/api/", "http://127.0.0.1:8080");
        ok.1.pass_headers = vec!["X-Forwarded-Host".into(), "x-real-ip".into()];
        let g = gateway(vec![ok]).unwrap();
        let (_, r) = g.route("/api/").unwrap();
        assert_eq!(r.pass_headers.len(), 2);
        for bad in [
            "x-session-id",
            "X-Forwarded-For",
            "x_custom",
            "x-kid",
            "bad name",
        ] {
            let mut s = spec("/api/", "http://127.0.0.1:8080");
            s.1.pass_headers = vec![bad.into()];
            let e = gateway(vec![s]).unwrap_err();
            assert!(e.contains("pass_headers"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn bad_settings_are_refused_naming_the_setting() {
        let refused = |specs: Vec<(String, RouteSpec)>, needle: &str| {
            let e = gateway(specs).unwrap_err();
            assert!(e.contains(needle) && e.starts_with("test"), "{e}");
        };
        refused(vec![spec("/api/", "ftp://x")], "http://");
        refused(
            vec![spec("/api/", "unix:run/app.sock")],
            "absolute socket path",
        );
        let mut h2_unix = spec("/api/", "unix:/run/app.sock");
        h2_unix.1.http2 = true;
        refused(vec![h2_unix], "only supported over TCP");
        // No rustls provider in these tests: an https upstream names what is missing.
        refused(vec![spec("/api/", "https://x")], "rustls provider");
        refused(vec![spec("/api/", "not a url")], "not a URL");
        refused(vec![spec("/api/", "http://u:p@x")], "credentials");
        refused(vec![spec("/api/", "http://x/?q=1")], "query");
        refused(vec![spec("api/", "http://x")], "prefix");
        refused(vec![spec("/api", "http://x")], "prefix");
        refused(vec![spec("/a/../", "http://x")], "prefix");
        refused(
            vec![spec("/api/", "http://x"), spec("/api/v2/", "http://y")],
            "overlaps /api/",
        );
        refused(
            vec![spec("/session/", "http://x")],
            "built-in route /session/init",
        );
        refused(vec![spec("/v1/session/x/", "http://x")], "built-in");
        let mut bad = spec("/api/", "http://x");
        bad.1.methods = Some(vec!["HEAD".into()]);
        refused(vec![bad], "HEAD");
        let mut bad = spec("/api/", "http://x");
        bad.1.timeout_ms = Some(0);
        refused(vec![bad], "timeout_ms");
    }

    #[tokio::test]
    async fn defaults_and_methods() {
        let mut s = spec("/api/", "http://x:1");
        s.1.methods = Some(vec!["post".into(), "GET".into(), "POST".into()]);
        let g = gateway(vec![s]).unwrap();
        let (_, r) = g.route("/api/a").unwrap();
        assert_eq!(r.allow, "POST, GET");
        assert_eq!(r.max_body, 1024);
        assert_eq!(r.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert!(!r.allow_v1);
        assert_eq!(g.describe().len(), 1);
    }
}
