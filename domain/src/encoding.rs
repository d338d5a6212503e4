//! Text encodings of the wire protocol (docs/PROTOCOL.md §1): standard base64 (encoders
//! emit padding; the decoder accepts it optionally and rejects everything else), hex,
//! ISO-8601 timestamps and UUID v4 strings.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Padded standard base64 (RFC 4648 §4).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sextet(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decodes standard-alphabet base64 with optional `=` padding. Anything else —
/// URL-safe characters, whitespace, wrong padding, non-zero trailing bits — is `None`.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let unpadded = bytes.len() - bytes.iter().rev().take_while(|&&c| c == b'=').count();
    let padding = bytes.len() - unpadded;
    let body = &bytes[..unpadded];
    if padding > 2 || (padding > 0 && !bytes.len().is_multiple_of(4)) || body.len() % 4 == 1 {
        return None;
    }
    if padding > 0 && (4 - body.len() % 4) % 4 != padding {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= sextet(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() - 1; // 4 chars → 3 bytes, 3 → 2, 2 → 1
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..=produced]);
        // Canonical form: bits beyond the last whole byte must be zero.
        if produced < 3 && bytes[1 + produced..].iter().any(|&b| b != 0) {
            return None;
        }
    }
    Some(out)
}

/// Appends lowercase (or uppercase) hex digits of `data` to `out`.
pub fn push_hex(out: &mut String, data: &[u8], upper: bool) {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    for b in data {
        out.push(digits[usize::from(b >> 4)] as char);
        out.push(digits[usize::from(b & 15)] as char);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for an epoch-millisecond instant (UTC).
pub fn iso_timestamp(epoch_ms: u64) -> String {
    let secs = epoch_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        epoch_ms % 1000
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (UTC; RFC 3339).
pub fn utc_timestamp(epoch_sec: u64) -> String {
    let s = iso_timestamp(epoch_sec.saturating_mul(1000));
    format!("{}Z", &s[..19])
}

/// Unix seconds of an RFC 3339 UTC time without fractions, `YYYY-MM-DDTHH:MM:SSZ`
/// (`t` and `z` too); `None` for anything else, a date that does not exist, or a time
/// before 1970.
pub fn parse_utc_timestamp(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20 || !b[19].eq_ignore_ascii_case(&b'Z') || !b[10].eq_ignore_ascii_case(&b'T') {
        return None;
    }
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = &text[range];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || d < 1 || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = days_from_civil(y, m as u32, d as u32);
    // A day past the month's end comes back as another date.
    if civil_from_days(days) != (y, m as u32, d as u32) {
        return None;
    }
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Howard Hinnant's civil date → days algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days → civil date algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A random UUID v4 in canonical lowercase hyphenated form, from 16 random bytes.
pub fn uuid_v4(mut random: [u8; 16]) -> String {
    random[6] = (random[6] & 0x0f) | 0x40;
    random[8] = (random[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, range) in [0..4, 4..6, 6..8, 8..10, 10..16].into_iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        push_hex(&mut s, &random[range], false);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn utc_timestamps_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_utc_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_utc_timestamp("2026-12-06T23:05:22Z"),
            Some(1_796_598_322)
        );
        assert_eq!(
            parse_utc_timestamp("2024-02-29t12:00:00z"),
            Some(1_709_208_000)
        );
        assert_eq!(utc_timestamp(1_796_598_322), "2026-12-06T23:05:22Z");
        for bad in [
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-06T24:00:00Z",
            "2026-12-06 23:05:22Z",
            "2026-12-06T23:05:22+01:00",
            "2026-12-06T23:05:22.5Z",
            "1969-12-31T23:59:59Z",
            "+026-12-06T23:05:22Z",
            "",
        ] {
            assert_eq!(parse_utc_timestamp(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn every_second_round_trips(secs in 0u64..253_402_300_799) {
            prop_assert_eq!(parse_utc_timestamp(&utc_timestamp(secs)), Some(secs));
        }
    }

    #[test]
    fn base64_known_values() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zg").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v").unwrap(), b"foo");
    }

    #[test]
    fn base64_rejects_non_standard_input() {
        for bad in [
            "Zh==", "Z===", "Zg=", "Zm9v=", "Z", "Zm 9v", "-_-_", "Zg==Zg==", "Zm9v\n", "====",
        ] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn base64_round_trips(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let text = base64_encode(&data);
            prop_assert_eq!(base64_decode(&text), Some(data.clone()));
            prop_assert_eq!(base64_decode(text.trim_end_matches('=')), Some(data));
        }
    }

    #[test]
    fn iso_timestamps() {
        assert_eq!(iso_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_timestamp(1_706_700_000_456), "2024-01-31T11:20:00.456Z");
        assert_eq!(iso_timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn uuid_has_version_and_variant() {
        let u = uuid_v4([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
    }
}
