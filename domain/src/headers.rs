//! Validated newtypes for the protocol's header values (docs/PROTOCOL.md §2, with the
//! recommended strict grammars of §4.1, §4.2 and §14 V5–V7).

use std::fmt;

use crate::encoding::push_hex;

/// The protocol's header names, lower case (as HTTP/2 sends them; HTTP/1.1 compares
/// them without case): the one table the server, the gateway and the client library
/// read (docs/PROTOCOL.md §2, §20).
pub mod name {
    /// `X-Kid: session:<sessionId>` (v1 init answers: the bare id).
    pub const KID: &str = "x-kid";
    /// `X-Idempotency-Key: <timestamp>.<nonce>`.
    pub const IDEMPOTENCY_KEY: &str = "x-idempotency-key";
    /// `X-ClientId`.
    pub const CLIENT_ID: &str = "x-clientid";
    /// `X-Inner-Content-Type`: the content type of the sealed body (bound in v2).
    pub const INNER_CONTENT_TYPE: &str = "x-inner-content-type";
    /// `X-Envelope`: a gateway `GET`'s envelope, base64.
    pub const ENVELOPE: &str = "x-envelope";
    /// `X-Inner-Status`: a gateway answer's real status when it may carry no content.
    pub const INNER_STATUS: &str = "x-inner-status";
    /// `Idempotency-Key`: the client's key of a call (bound by v2; forwarded).
    pub const CALL_KEY: &str = "idempotency-key";
    /// `X-Request-Id`: echoed, and forwarded by the gateway.
    pub const REQUEST_ID: &str = "x-request-id";
    /// `X-Sealed-Refusals: 1` on a request: the client opens sealed refusals (v2).
    pub const SEALED_REFUSALS: &str = "x-sealed-refusals";
    /// `X-Sealed-Refusal: 1` on an answer: its body is a sealed refusal, not an answer.
    pub const SEALED_REFUSAL: &str = "x-sealed-refusal";
    /// The prefix of the identity headers the gateway sets; a client's copy of any
    /// header with it is dropped.
    pub const SESSION_PREFIX: &str = "x-session-";
    /// `X-Session-Client-Id`: the session's owner, set by the gateway.
    pub const SESSION_CLIENT_ID: &str = "x-session-client-id";
    /// `X-Session-Id`: the session's pseudonym, set by the gateway.
    pub const SESSION_ID: &str = "x-session-id";
    /// `X-Session-Protocol`: the session's protocol version, set by the gateway.
    pub const SESSION_PROTOCOL: &str = "x-session-protocol";
}

/// Why a header value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A required header is absent or empty.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// `X-Idempotency-Key` is not `<1–16 digits>.<16–128 of [A-Za-z0-9_-]>`.
    #[error("malformed X-Idempotency-Key: {0}")]
    IdempotencyKey(&'static str),
    /// `X-ClientId` is not 1–128 visible ASCII characters without `|` and `:`.
    #[error("malformed X-ClientId")]
    ClientId,
    /// `X-Kid` lacks the `session:` prefix or has nothing after it.
    #[error("malformed X-Kid")]
    Kid,
    /// `Idempotency-Key` is not a quoted string of 1–255 visible ASCII characters
    /// without `"` or `\`.
    #[error("malformed Idempotency-Key")]
    CallKey,
    /// A field a v2 AAD binds (the request target, `X-Inner-Content-Type`) is longer
    /// than its length prefix can say (65,535 bytes).
    #[error("request target or X-Inner-Content-Type longer than 65535 bytes")]
    TooLong,
}

/// `X-Idempotency-Key: <timestamp>.<nonce>` — a replay-protection token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyKey<'a> {
    timestamp_text: &'a str,
    timestamp_ms: u64,
    nonce: &'a str,
}

/// Most digits a timestamp may have (16 digits fit in a u64 with room to spare).
pub const MAX_TIMESTAMP_DIGITS: usize = 16;
/// Shortest accepted nonce.
pub const MIN_NONCE_LEN: usize = 16;
/// Longest accepted nonce.
pub const MAX_NONCE_LEN: usize = 128;

