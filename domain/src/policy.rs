//! Replay and lifetime policies (docs/PROTOCOL.md §2, §6.2, §7.2).

/// Invalid policy settings, refused at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The nonce would be forgotten while its request is still inside the window.
    #[error(
        "NONCE_TTL_SEC ({ttl_sec} s) must be at least twice TIMESTAMP_WINDOW_MS ({window_ms} ms): \
         a request stamped one window in the future stays acceptable for two windows"
    )]
    NonceTtlTooShort {
        /// The configured window.
        window_ms: u64,
        /// The configured TTL.
        ttl_sec: u64,
    },
    /// A zero window would refuse every request.
    #[error("TIMESTAMP_WINDOW_MS must be at least 1000")]
    WindowTooSmall,
    /// min ≤ default ≤ max does not hold, or a value is zero.
    #[error(
        "session TTLs must satisfy 0 < SESSION_TTL_MIN_SEC <= SESSION_TTL_DEFAULT_SEC <= SESSION_TTL_MAX_SEC (got {min}/{default}/{max})"
    )]
    TtlOrder {
        /// min
        min: u64,
        /// default
        default: u64,
        /// max
        max: u64,
    },
}

/// Timestamp window and nonce lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayPolicy {
    window_ms: u64,
    nonce_ttl_sec: u64,
}

impl ReplayPolicy {
    /// Defaults: ±300 000 ms, nonces kept 600 s.
    pub const DEFAULT: Self = Self {
        window_ms: 300_000,
        nonce_ttl_sec: 600,
    };

    /// # Errors
    /// [`PolicyError`] unless `window_ms ≥ 1000` and `nonce_ttl_sec × 1000 ≥ 2 × window_ms`.
    pub fn new(window_ms: u64, nonce_ttl_sec: u64) -> Result<Self, PolicyError> {
        if window_ms < 1000 {
            return Err(PolicyError::WindowTooSmall);
        }
        if nonce_ttl_sec.saturating_mul(1000) < window_ms.saturating_mul(2) {
            return Err(PolicyError::NonceTtlTooShort {
                window_ms,
                ttl_sec: nonce_ttl_sec,
            });
        }
        Ok(Self {
            window_ms,
            nonce_ttl_sec,
        })
    }

    /// The window in ms.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }
    /// The nonce TTL in seconds.
    pub fn nonce_ttl_sec(&self) -> u64 {
        self.nonce_ttl_sec
    }

    /// How long a claimed nonce is kept, in seconds: the configured TTL, and always
    /// longer than twice the window. A request stamped a full window ahead of its first
    /// use passes the window until first use + 2 × window, inclusive, so its nonce must
    /// outlive that instant; every store drops a nonce at claim + TTL, so the TTL must
    /// exceed 2 × window — the extra second also absorbs the stores' rounding to
    /// seconds and millisecond clock steps.
    pub fn claim_ttl_sec(&self) -> u64 {
        self.nonce_ttl_sec
            .max(self.window_ms.saturating_mul(2) / 1000 + 1)
    }

    /// `|now − ts| ≤ window` (a difference of exactly the window is accepted).
    pub fn in_window(&self, timestamp_ms: u64, now_ms: u64) -> bool {
        timestamp_ms.abs_diff(now_ms) <= self.window_ms
    }
}

/// The store key of a nonce, scoped per client (§14 V3): `nonce:<clientId>:<nonce>`.
/// Neither part can contain `:` (see the header grammars), so the key is unambiguous.
pub fn nonce_key(client_id: &str, nonce: &str) -> String {
    let mut k = String::with_capacity(7 + client_id.len() + nonce.len());
    k.push_str("nonce:");
    k.push_str(client_id);
    k.push(':');
    k.push_str(nonce);
    k
}

/// `ttlSec` as found in an unversioned init body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestedTtl {
    /// Field absent.
    Absent,
    /// A JSON number.
    Number(f64),
    /// Present but not a number (`null`, a string, …).
    NotANumber,
}

/// Lifetime rules of the unversioned `POST /session/init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    min_sec: u64,
    max_sec: u64,
    default_sec: u64,
}

impl TtlPolicy {
    /// 300 / 3600, default 1800.
    pub const DEFAULT: Self = Self {
        min_sec: 300,
        max_sec: 3600,
        default_sec: 1800,
    };

    /// # Errors
    /// [`PolicyError::TtlOrder`] unless `0 < min ≤ default ≤ max`.
    pub fn new(min_sec: u64, default_sec: u64, max_sec: u64) -> Result<Self, PolicyError> {
        if min_sec == 0 || min_sec > default_sec || default_sec > max_sec {
            return Err(PolicyError::TtlOrder {
                min: min_sec,
                default: default_sec,
                max: max_sec,
            });
        }
        Ok(Self {
            min_sec,
            max_sec,
            default_sec,
        })
    }

