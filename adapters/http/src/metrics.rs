//! Every metric the server records: names, descriptions and the recording functions,
//! in one place. The application only installs a recorder and calls [`enable`]; until
//! then every recording function returns at once (no label building).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use domain::Family;
use hyper::StatusCode;

use crate::wire::Listener;

/// Whether the server collects metrics (a recorder is installed).
static ON: AtomicBool = AtomicBool::new(false);

/// Latency buckets of `http_request_duration_seconds` (seconds).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The histogram that takes [`LATENCY_BUCKETS`].
pub const REQUEST_DURATION: &str = "http_request_duration_seconds";

/// The gateway's upstream latency histogram, also on [`LATENCY_BUCKETS`].
pub const UPSTREAM_DURATION: &str = "session_crypto_gateway_upstream_duration_seconds";

/// Describes every metric and turns recording on; call after installing a `metrics`
/// recorder.
pub fn enable() {
    metrics::describe_counter!(
        "http_requests_total",
        "Requests answered, by listener, route template and status."
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from request head to response, by listener, route template and status."
    );
    metrics::describe_counter!(
        "session_crypto_rejections_total",
        "Refused requests by route and reason (replay, outside_window, bad_public_key, decrypt_failed, unknown_session, rate_limited, …)."
    );
    metrics::describe_counter!(
        "session_crypto_sessions_created_total",
        "Sessions created, by route family."
    );
    metrics::describe_counter!(
        "session_crypto_sessions_revoked_total",
        "Sessions ended with POST /session/revoke."
    );
    metrics::describe_gauge!(
        "session_crypto_dependency_up",
        "1 when PostgreSQL / Redis answered the last probe, else 0."
    );
    metrics::describe_gauge!(
        "session_crypto_nonce_fallback_active",
        "1 while Redis is unreachable (nonces then go to the shared fallback store)."
    );
    metrics::describe_counter!(
        "session_crypto_nonce_fence_episodes_total",
        "Episodes of Redis trouble (unreachable, or lost data) this instance began; each fences requests stamped before it."
    );
    metrics::describe_counter!(
        "session_crypto_nonce_fence_write_backs_total",
        "Episodes this instance closed early by writing the shared store's unexpired nonces back into Redis (label result: closed, or superseded when trouble was reported meanwhile)."
    );
    metrics::describe_counter!(
        "session_crypto_nonce_fence_refused_total",
        "Requests refused because they were stamped inside a nonce fence."
    );
    metrics::describe_gauge!(
        "session_crypto_redis_eviction_unsafe",
        "1 when Redis's maxmemory-policy may evict keys (nonces could be evicted), else 0."
    );
    metrics::describe_gauge!(
        "session_crypto_pg_pool_connections",
        "PostgreSQL pool connections (open, idle)."
    );
    metrics::describe_gauge!(
        "session_crypto_pg_pool_waiting",
        "Requests waiting for a PostgreSQL connection."
    );
    metrics::describe_counter!(
        "session_crypto_gateway_forwarded_total",
        "Requests a gateway route forwarded, by route prefix and outcome (the upstream status class 2xx…5xx, or unreachable, timeout, too_large, bad_answer)."
    );
    metrics::describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "Time the upstream took to answer a forwarded request (head and body), by route prefix."
    );
    ON.store(true, Ordering::Relaxed);
}

fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// `http_requests_total` and `http_request_duration_seconds` per listener, route
/// template (`unmatched` for unknown paths, so that scanners cannot create label values
/// at will) and status.
pub(crate) fn request(
    listener: Listener,
    route: &'static str,
    status: StatusCode,
    started: Instant,
) {
    if !on() {
        return;
    }
    let listener = match listener {
        Listener::Public => "public",
        Listener::Internal => "internal",
    };
    let status = status.as_str().to_owned();
    metrics::counter!("http_requests_total", "listener" => listener, "route" => route, "status" => status.clone())
        .increment(1);
    metrics::histogram!(REQUEST_DURATION, "listener" => listener, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
}

/// `session_crypto_rejections_total{route, reason}`.
pub(crate) fn rejection(route: &'static str, reason: &'static str) {
    if !on() {
        return;
    }
    metrics::counter!("session_crypto_rejections_total", "route" => route, "reason" => reason)
        .increment(1);
}

/// `session_crypto_gateway_forwarded_total{route, outcome}`.
pub(crate) fn gateway_forwarded(route: &'static str, outcome: &'static str) {
    if on() {
        metrics::counter!("session_crypto_gateway_forwarded_total", "route" => route, "outcome" => outcome)
            .increment(1);
    }
}

/// `session_crypto_gateway_upstream_duration_seconds{route}`.
pub(crate) fn gateway_upstream(route: &'static str, ns: u64) {
    if on() {
        metrics::histogram!(UPSTREAM_DURATION, "route" => route).record(ns as f64 / 1e9);
    }
}

/// `session_crypto_sessions_created_total{family}`.
pub(crate) fn session_created(family: Family) {
    if !on() {
        return;
    }
    metrics::counter!("session_crypto_sessions_created_total", "family" => match family {
        Family::Unversioned => "unversioned",
        Family::V1Paths => "v1",
    })
    .increment(1);
}

/// `session_crypto_sessions_revoked_total`.
pub(crate) fn session_revoked() {
    if on() {
        metrics::counter!("session_crypto_sessions_revoked_total").increment(1);
    }
}

/// `session_crypto_dependency_up{dependency}`.
pub fn dependency_up(name: &'static str, up: bool) {
    metrics::gauge!("session_crypto_dependency_up", "dependency" => name)
        .set(f64::from(u8::from(up)));
}

/// `session_crypto_redis_eviction_unsafe`.
pub fn redis_eviction_unsafe(unsafe_policy: bool) {
    metrics::gauge!("session_crypto_redis_eviction_unsafe").set(f64::from(u8::from(unsafe_policy)));
}

/// `session_crypto_nonce_fence_episodes_total`: episodes of Redis trouble (an
/// outage, or a loss of data) this instance began.
pub fn nonce_fence_episode() {
    metrics::counter!("session_crypto_nonce_fence_episodes_total").increment(1);
}

/// `session_crypto_nonce_fence_refused_total`: requests refused because they were
/// stamped inside a fence.
pub fn nonce_fence_refused() {
    metrics::counter!("session_crypto_nonce_fence_refused_total").increment(1);
}

/// `session_crypto_nonce_fence_write_backs_total{result}`: write-backs of the shared
/// store's nonces into Redis; `closed` when the episode was closed by it, `superseded`
/// when trouble was reported meanwhile.
pub fn nonce_fence_write_back(closed: bool) {
    let result = if closed { "closed" } else { "superseded" };
    metrics::counter!("session_crypto_nonce_fence_write_backs_total", "result" => result)
        .increment(1);
}

/// `session_crypto_nonce_fallback_active`.
pub fn nonce_fallback_active(active: bool) {
    metrics::gauge!("session_crypto_nonce_fallback_active").set(f64::from(u8::from(active)));
}

/// `session_crypto_pg_pool_connections{state}` and `session_crypto_pg_pool_waiting`.
pub fn pg_pool(open: usize, idle: usize, waiting: usize) {
    metrics::gauge!("session_crypto_pg_pool_connections", "state" => "open").set(open as f64);
    metrics::gauge!("session_crypto_pg_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("session_crypto_pg_pool_waiting").set(waiting as f64);
}
