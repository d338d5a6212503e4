//! Abuse limits: what is limited, by how much, and the keys the counters live under.

use std::net::IpAddr;

use ports::RateLimit;

/// The abuse limits the service enforces. Every one can be turned off with 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbuseLimits {
    /// Session inits per client id (`INIT_RATE_LIMIT_PER_CLIENT`).
    pub init_per_client: RateLimit,
    /// Session inits per remote address (`INIT_RATE_LIMIT_PER_IP`); IPv6 addresses
    /// count per /64, the block one subscriber usually holds.
    pub init_per_ip: RateLimit,
    /// Live sessions per client id (`MAX_SESSIONS_PER_CLIENT`).
    pub max_sessions_per_client: u64,
    /// AES-GCM encryptions under one session key, client's and server's together
    /// (`MAX_ENCRYPTIONS_PER_SESSION`). Random 96-bit IVs stay within NIST SP 800-38D's
    /// 2^32 bound with a wide margin at the default 2^24.
    pub max_encryptions_per_session: u64,
    /// A session unused for longer than this ends (`SESSION_IDLE_TIMEOUT_SEC`).
    pub idle_timeout_sec: u64,
}

impl AbuseLimits {
    /// The shipped defaults. The per-client rate limit and session cap are off because
    /// the shipped clients hard-code one client id for all their users and client ids
    /// are not authenticated: anyone could use up a client id's budget and lock all its
    /// users out (the global session-store bound protects the server instead). The
    /// per-IP limit is on; the idle timeout is off, as in the reference.
    pub const DEFAULT: Self = Self {
        init_per_client: RateLimit::OFF,
        init_per_ip: RateLimit {
            per_minute: 600,
            burst: 100,
        },
        max_sessions_per_client: 0,
        max_encryptions_per_session: 1 << 24,
        idle_timeout_sec: 0,
    };

    /// Nothing limited.
    pub const OFF: Self = Self {
        init_per_client: RateLimit::OFF,
        init_per_ip: RateLimit::OFF,
        max_sessions_per_client: 0,
        max_encryptions_per_session: 0,
        idle_timeout_sec: 0,
    };

    /// Without an idle timeout, one use in this many is recorded, with this weight
    /// (a power of two up to 64; 1 = every use): the cap is then enforced on an
    /// unbiased estimate whose standard deviation at `n` uses is √(n × rate) — about 0.2 %
    /// of the default 2^24 cap — while 63 of 64 purchases skip the counter. Caps below
    /// 2^18 are counted exactly.
    pub fn encryption_sample_rate(&self) -> u64 {
        let rate = (self.max_encryptions_per_session >> 18).clamp(1, 64);
        1 << rate.ilog2()
    }

    /// Whether purchases need the per-session counters at all.
    pub fn counts_uses(&self) -> bool {
        self.max_encryptions_per_session > 0 || self.idle_timeout_sec > 0
    }
}

impl Default for AbuseLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The rate-limit key of an init from `ip`: the address, or its /64 for IPv6
/// (IPv4-mapped IPv6 addresses count as the IPv4 address).
pub fn init_ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("init:ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("init:ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("init:ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The rate-limit key of an init by `client_id`.
pub fn init_client_key(client_id: &str) -> String {
    format!("init:client:{client_id}")
}

/// An address range in CIDR notation (`10.0.0.0/8`, `::1/128`; a bare address is a
/// range of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `addr[/prefix]`.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Self { network, prefix })
    }

    /// Parses a comma-separated list (empty text = empty list).
    ///
    /// # Errors
    /// The first entry that does not parse.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        text.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Self::parse)
            .collect()
    }

    /// Whether `ip` lies in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The address a request is rate-limited under: its [`client_ip`], or `None` when that
/// address is exempt.
pub fn rate_limited_ip(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted_proxies: &[IpRange],
    exempt: &[IpRange],
) -> Option<IpAddr> {
    let client = client_ip(peer, forwarded_for, trusted_proxies);
    (!exempt.iter().any(|r| r.contains(client))).then_some(client)
}

/// The client's address. `peer` is the TCP peer; when it is a trusted proxy, the
/// `X-Forwarded-For` chain is walked from the right and the first address that is not
/// a trusted proxy is the client (the ones further left could have been written by the
/// client itself).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted_proxies: &[IpRange]) -> IpAddr {
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|r| r.contains(ip));
    let mut client = peer.to_canonical();
    if trusted(client)
        && let Some(chain) = forwarded_for
    {
        for hop in chain.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break; // unreadable: stop at the last address we could trust
            };
            client = ip.to_canonical();
            if !trusted(client) {
                break;
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_caps_are_sampled_small_ones_counted_exactly() {
        let rate = |cap| {
            AbuseLimits {
                max_encryptions_per_session: cap,
                ..AbuseLimits::DEFAULT
            }
            .encryption_sample_rate()
        };
        assert_eq!(AbuseLimits::DEFAULT.encryption_sample_rate(), 64);
        assert_eq!(rate(4), 1);
        assert_eq!(rate((1 << 18) - 1), 1);
        assert_eq!(rate(3 << 18), 2);
        assert_eq!(rate(u64::MAX), 64);
        assert_eq!(rate(0), 1);
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(init_ip_key(a), init_ip_key(b));
        assert_ne!(init_ip_key(a), init_ip_key(c));
        assert_eq!(init_ip_key(a), "init:ip:2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(init_ip_key(mapped), init_ip_key(v4));
        assert_ne!(init_client_key("a"), init_ip_key(v4));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_ranges_parse_and_match() {
        let r = IpRange::parse("10.1.0.0/16").unwrap();
        assert!(r.contains(ip("10.1.200.3")));
        assert!(r.contains(ip("::ffff:10.1.0.1")));
        assert!(!r.contains(ip("10.2.0.1")));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(IpRange::parse("::1").unwrap().contains(ip("::1")));
        assert!(!IpRange::parse("::1").unwrap().contains(ip("127.0.0.1")));
        assert!(IpRange::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        for bad in ["10.0.0.0/33", "nope", "::/129", "1.2.3.4/x"] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(IpRange::parse_list(" 127.0.0.0/8, ::1 ").unwrap().len(), 2);
        assert!(IpRange::parse_list("").unwrap().is_empty());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = IpRange::parse_list("10.0.0.0/8").unwrap();
        let loopback = IpRange::parse_list("127.0.0.0/8,::1").unwrap();
        let xff = Some("6.6.6.6, 203.0.113.9, 10.0.0.2");
        // From a trusted proxy: the rightmost untrusted hop (6.6.6.6 may be forged).
        assert_eq!(
            rate_limited_ip(ip("10.0.0.1"), xff, &proxies, &[]),
            Some(ip("203.0.113.9"))
        );
        // From anyone else the header is ignored.
        assert_eq!(
            rate_limited_ip(ip("198.51.100.1"), xff, &proxies, &[]),
            Some(ip("198.51.100.1"))
        );
        // A chain of proxies only: the leftmost.
        assert_eq!(
            rate_limited_ip(ip("10.0.0.1"), Some("10.9.9.9"), &proxies, &[]),
            Some(ip("10.9.9.9"))
        );
        assert_eq!(rate_limited_ip(ip("127.0.0.1"), None, &[], &loopback), None);
        assert_eq!(
            rate_limited_ip(ip("::ffff:127.0.0.1"), None, &[], &loopback),
            None
        );
        assert_eq!(
            rate_limited_ip(ip("10.0.0.1"), Some("junk"), &proxies, &[]),
            Some(ip("10.0.0.1"))
        );
    }
}