fn is_nonce_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// The prefix of every nonce the server puts in a response `X-Idempotency-Key`. Request
/// nonces may not start with it, so a response can never pass for a request: its
/// headers and body, sent back to the server, are refused before any other check. No
/// shipped client generates it (they send UUIDs, which hold no `_`).
pub const RESPONSE_NONCE_PREFIX: &str = "rsp_";

impl<'a> IdempotencyKey<'a> {
    /// [`Self::parse`] for a key a client sent: the grammar, and a nonce that does not
    /// start with the [`RESPONSE_NONCE_PREFIX`].
    ///
    /// # Errors
    /// [`HeaderError::IdempotencyKey`] with the failed rule.
    pub fn parse_request(value: &'a str) -> Result<Self, HeaderError> {
        let key = Self::parse(value)?;
        if key.nonce.starts_with(RESPONSE_NONCE_PREFIX) {
            return Err(HeaderError::IdempotencyKey(
                "nonce has the prefix reserved for responses",
            ));
        }
        Ok(key)
    }

    /// Parses the strict grammar: exactly two `.`-separated parts; the timestamp is
    /// 1–16 ASCII digits; the nonce is 16–128 characters of `[A-Za-z0-9_-]`.
    ///
    /// # Errors
    /// [`HeaderError::IdempotencyKey`] with the failed rule.
    pub fn parse(value: &'a str) -> Result<Self, HeaderError> {
        let err = HeaderError::IdempotencyKey;
        let (ts, nonce) = value.split_once('.').ok_or(err("no '.' separator"))?;
        if ts.is_empty()
            || ts.len() > MAX_TIMESTAMP_DIGITS
            || !ts.bytes().all(|c| c.is_ascii_digit())
        {
            return Err(err("timestamp is not 1-16 digits"));
        }
        if nonce.len() < MIN_NONCE_LEN || nonce.len() > MAX_NONCE_LEN {
            return Err(err("nonce length is not 16-128"));
        }
        if !nonce.bytes().all(is_nonce_char) {
            // This also refuses a second '.', '|' (AAD separator) and ':' (store key separator).
            return Err(err("nonce has a character outside [A-Za-z0-9_-]"));
        }
        let timestamp_ms = ts
            .parse()
            .map_err(|_| err("timestamp is not 1-16 digits"))?;
        Ok(Self {
            timestamp_text: ts,
            timestamp_ms,
            nonce,
        })
    }

    /// The timestamp exactly as sent (it goes into the AAD byte for byte).
    pub fn timestamp_text(&self) -> &'a str {
        self.timestamp_text
    }
    /// The timestamp in epoch milliseconds.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
    /// The nonce.
    pub fn nonce(&self) -> &'a str {
        self.nonce
    }
}

/// `Idempotency-Key` (the IETF httpapi header, a Structured Field string): the
/// client's key of one call, the same on every re-send of it, so that an upstream that
/// deduplicates can run the call once. A v2 session binds it in the request AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallKey<'a>(&'a str);

/// Longest accepted call key, quotes excluded.
pub const MAX_CALL_KEY_LEN: usize = 255;

