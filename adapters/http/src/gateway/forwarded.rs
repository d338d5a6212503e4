//! The request the gateway forwards: the client headers that pass the filter
//! (`header_filter.rs`), the identity and forwarding headers the gateway sets, the
//! content type (docs/PROTOCOL.md §20).

use bytes::Bytes;
use domain::headers::name;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};

use super::header_filter::forwardable;

/// The identity headers the gateway sets; a client's copies are removed.
pub(crate) const X_SESSION_CLIENT_ID: HeaderName = HeaderName::from_static(name::SESSION_CLIENT_ID);
pub(crate) const X_SESSION_ID: HeaderName = HeaderName::from_static(name::SESSION_ID);
pub(crate) const X_SESSION_PROTOCOL: HeaderName = HeaderName::from_static(name::SESSION_PROTOCOL);

/// The content type of a forwarded request whose client named none.
pub(crate) const DEFAULT_CONTENT_TYPE: &str = "application/json";

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
