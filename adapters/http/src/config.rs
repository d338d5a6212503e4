//! The HTTP adapter's settings.

use std::sync::Arc;
use std::time::Duration;

use domain::limits::IpRange;

use crate::gateway::Gateway;
use crate::pipeline::body::BodyBudget;
use crate::pipeline::cors::Cors;

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
    /// Request bytes buffered at once across all requests (`BODY_BUFFER_BUDGET_BYTES`).
    pub body_budget: BodyBudget,
    /// The gateway routes (`GATEWAY_UPSTREAM`, `[[gateway.routes]]`); none by default.
    pub gateway: Arc<Gateway>,
    /// `https` when the public listener serves TLS, else `http`: what the gateway tells
    /// its upstreams in `X-Forwarded-Proto` and `Forwarded`.
    pub scheme: &'static str,
    /// Gateway answers one connection may hold at once
    /// (`GATEWAY_MAX_ANSWERS_PER_CONNECTION`; 0 = no cap).
    pub gateway_answers_per_connection: usize,
}

/// Default of `BODY_BUFFER_BUDGET_BYTES`: 64 MiB.
pub const DEFAULT_BODY_BUDGET: usize = 64 * 1024 * 1024;

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
            body_budget: BodyBudget::new(DEFAULT_BODY_BUDGET),
            gateway: Arc::new(Gateway::off()),
            scheme: "http",
            gateway_answers_per_connection: crate::gateway::DEFAULT_ANSWERS_PER_CONNECTION,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

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
}
