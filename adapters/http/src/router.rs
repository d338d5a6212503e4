//! The route table and dispatch: which listener serves which method and path, and
//! which route file answers it. The router knows no route's rules.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use domain::{Family, SessionService};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ports::{Clock, Ports};

use crate::config::ApiConfig;
use crate::health_check::HealthCheck;
use crate::metrics;
use crate::pipeline::body::RequestBody;
use crate::pipeline::request_id::request_id;
use crate::routes;
use crate::wire::{Body, Listener, X_REQUEST_ID, code_error, family_of, identity_error, not_found};

#[derive(Clone, Copy)]
enum Route {
    Init(Family),
    /// `POST /transaction/purchase`: an encrypted route.
    Purchase,
    Revoke,
    ReleaseKey,
    Health,
    Ready,
    OpenApi,
    Page,
    PageScript,
    ClientLibrary,
    WellKnown,
    /// The gateway route of this index (`GATEWAY_UPSTREAM`, `[[gateway.routes]]`).
    Gateway(usize),
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
#[rustfmt::skip]
const ROUTES: &[(Scope, &str, &str, Route)] = &[
    (Scope::Public,   "POST", "/session/init",         Route::Init(Family::Unversioned)),
    (Scope::Public,   "POST", "/transaction/purchase", Route::Purchase),
    (Scope::Public,   "POST", "/session/revoke",       Route::Revoke),
    (Scope::Both,     "POST", "/v1/session/init",      Route::Init(Family::V1Paths)),
    (Scope::Both,     "GET",  "/health",               Route::Health),
    (Scope::Both,     "GET",  "/ready",                Route::Ready),
    (Scope::Public,   "GET",  "/openapi.json",         Route::OpenApi),
    (Scope::Public,   "GET",  "/.well-known/session-crypto", Route::WellKnown),
    (Scope::Public,   "GET",  "/",                     Route::Page),
    (Scope::Public,   "GET",  "/demo.js",              Route::PageScript),
    (Scope::Public,   "GET",  "/session-crypto-client.js", Route::ClientLibrary),
    (Scope::Internal, "GET",  "/v1/session/{id}",      Route::ReleaseKey),
];

/// The routes served: `(scope, method, path template)`.
pub fn routes() -> impl Iterator<Item = (Scope, &'static str, &'static str)> {
    ROUTES
        .iter()
        .map(|(scope, method, path, _)| (*scope, *method, *path))
}

/// A route found for a path: the handler, its method (`*` for a gateway route, which
/// checks its own) and its path template (a gateway route's prefix).
type Found = (Route, &'static str, &'static str);

/// A gateway route's method placeholder in [`Found`].
const ANY_METHOD: &str = "*";

fn route(listener: Listener, path: &str) -> Option<Found> {
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

/// The service behind the HTTP routes.
#[derive(Debug)]
pub struct Api<P, H> {
    service: SessionService<P>,
    health: H,
    config: ApiConfig,
}

impl<P: Ports, H: HealthCheck> Api<P, H> {
    /// Wraps a service.
    pub fn new(service: SessionService<P>, health: H, config: ApiConfig) -> Arc<Self> {
        Arc::new(Self {
            service,
            health,
            config,
        })
    }

    /// The state one connection's requests share: its gateway answer slots, when the
    /// server has gateway routes (otherwise nothing, so no request pays for them). The
    /// server makes one per connection and puts it in each request's extensions.
    pub fn connection_slots(&self) -> Option<crate::gateway::ConnectionSlots> {
        self.config.gateway.is_on().then(|| {
            crate::gateway::ConnectionSlots::new(self.config.gateway_answers_per_connection)
        })
    }

    /// The service.
    pub fn service(&self) -> &SessionService<P> {
        &self.service
    }

    /// The built-in route for `path`, else (public listener only) the gateway route
    /// whose prefix it starts with.
    fn find(&self, listener: Listener, path: &str) -> Option<Found> {
        route(listener, path).or_else(|| {
            let (index, r) = self.config.gateway.route(path)?;
            (listener == Listener::Public).then_some((Route::Gateway(index), ANY_METHOD, r.prefix))
        })
    }

    /// `Access-Control-Allow-Methods` for a preflight of `path`.
    fn preflight_methods(&self, path: &str) -> Option<HeaderValue> {
        let (route, method, _) = self.find(Listener::Public, path)?;
        Some(match route {
            Route::Gateway(index) => {
                let allow = self.config.gateway.get(index)?.allow.to_str().ok()?;
                HeaderValue::from_str(&format!("{allow}, OPTIONS")).ok()?
            }
            _ if method == "GET" => HeaderValue::from_static("GET, OPTIONS"),
            _ => HeaderValue::from_static("POST, OPTIONS"),
        })
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
        B: RequestBody,
    {
        use tracing::Instrument as _;
        let started = Instant::now();
        let id = request_id(req.headers());
        // The route template, never the raw path (which may hold a session id).
        let found = self.find(listener, req.uri().path());
        let template = found.map_or("unmatched", |(_, _, t)| t);
        let span =
            tracing::info_span!("request", id = %id, method = %req.method(), route = template);
        let mut resp = self
            .handle_inner(listener, peer, found, req, &id, started)
            .instrument(span)
            .await;
        metrics::request(listener, template, resp.status(), started);
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(X_REQUEST_ID, v);
        }
        resp
    }

    async fn handle_inner<B>(
        &self,
        listener: Listener,
        peer: IpAddr,
        found: Option<Found>,
        req: Request<B>,
        request_id: &str,
        started: Instant,
    ) -> Response<Body>
    where
        B: RequestBody,
    {
        let origin = req.headers().get(header::ORIGIN).cloned();
        let path = req.uri().path().to_owned();
        let cors = &self.config.cors;
        let mut resp = if req.method() == Method::OPTIONS && listener == Listener::Public {
            cors.preflight(&path, self.preflight_methods(&path), origin.as_ref())
        } else {
            self.dispatch(peer, found, req, &path, request_id, started)
                .await
        };
        if listener == Listener::Public {
            cors.apply(&mut resp, origin);
        }
        resp
    }

    async fn dispatch<B>(
        &self,
        peer: IpAddr,
        found: Option<Found>,
        req: Request<B>,
        path: &str,
        request_id: &str,
        started: Instant,
    ) -> Response<Body>
    where
        B: RequestBody,
    {
        let Some((route, method, template)) = found else {
            return not_found(path);
        };
        if method != ANY_METHOD && req.method().as_str() != method {
            return method_not_allowed(path, method);
        }
        let service = &self.service;
        let config = &self.config;
        let now_ms = || service.ports().clock().now_ms();
        let (parts, body) = req.into_parts();
        let incoming = routes::Incoming {
            parts,
            body,
            template,
            peer,
            request_id,
            started,
        };
        match route {
            Route::OpenApi => routes::assets::openapi(),
            Route::Page => routes::assets::page(),
            Route::PageScript => routes::assets::page_script(),
            Route::ClientLibrary => routes::assets::client_library(),
            Route::WellKnown => routes::well_known::handle(service.signing_keys(), now_ms() / 1000),
            Route::Health => {
                routes::health::health(&self.health, now_ms(), service.crypto().name).await
            }
            Route::Ready => routes::health::ready(&self.health, now_ms()).await,
            Route::ReleaseKey => {
                routes::release_key::handle(service, &incoming.parts.headers, path).await
            }
            Route::Init(family) => routes::init::serve(service, config, family, incoming).await,
            Route::Purchase => {
                let route = &routes::purchase::PurchaseRoute;
                routes::exchange::serve(service, config, route, incoming).await
            }
            Route::Revoke => routes::revoke::serve(service, config, incoming).await,
            Route::Gateway(index) => routes::gateway::serve(service, config, index, incoming).await,
        }
    }
}

/// 405 in the family's shape, with `Allow`.
fn method_not_allowed(path: &str, method: &'static str) -> Response<Body> {
    let mut r = match family_of(path) {
        Family::V1Paths => identity_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        Family::Unversioned => code_error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
    };
    let allow = if method == "GET" { "GET" } else { "POST" };
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::assets::OPENAPI;

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
    fn routes_resolve_per_listener() {
        assert!(route(Listener::Public, "/v1/session/S-00").is_none());
        assert!(matches!(
            route(Listener::Internal, "/v1/session/S-00"),
            Some((Route::ReleaseKey, "GET", "/v1/session/{id}"))
        ));
        assert!(matches!(
            route(Listener::Internal, "/v1/session/init"),
            Some((Route::Init(Family::V1Paths), "POST", _))
        ));
        assert!(route(Listener::Internal, "/session/init").is_none());
        assert!(matches!(
            route(Listener::Public, "/"),
            Some((Route::Page, "GET", "/"))
        ));
    }
}
