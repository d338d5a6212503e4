//! The key layout, in one place. Every multi-key script touches keys that share one
//! hash tag (the part in braces), so each runs on one slot of a Redis Cluster:
//!
//! | key | holds | tag |
//! |---|---|---|
//! | `sess:{<id>}` | a cached session (wrapped key) | the session id |
//! | `revoked:{<id>}` | a revocation tombstone, until the session's expiry | the session id |
//! | `nonce:{<b>}:<client>:<nonce>` | a claimed nonce | a bucket `b` of 256 |
//! | `fence:{<b>}` | the continuity marker of bucket `b` | the bucket |
//! | `rl:<limit>:<subject>` | a rate-limit cell | none (single key) |
//! | `cs:<client>` | live sessions of a client (sorted set) | none |
//! | `enc:<id>`, `use:<id>` | encryptions and last use of a session | none |
//!
//! Nonces are spread over [`BUCKETS`] tags by a hash of the whole claim key, so they
//! land on every shard of a cluster while each bucket keeps one marker beside its
//! nonces: a claim reads the marker and sets the nonce in one transaction, in one slot.

/// How many nonce buckets (hash tags) there are.
pub const BUCKETS: u16 = 256;

/// The cached entry of session `id`.
pub(crate) fn session(id: &str) -> String {
    format!("sess:{{{id}}}")
}

/// The tombstone of a revoked session `id`, in the same slot as its entry.
pub(crate) fn tombstone(id: &str) -> String {
    format!("revoked:{{{id}}}")
}

/// The bucket of a claim key (FNV-1a; stable across processes and versions).
pub(crate) fn bucket(claim_key: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in claim_key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % u32::from(BUCKETS)) as u16
}

/// The Redis key of a claim key `nonce:<client>:<nonce>` (as the domain names it).
pub(crate) fn nonce(claim_key: &str, bucket: u16) -> String {
    let rest = claim_key.strip_prefix("nonce:").unwrap_or(claim_key);
    format!("nonce:{{{bucket:02x}}}:{rest}")
}

/// The continuity marker of `bucket`: present since the bucket's data began.
pub(crate) fn marker(bucket: u16) -> String {
    format!("fence:{{{bucket:02x}}}")
}

/// A rate-limit cell.
pub(crate) fn rate(key: &str) -> String {
    format!("rl:{key}")
}

/// The live sessions of a client.
pub(crate) fn client_sessions(client_id: &str) -> String {
    format!("cs:{client_id}")
}

/// The encryption count of a session.
pub(crate) fn encryptions(session_id: &str) -> String {
    format!("enc:{session_id}")
}

/// The last use of a session.
pub(crate) fn last_use(session_id: &str) -> String {
    format!("use:{session_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash tag Redis Cluster hashes: the first `{…}` with something inside.
    fn tag(key: &str) -> &str {
        if let Some(open) = key.find('{')
            && let Some(len) = key[open + 1..].find('}')
            && len > 0
        {
            return &key[open + 1..open + 1 + len];
        }
        key
    }

    #[test]
    fn the_keys_of_one_script_share_one_hash_tag() {
        assert_eq!(tag(&session("S-1")), tag(&tombstone("S-1")));
        assert_ne!(tag(&session("S-1")), tag(&session("S-2")));
        let claim = "nonce:client-{x}:n1";
        let b = bucket(claim);
        assert_eq!(tag(&nonce(claim, b)), tag(&marker(b)));
        assert_eq!(
            nonce(claim, b),
            format!("nonce:{{{b:02x}}}:client-{{x}}:n1")
        );
    }

    #[test]
    fn nonces_spread_over_all_buckets() {
        let mut seen = vec![0u32; usize::from(BUCKETS)];
        for i in 0..100_000 {
            seen[usize::from(bucket(&format!("nonce:c:{i:016x}")))] += 1;
        }
        let (min, max) = (seen.iter().min().unwrap(), seen.iter().max().unwrap());
        assert!(*min > 300 && *max < 500, "min {min} max {max}");
    }
}
