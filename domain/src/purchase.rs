//! The purchase business payload (docs/PROTOCOL.md §8.2). JSON itself is parsed by the HTTP
//! adapter; the rules on the values live here.

use std::fmt::Write as _;

use crate::encoding::{iso_timestamp, push_hex};
use crate::service::exchange::PayloadError;

/// Longest accepted `schemeCode`.
pub const MAX_SCHEME_CODE_LEN: usize = 64;
/// Largest accepted `amount`: 10^15, so every client's number type holds it (JavaScript
/// numbers are exact to 2^53 ≈ 9 × 10^15) and the confirmation message stays short.
pub const MAX_AMOUNT: f64 = 1e15;

/// A validated purchase request.
#[derive(Debug, Clone, PartialEq)]
pub struct Purchase<'a> {
    scheme_code: &'a str,
    amount_text: &'a str,
    amount: f64,
}

impl<'a> Purchase<'a> {
    /// `scheme_code`: the decoded JSON string. `amount_text`: the JSON number exactly as
    /// the client wrote it (echoed back unchanged).
    ///
    /// # Errors
    /// [`PayloadError`].
    pub fn validate(scheme_code: &'a str, amount_text: &'a str) -> Result<Self, PayloadError> {
        let chars = scheme_code.chars().count();
        if chars == 0 || chars > MAX_SCHEME_CODE_LEN || scheme_code.chars().any(char::is_control) {
            return Err(PayloadError::SchemeCode);
        }
        let looks_numeric = amount_text
            .bytes()
            .next()
            .is_some_and(|c| c == b'-' || c.is_ascii_digit());
        if !looks_numeric {
            return Err(PayloadError::Shape("amount is not a number"));
        }
        let amount: f64 = amount_text
            .parse()
            .map_err(|_| PayloadError::Shape("amount is not a number"))?;
        if !amount.is_finite() || amount <= 0.0 || amount > MAX_AMOUNT {
            return Err(PayloadError::Amount);
        }
        Ok(Self {
            scheme_code,
            amount_text,
            amount,
        })
    }

    /// Confirms the (mock) transaction: nothing is persisted.
    pub fn confirm(&self, transaction_random: [u8; 8], now_ms: u64) -> Receipt<'a> {
        Receipt::confirm(
            self.scheme_code,
            self.amount_text,
            transaction_random,
            now_ms,
        )
    }
}

impl<'a> Receipt<'a> {
    /// The receipt of a purchase whose `scheme_code` and `amount_text` passed
    /// [`Purchase::validate`] (the confirmation of a route that checked the purchase
    /// before its nonce was claimed and confirms it after).
    pub fn confirm(
        scheme_code: &'a str,
        amount_text: &'a str,
        transaction_random: [u8; 8],
        now_ms: u64,
    ) -> Self {
        let mut transaction_id = String::with_capacity(20);
        transaction_id.push_str("TXN-");
        push_hex(&mut transaction_id, &transaction_random, true);
        // The amount as the client wrote it (like the echoed `amount`), not re-formatted.
        let mut message = String::with_capacity(64);
        let _ = write!(
            message,
            "Purchase of {amount_text} for scheme {scheme_code} processed successfully"
        );
        Self {
            transaction_id,
            scheme_code,
            amount_text,
            timestamp: iso_timestamp(now_ms),
            message,
        }
    }
}

/// The response fields, in wire order after `"status": "SUCCESS"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt<'a> {
    /// `TXN-` + 16 uppercase hex digits.
    pub transaction_id: String,
    /// Echoed.
    pub scheme_code: &'a str,
    /// The client's JSON number text, echoed.
    pub amount_text: &'a str,
    /// Server time, ISO.
    pub timestamp: String,
    /// Human-readable confirmation (wording not normative).
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_fields() {
        assert!(Purchase::validate("AEF", "5000").is_ok());
        assert!(Purchase::validate("TEST", "0.01").is_ok());
        assert!(Purchase::validate("AEF", "5e3").is_ok());
        assert_eq!(
            Purchase::validate("", "5000"),
            Err(PayloadError::SchemeCode)
        );
        assert_eq!(
            Purchase::validate(&"x".repeat(65), "5000"),
            Err(PayloadError::SchemeCode)
        );
        assert!(Purchase::validate(&"é".repeat(64), "1").is_ok());
        assert_eq!(Purchase::validate("AEF", "0"), Err(PayloadError::Amount));
        assert_eq!(Purchase::validate("AEF", "-5"), Err(PayloadError::Amount));
        assert_eq!(
            Purchase::validate("AEF", "1e999"),
            Err(PayloadError::Amount)
        );
        assert!(matches!(
            Purchase::validate("AEF", "\"5\""),
            Err(PayloadError::Shape(_))
        ));
        assert!(matches!(
            Purchase::validate("AEF", "NaN"),
            Err(PayloadError::Shape(_))
        ));
    }

    #[test]
    fn huge_amounts_and_control_characters_are_refused() {
        assert!(Purchase::validate("AEF", "1e15").is_ok());
        for amount in ["1e308", "1.0000001e15", "9007199254740993"] {
            assert_eq!(
                Purchase::validate("AEF", amount),
                Err(PayloadError::Amount),
                "{amount}"
            );
        }
        for code in ["A\u{0}F", "AE\nF", "\u{7f}", "A\u{9b}"] {
            assert_eq!(
                Purchase::validate(code, "1"),
                Err(PayloadError::SchemeCode),
                "{code:?}"
            );
        }
    }

    #[test]
    fn receipt_echoes_and_formats() {
        let p = Purchase::validate("AEF", "5000").unwrap();
        let r = p.confirm(
            [0x00, 0x11, 0x22, 0x33, 0xaa, 0xbb, 0xcc, 0xdd],
            1_706_700_000_456,
        );
        assert_eq!(r.transaction_id, "TXN-00112233AABBCCDD");
        assert_eq!(r.amount_text, "5000");
        assert_eq!(r.timestamp, "2024-01-31T11:20:00.456Z");
        assert_eq!(
            r.message,
            "Purchase of 5000 for scheme AEF processed successfully"
        );
    }
}