impl<'a> CallKey<'a> {
    /// `"` + 1–255 visible ASCII characters (0x21–0x7E) except `"` and `\` + `"`:
    /// an sf-string with nothing to escape.
    ///
    /// # Errors
    /// [`HeaderError::CallKey`].
    pub fn parse(value: &'a str) -> Result<Self, HeaderError> {
        let inner = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or(HeaderError::CallKey)?;
        let ok = !inner.is_empty()
            && inner.len() <= MAX_CALL_KEY_LEN
            && inner
                .bytes()
                .all(|c| (0x21..=0x7e).contains(&c) && c != b'"' && c != b'\\');
        if ok {
            Ok(Self(value))
        } else {
            Err(HeaderError::CallKey)
        }
    }
    /// The header's value verbatim (with its quotes), as the AAD binds it.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// `X-ClientId`: an opaque, unauthenticated caller label.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientId<'a>(&'a str);

/// Longest accepted client id.
pub const MAX_CLIENT_ID_LEN: usize = 128;

impl<'a> ClientId<'a> {
    /// 1–128 visible ASCII characters (0x21–0x7E) except `|` and `:`, which would
    /// make the AAD or a store key ambiguous.
    ///
    /// # Errors
    /// [`HeaderError::ClientId`].
    pub fn parse(value: &'a str) -> Result<Self, HeaderError> {
        let ok = !value.is_empty()
            && value.len() <= MAX_CLIENT_ID_LEN
            && value
                .bytes()
                .all(|c| (0x21..=0x7e).contains(&c) && c != b'|' && c != b':');
        if ok {
            Ok(Self(value))
        } else {
            Err(HeaderError::ClientId)
        }
    }
    /// The id verbatim.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl fmt::Debug for ClientId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({:?})", self.0)
    }
}

/// A session identifier: `S-` followed by 32 lowercase hex digits (128 random bits).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

/// Length of a session id string.
pub const SESSION_ID_LEN: usize = 34;

impl SessionId {
    /// Builds an id from 16 CSPRNG bytes.
    pub fn from_random(bytes: [u8; 16]) -> Self {
        let mut s = String::with_capacity(SESSION_ID_LEN);
        s.push_str("S-");
        push_hex(&mut s, &bytes, false);
        Self(s)
    }

    /// `^S-[0-9a-f]{32}$`, nothing else.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = value.len() == SESSION_ID_LEN
            && value.starts_with("S-")
            && value
                .bytes()
                .skip(2)
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(value.to_owned()))
    }

    /// The full id (use [`SessionId::short`] in logs).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A log-safe prefix: `S-` and the first 8 hex digits.
    pub fn short(&self) -> &str {
        &self.0[..10]
    }

    /// Consumes the id.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", self.short())
    }
}

/// The `X-Kid` prefix.
pub const KID_PREFIX: &str = "session:";

