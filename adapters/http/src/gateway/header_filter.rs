//! Which client headers a forwarded request may carry (docs/PROTOCOL.md §20): never
//! hop-by-hop, protocol or `x-session-*` ones, nor any the gateway sets, nor a name with
//! `_`; override and forwarding headers only when the route passes them.

use domain::headers::name;
use hyper::header::HeaderName;

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
/// any header the gateway sets or drops (nginx drops them by default too). The names a
/// `Connection` header lists are folded (`_` read as `-`) before they are compared.
pub(super) fn forwardable(name: &str, named_by_connection: &[String], pass: &[HeaderName]) -> bool {
    if name.contains('_') {
        return false;
    }
    if NOT_FORWARDED.contains(&name)
        || name.starts_with("proxy-")
        || name.starts_with(name::SESSION_PREFIX)
        || named_by_connection.iter().any(|c| c == name)
    {
        return false;
    }
    !DROPPED_BY_DEFAULT.contains(&name) || pass.iter().any(|p| p.as_str() == name)
}

/// Whether a route may list `name` in `pass_headers`: not a header the gateway always
/// drops or sets itself, and not a name with `_`.
pub(crate) fn passable(name: &HeaderName) -> bool {
    forwardable(name.as_str(), &[], std::slice::from_ref(name))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
