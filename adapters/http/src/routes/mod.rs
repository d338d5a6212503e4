//! One file per route: its whole sequence — the checks before the body is read,
//! reading it, decoding, calling the domain, and mapping the outcome to the answer, with
//! the route's own wire shapes. No route knows the router: the router hands each one an
//! [`Incoming`] request.

use std::net::IpAddr;
use std::time::Instant;

use hyper::http::request::Parts;

pub(crate) mod assets;
pub(crate) mod exchange;
pub(crate) mod gateway;
pub(crate) mod health;
pub mod init;
pub mod purchase;
pub(crate) mod release_key;
pub(crate) mod revoke;
#[cfg(test)]
pub(crate) mod test_support;
pub(crate) mod well_known;

/// A request as the router hands it to its route: the head, the unread body, and what
/// the router knows of it.
pub(crate) struct Incoming<'a, B> {
    /// Method, target, headers.
    pub(crate) parts: Parts,
    /// The body, not read yet.
    pub(crate) body: B,
    /// The route's path template (a gateway route's prefix): for logs and metrics,
    /// never the raw path (which may hold a session id).
    pub(crate) template: &'static str,
    /// The TCP peer.
    pub(crate) peer: IpAddr,
    /// The request id (`X-Request-Id`).
    pub(crate) request_id: &'a str,
    /// When the request arrived.
    pub(crate) started: Instant,
}