/// Splits `X-Kid: session:<id>` and returns the remainder (not yet validated as an id).
///
/// # Errors
/// [`HeaderError::Kid`] when the prefix is missing or nothing follows it.
pub fn kid_session_part(kid: &str) -> Result<&str, HeaderError> {
    match kid.strip_prefix(KID_PREFIX) {
        Some(rest) if !rest.is_empty() => Ok(rest),
        _ => Err(HeaderError::Kid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NONCE: &str = "123e4567-e89b-42d3-a456-426614174000";

    #[test]
    fn call_keys_are_quoted_strings_with_nothing_to_escape() {
        for ok in [
            r#""8e03978e-40d5-43e8-bc93-6894a57f9324""#,
            r#""order-1234""#,
            r#""a""#,
        ] {
            assert_eq!(CallKey::parse(ok).map(|k| k.as_str()), Ok(ok), "{ok}");
        }
        let long = format!("\"{}\"", "k".repeat(MAX_CALL_KEY_LEN + 1));
        for bad in [
            "order-1234",
            r#""""#,
            r#""has space""#,
            r#""quo"te""#,
            r#""back\slash""#,
            "\"unterminated",
            long.as_str(),
            "\u{0}",
        ] {
            assert_eq!(CallKey::parse(bad), Err(HeaderError::CallKey), "{bad:?}");
        }
    }

    #[test]
    fn accepts_shipped_client_shapes() {
        let k =
            IdempotencyKey::parse("1706700000000.123e4567-e89b-42d3-a456-426614174000").unwrap();
        assert_eq!(k.timestamp_ms(), 1_706_700_000_000);
        assert_eq!(k.timestamp_text(), "1706700000000");
        assert_eq!(k.nonce(), NONCE);
        // identity test-suite shape: 32 hex chars
        assert!(IdempotencyKey::parse("1.0123456789abcdef0123456789abcdef").is_ok());
        // leading zeros are kept verbatim for the AAD
        assert_eq!(
            IdempotencyKey::parse(&format!("0001.{NONCE}"))
                .unwrap()
                .timestamp_text(),
            "0001"
        );
    }

    #[test]
    fn refuses_reference_defects() {
        for bad in [
            String::new(),
            "1706700000000".into(),
            "1706700000000.".into(),                // D2: empty nonce
            format!(".{NONCE}"),                    // empty timestamp
            format!("1706700000000.{NONCE}.extra"), // V6: extra part
            format!("123abc.{NONCE}"),              // V7: lenient parse
            format!(" 1706700000000.{NONCE}"),
            format!("+1706700000000.{NONCE}"),
            format!("-1.{NONCE}"),
            format!("12345678901234567.{NONCE}"), // 17 digits
            "1.short-nonce".into(),               // < 16 chars
            format!("1.{}", "a".repeat(129)),
            format!("1.{}|x", &NONCE[..20]),
            format!("1.{}:x", &NONCE[..20]),
        ] {
            assert!(IdempotencyKey::parse(&bad).is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::parse(&format!("1.{}", "a".repeat(128))).is_ok());
        assert!(IdempotencyKey::parse(&format!("1234567890123456.{}", "a".repeat(16))).is_ok());
    }

    proptest! {
        // That the parser accepts exactly the grammar is checked against the one oracle
        // of it, `crypto_conformance::fuzz::idempotency_key_grammar` (tests/grammar.rs
        // there, and the `idempotency_key` fuzz target).

        #[test]
        fn parser_never_panics(s in any::<String>()) {
            let _ = IdempotencyKey::parse(&s);
        }

        #[test]
        fn valid_keys_round_trip(ts in 0u64..10_000_000_000_000_000, nonce in "[A-Za-z0-9_-]{16,128}") {
            let text = format!("{ts}.{nonce}");
            let k = IdempotencyKey::parse(&text).unwrap();
            prop_assert_eq!(k.timestamp_ms(), ts);
            prop_assert_eq!(k.nonce(), nonce.as_str());
        }
    }

    #[test]
    fn client_ids() {
        for ok in [
            "NODE_CLIENT",
            "JAVA_VT_OPT_ACCP",
            "owner-client-00ff",
            "a",
            &"x".repeat(128),
        ] {
            assert!(ClientId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a|b",
            "a:b",
            "a b",
            "caf\u{e9}",
            &"x".repeat(129),
            "tab\t",
        ] {
            assert!(ClientId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_ids_and_kids() {
        let id = SessionId::from_random([0xab; 16]);
        assert_eq!(id.as_str(), format!("S-{}", "ab".repeat(16)));
        assert!(SessionId::parse(id.as_str()).is_some());
        assert_eq!(id.short(), "S-abababab");
        assert!(SessionId::parse("S-000102030405060708090a0b0c0d0e0f").is_some());
        for bad in [
            "A-000102030405060708090a0b0c0d0e0f",
            "S-000102030405060708090A0B0C0D0E0F",
            "S-00",
            "S-000102030405060708090a0b0c0d0e0f0",
        ] {
            assert!(SessionId::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(kid_session_part("session:S-1"), Ok("S-1"));
        assert_eq!(kid_session_part("session:"), Err(HeaderError::Kid));
        assert_eq!(kid_session_part("S-1"), Err(HeaderError::Kid));
        assert_eq!(kid_session_part("Session:S-1"), Err(HeaderError::Kid));
    }

    #[test]
    fn a_response_nonce_is_never_a_request_nonce() {
        let response =
            format!("1706700000456.{RESPONSE_NONCE_PREFIX}0f8fad5b-d9cb-469f-a165-70867728950e");
        assert!(
            IdempotencyKey::parse(&response).is_ok(),
            "clients still read it"
        );
        assert_eq!(
            IdempotencyKey::parse_request(&response),
            Err(HeaderError::IdempotencyKey(
                "nonce has the prefix reserved for responses"
            ))
        );
        assert!(
            IdempotencyKey::parse_request("1706700000456.0f8fad5b-d9cb-469f-a165-70867728950e")
                .is_ok()
        );
    }
}
