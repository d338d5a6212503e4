//! CORS on the public listener (docs/PROTOCOL.md §8): preflight answers and the headers
//! added to every answer for an allowed origin.

use hyper::Response;
use hyper::header::{self, HeaderValue};

use crate::wire::{Body, no_content, not_found};

/// CORS policy of the public listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// Any origin (reflected, with `Vary: Origin`).
    AnyOrigin,
    /// Only these exact origins.
    Origins(Vec<String>),
    /// No CORS headers at all.
    Disabled,
}

/// Exposed to scripts of an allowed origin: the protocol's response headers, and `Date`
/// (not CORS-safelisted), from which the client library corrects a skewed clock.
const EXPOSED: HeaderValue = HeaderValue::from_static(
    "Server-Timing, X-Kid, X-Idempotency-Key, X-Inner-Content-Type, X-Inner-Status, \
     X-Sealed-Refusal, Retry-After, X-Request-Id, Date",
);
/// What a script of an allowed origin may send: the protocol's headers, `X-Request-Id`
/// (echoed, and the key of the server's log lines) and `traceparent` (W3C Trace Context,
/// which browser instrumentation adds).
const ALLOWED_HEADERS: HeaderValue = HeaderValue::from_static(
    "Content-Type, X-Idempotency-Key, X-ClientId, X-Kid, X-Inner-Content-Type, Authorization, \
     X-Envelope, X-Sealed-Refusals, Idempotency-Key, X-Request-Id, traceparent, tracestate",
);

impl Cors {
    pub(crate) fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            Self::AnyOrigin => true,
            Self::Origins(list) => origin.to_str().is_ok_and(|o| list.iter().any(|a| a == o)),
            Self::Disabled => false,
        }
    }

    /// The answer to `OPTIONS` on `path`, whose route accepts `methods` (e.g.
    /// `POST, OPTIONS`; `None`: no such route).
    pub(crate) fn preflight(
        &self,
        path: &str,
        methods: Option<HeaderValue>,
        origin: Option<&HeaderValue>,
    ) -> Response<Body> {
        let Some(methods) = methods else {
            return not_found(path);
        };
        let mut r = no_content();
        if origin.is_some_and(|o| self.allows(o)) {
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS);
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        r
    }

    /// Adds the CORS answer headers when `origin` is allowed.
    pub(crate) fn apply(&self, resp: &mut Response<Body>, origin: Option<HeaderValue>) {
        if let Some(origin) = origin.filter(|o| self.allows(o)) {
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
            // So that PerformanceResourceTiming.serverTiming is filled cross-origin.
            h.insert("timing-allow-origin", origin.clone());
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}
