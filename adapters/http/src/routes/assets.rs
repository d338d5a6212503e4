//! `GET /openapi.json` and the browser demo (`GET /`, `GET /demo.js`,
//! `GET /session-crypto-client.js`).

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::wire::{Body, JSON, response};

/// The OpenAPI 3.1 description of every route (`GET /openapi.json`).
pub(crate) const OPENAPI: &str = include_str!("../../openapi.json");
const PAGE: &str = include_str!("../../static/index.html");
const PAGE_SCRIPT: &str = include_str!("../../static/demo.js");
/// The TypeScript client library, bundled (`npm run bundle --prefix clients/typescript`;
/// a test of the library checks that this copy is current).
const CLIENT_LIBRARY: &str = include_str!("../../static/session-crypto-client.js");

/// `GET /openapi.json`.
pub(crate) fn openapi() -> Response<Body> {
    response(StatusCode::OK, JSON, OPENAPI)
}

/// `GET /`.
pub(crate) fn page() -> Response<Body> {
    static_asset(PAGE, "text/html; charset=utf-8")
}

/// `GET /demo.js`.
pub(crate) fn page_script() -> Response<Body> {
    static_asset(PAGE_SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /session-crypto-client.js`: the client library the demo imports.
pub(crate) fn client_library() -> Response<Body> {
    static_asset(CLIENT_LIBRARY, "text/javascript; charset=utf-8")
}

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
