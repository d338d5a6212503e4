//! The `Date` header (RFC 9110 §5.6.7, IMF-fixdate): how far the server's clock says it
//! is from this machine's. Not authenticated: the library acts on it only where acting
//! twice is harmless (an init, an idempotent call; see [`crate::Session`]).

/// Milliseconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn parse_ms(text: &str) -> Option<u64> {
    let mut it = text.split_whitespace();
    let _weekday = it.next()?;
    let day: u64 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if it.next()? != "GMT" || day == 0 || day > 31 || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (h * 3600 + m * 60 + s) as i64;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// The server's clock minus this machine's, by `date` (its second, + 500 ms), if any.
pub(crate) fn skew_ms(date: Option<&str>) -> Option<i64> {
    let server = i64::try_from(parse_ms(date?)?).ok()? + 500;
    Some(server - i64::try_from(crate::now_ms()).ok()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn imf_fixdates_parse() {
        assert_eq!(
            super::parse_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(
            super::parse_ms("Mon, 07 Dec 2026 02:45:51 GMT"),
            Some(1_796_611_551_000)
        );
        assert_eq!(super::parse_ms("Mon, 07 Dec 2026 02:45:51 UTC"), None);
        assert_eq!(super::parse_ms("yesterday"), None);
    }
}