    /// Validates (integer-valued number ≥ 0) and clamps to [min, max]; absent → default.
    /// Returns `None` for an invalid value (docs/PROTOCOL.md §8.1 step 7).
    pub fn resolve(&self, requested: RequestedTtl) -> Option<u64> {
        match requested {
            RequestedTtl::Absent => Some(self.default_sec),
            RequestedTtl::NotANumber => None,
            RequestedTtl::Number(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 => {
                // Saturating float→int cast; clamping makes the exact value irrelevant.
                Some((n as u64).clamp(self.min_sec, self.max_sec))
            }
            RequestedTtl::Number(_) => None,
        }
    }
}

/// Lifetime rules of `POST /v1/session/init` (identity semantics, §7.2, §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1TtlPolicy {
    /// TTL without (trusted) `Authorization`. Default 1800.
    pub anonymous_sec: u64,
    /// TTL with a non-empty `Authorization` while upstream auth is trusted. Default 3600.
    pub authenticated_sec: u64,
    /// Whether a gateway in front has verified `Authorization` (off by default: then the
    /// header is ignored, so no caller can buy the longer TTL with an arbitrary value).
    pub trust_upstream_auth: bool,
}

impl V1TtlPolicy {
    /// 1800 / 3600, upstream auth not trusted.
    pub const DEFAULT: Self = Self {
        anonymous_sec: 1800,
        authenticated_sec: 3600,
        trust_upstream_auth: false,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replay_policy_refuses_short_ttl() {
        assert!(ReplayPolicy::new(300_000, 600).is_ok());
        assert!(matches!(
            ReplayPolicy::new(300_000, 599),
            Err(PolicyError::NonceTtlTooShort { .. })
        ));
        assert!(matches!(
            ReplayPolicy::new(300_000, 300),
            Err(PolicyError::NonceTtlTooShort { .. })
        ));
        assert_eq!(
            ReplayPolicy::new(999, 600),
            Err(PolicyError::WindowTooSmall)
        );
    }

    #[test]
    fn window_boundary_is_inclusive() {
        let p = ReplayPolicy::DEFAULT;
        let now = 1_706_700_000_000;
        assert!(p.in_window(now - 300_000, now));
        assert!(p.in_window(now + 300_000, now));
        assert!(!p.in_window(now - 300_001, now));
        assert!(!p.in_window(now + 300_001, now));
        assert!(!p.in_window(0, now));
    }

    #[test]
    fn nonce_keys_are_per_client() {
        assert_eq!(nonce_key("A", "n"), "nonce:A:n");
        assert_ne!(nonce_key("A", "n"), nonce_key("B", "n"));
    }

    #[test]
    fn ttl_rules_of_the_unversioned_family() {
        let p = TtlPolicy::DEFAULT;
        assert_eq!(p.resolve(RequestedTtl::Absent), Some(1800));
        assert_eq!(p.resolve(RequestedTtl::Number(0.0)), Some(300));
        assert_eq!(p.resolve(RequestedTtl::Number(1800.0)), Some(1800));
        assert_eq!(p.resolve(RequestedTtl::Number(1e30)), Some(3600));
        assert_eq!(p.resolve(RequestedTtl::Number(-1.0)), None);
        assert_eq!(p.resolve(RequestedTtl::Number(1.5)), None);
        assert_eq!(p.resolve(RequestedTtl::NotANumber), None);
        assert!(TtlPolicy::new(300, 200, 3600).is_err());
        assert!(TtlPolicy::new(0, 0, 0).is_err());
    }

    proptest! {
        #[test]
        fn ttl_is_clamped_for_every_integer(n in 0u64..10_000_000) {
            let got = TtlPolicy::DEFAULT.resolve(RequestedTtl::Number(n as f64)).unwrap();
            prop_assert!((300..=3600).contains(&got));
            if (300..=3600).contains(&n) { prop_assert_eq!(got, n); }
        }

        #[test]
        fn negative_or_fractional_ttl_is_refused(n in -1e9f64..1e9) {
            let got = TtlPolicy::DEFAULT.resolve(RequestedTtl::Number(n));
            prop_assert_eq!(got.is_some(), n >= 0.0 && n.fract() == 0.0);
        }
    }

    #[test]
    fn a_nonce_outlives_every_instant_its_request_passes_the_window() {
        for (window_ms, ttl_sec) in [(300_000, 600), (1_000, 2), (1_500, 3), (300_000, 900)] {
            let p = ReplayPolicy::new(window_ms, ttl_sec).unwrap();
            let first_use = 1_000_000_000;
            let stamped = first_use + window_ms; // one full window ahead
            let last_pass = stamped + window_ms;
            assert!(p.in_window(stamped, last_pass));
            assert!(
                first_use + p.claim_ttl_sec() * 1000 > last_pass,
                "{window_ms} {ttl_sec}"
            );
            assert!(p.claim_ttl_sec() >= ttl_sec);
        }
    }
}
