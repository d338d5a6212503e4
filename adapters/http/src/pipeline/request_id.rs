//! The request id: the client's `X-Request-Id` when it is safe to log and echo, else a
//! fresh one.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::header::HeaderMap;

use crate::wire::X_REQUEST_ID;

/// The client's `X-Request-Id` if it is 1–64 of `[A-Za-z0-9._-]`, else a fresh id: 16
/// hex digits from a per-process start value and a counter (unique, not secret).
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    if let Some(id) = headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok())
        && (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return id.to_owned();
    }
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        // Any varying value will do: ids only need to differ between restarts.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
    });
    format!(
        "{:016x}",
        start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_safe_client_id_is_kept_and_anything_else_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, "abc-1.2_3".parse().unwrap());
        assert_eq!(request_id(&h), "abc-1.2_3");
        h.insert(X_REQUEST_ID, "has space".parse().unwrap());
        let fresh = request_id(&h);
        assert_eq!(fresh.len(), 16);
        assert_ne!(fresh, request_id(&h), "fresh ids differ");
    }
}
