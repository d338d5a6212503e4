//! The `Server-Timing` header (docs/PROTOCOL.md §2).

use std::fmt::Write as _;
use std::time::Instant;

use hyper::header::HeaderValue;

/// `<name>;dur=<ms with 3 decimals>, …, total;dur=…`, formatted with integer
/// arithmetic (this runs on every init and purchase).
pub(crate) fn server_timing(steps: &[(&'static str, u64)], started: Instant) -> HeaderValue {
    fn push(s: &mut String, name: &str, ns: u64) {
        let us = ns / 1000;
        let _ = write!(s, "{name};dur={}.{:03}", us / 1000, us % 1000);
    }
    let mut s = String::with_capacity(192);
    for (name, ns) in steps {
        push(&mut s, name, *ns);
        s.push_str(", ");
    }
    push(
        &mut s,
        "total",
        u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
    );
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("total;dur=0.000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_listed_in_order_in_milliseconds_then_the_total() {
        let v = server_timing(&[("hkdf", 1_234_567), ("db-store", 999)], Instant::now());
        let text = v.to_str().unwrap();
        assert!(
            text.starts_with("hkdf;dur=1.234, db-store;dur=0.000, total;dur="),
            "{text}"
        );
    }
}
