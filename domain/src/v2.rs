//! Protocol v2 (docs/PROTOCOL.md, part III): the transcript hash, the key schedule, key
//! confirmation, the server-signature input and the length-prefixed AAD.
//!
//! Every byte string here is built from fields each preceded by its length as two
//! big-endian bytes ([`push_field`]), so no two different field lists encode alike,
//! whatever the fields hold. Each string starts with a label that names its purpose
//! and the version, so one can never be taken for another.

use ports::crypto::{DIGEST_LEN, KEY_LEN, SIGNATURE_LEN};
use ports::{CryptoError, CryptoProvider, Digests, HkdfSha256, P256PublicKey, SessionKey};
use ports::{SessionKeys, SharedSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::envelope::Aad;

/// The one v2 suite: P-256 ECDH, HKDF-SHA256, AES-256-GCM (ECDSA P-256 for the
/// optional server signature).
pub const SUITE: &str = "P256-HKDF-SHA256-A256GCM";

/// Labels, one per purpose.
pub mod label {
    /// First field of the transcript.
    pub const TRANSCRIPT: &[u8] = b"session-crypto/2 transcript";
    /// HKDF info of the client → server key.
    pub const REQUEST_KEY: &[u8] = b"session-crypto/2 c2s";
    /// HKDF info of the server → client key.
    pub const RESPONSE_KEY: &[u8] = b"session-crypto/2 s2c";
    /// HKDF info of the confirmation key.
    pub const CONFIRM_KEY: &[u8] = b"session-crypto/2 confirm";
    /// First field of the confirmation MAC's input.
    pub const CONFIRM: &[u8] = b"session-crypto/2 server confirm";
    /// First field of the signature input.
    pub const SIGNATURE: &[u8] = b"session-crypto/2 server signature";
    /// First field of a request AAD.
    pub const REQUEST_AAD: &[u8] = b"session-crypto/2 request";
    /// First field of a response AAD.
    pub const RESPONSE_AAD: &[u8] = b"session-crypto/2 response";
    /// First field of a sealed refusal's AAD.
    pub const REFUSAL_AAD: &[u8] = b"session-crypto/2 refusal";
}

/// A field longer than 65,535 bytes: it has no length-prefixed encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a field is longer than 65535 bytes")]
pub struct FieldTooLong;

/// Appends `len(field)` (two bytes, big-endian) and `field`.
///
/// # Errors
/// [`FieldTooLong`].
pub fn push_field(out: &mut Vec<u8>, field: &[u8]) -> Result<(), FieldTooLong> {
    let len = u16::try_from(field.len()).map_err(|_| FieldTooLong)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
    Ok(())
}

fn encode(fields: &[&[u8]]) -> Result<Vec<u8>, FieldTooLong> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 2).sum());
    for f in fields {
        push_field(&mut out, f)?;
    }
    Ok(out)
}

/// What both sides know after the init exchange, in the order it is hashed.
#[derive(Debug, Clone, Copy)]
pub struct TranscriptInput<'a> {
    /// `X-ClientId`.
    pub client_id: &'a str,
    /// The session id the server chose.
    pub session_id: &'a str,
    /// The client's ephemeral public key (65 bytes).
    pub client_public_key: &'a P256PublicKey,
    /// The server's ephemeral public key (65 bytes).
    pub server_public_key: &'a P256PublicKey,
}

impl TranscriptInput<'_> {
    /// The transcript's bytes: label, version `2`, suite, client id, session id, client
    /// public key, server public key — each length-prefixed.
    ///
    /// # Errors
    /// [`FieldTooLong`] (not for inputs the protocol's grammars accept).
    pub fn encode(&self) -> Result<Vec<u8>, FieldTooLong> {
        encode(&[
            label::TRANSCRIPT,
            b"2",
            SUITE.as_bytes(),
            self.client_id.as_bytes(),
            self.session_id.as_bytes(),
            self.client_public_key.as_bytes(),
            self.server_public_key.as_bytes(),
        ])
    }

    /// SHA-256 of [`Self::encode`].
    ///
    /// # Errors
    /// [`FieldTooLong`].
    pub fn hash(&self, digests: &dyn Digests) -> Result<TranscriptHash, FieldTooLong> {
        Ok(TranscriptHash(digests.sha256(&[&self.encode()?])))
    }
}

/// SHA-256 of the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranscriptHash(pub [u8; DIGEST_LEN]);

/// What the key schedule yields: the session's directional keys and the one-time
/// confirmation key (zeroised on drop).
#[derive(Debug)]
pub struct Schedule {
    /// Client → server and server → client keys.
    pub keys: SessionKeys,
    /// HMAC key of the init response's `confirm`.
    pub confirm_key: Zeroizing<[u8; KEY_LEN]>,
}

/// `key_i = HKDF-SHA256(IKM = Z, salt = transcript hash, info = label_i, L = 32)` for
/// the request, response and confirmation labels.
///
/// # Errors
/// [`CryptoError`] from the backend.
pub fn key_schedule(
    hkdf: &dyn HkdfSha256,
    shared_secret: &SharedSecret,
    transcript: &TranscriptHash,
) -> Result<Schedule, CryptoError> {
    let derive = |info: &[u8]| -> Result<[u8; KEY_LEN], CryptoError> {
        let mut okm = [0u8; KEY_LEN];
        let result = hkdf.derive(&transcript.0, shared_secret.expose(), &[info], &mut okm);
        if result.is_err() {
            okm.zeroize();
        }
        result.map(|()| okm)
    };
    let mut request = derive(label::REQUEST_KEY)?;
    let mut response = derive(label::RESPONSE_KEY)?;
    let confirm_key = Zeroizing::new(derive(label::CONFIRM_KEY)?);
    let keys = SessionKeys::V2 {
        request: SessionKey::from_bytes(request),
        response: SessionKey::from_bytes(response),
    };
    request.zeroize();
    response.zeroize();
    Ok(Schedule { keys, confirm_key })
}

/// The confirmation MAC's input: label, transcript hash, and the session lifetime the
/// server granted (decimal), each length-prefixed.
pub fn confirm_input(transcript: &TranscriptHash, expires_in_sec: u64) -> Vec<u8> {
    let ttl = expires_in_sec.to_string();
    encode(&[label::CONFIRM, &transcript.0, ttl.as_bytes()]).unwrap_or_default()
}

/// `confirm = HMAC-SHA256(confirm key, confirm_input)`.
pub fn confirm_tag(
    digests: &dyn Digests,
    confirm_key: &[u8; KEY_LEN],
    transcript: &TranscriptHash,
    expires_in_sec: u64,
) -> [u8; DIGEST_LEN] {
    digests.hmac_sha256(confirm_key, &[&confirm_input(transcript, expires_in_sec)])
}

/// What the server signs: label and transcript hash, each length-prefixed.
pub fn signature_input(transcript: &TranscriptHash) -> Vec<u8> {
    encode(&[label::SIGNATURE, &transcript.0]).unwrap_or_default()
}

/// The server's signing key and its public id.
pub struct ServerIdentity {
    key: Box<dyn ports::SigningKey>,
    key_id: String,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A signing key's id: the first 8 bytes of SHA-256 of its SEC1 public key, in hex.
pub fn signing_key_id(digests: &dyn Digests, public_key: &P256PublicKey) -> String {
    let digest = digests.sha256(&[public_key.as_bytes()]);
    let mut id = String::with_capacity(16);
    crate::encoding::push_hex(&mut id, &digest[..8], false);
    id
}

impl ServerIdentity {
    /// The identity with private scalar `scalar`.
    ///
    /// # Errors
    /// [`CryptoError`] for a scalar that is not a valid P-256 private key.
    pub fn from_scalar(
        crypto: CryptoProvider,
        scalar: &[u8; KEY_LEN],
    ) -> Result<Self, CryptoError> {
        let key = crypto.ecdsa.signing_key(scalar)?;
        let key_id = signing_key_id(crypto.digests, &key.public_key());
        Ok(Self { key, key_id })
    }

    /// The key's id (published, and sent with every signature).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key.
    pub fn public_key(&self) -> P256PublicKey {
        self.key.public_key()
    }

    /// Signs the transcript.
    ///
    /// # Errors
    /// [`CryptoError`].
    pub fn sign(&self, transcript: &TranscriptHash) -> Result<[u8; SIGNATURE_LEN], CryptoError> {
        self.key.sign(&signature_input(transcript))
    }
}

/// The proof a v2 init response carries.
#[derive(Debug, Clone)]
pub struct V2Proof {
    /// `confirm`: HMAC-SHA256 under the confirmation key (docs/PROTOCOL.md).
    pub confirm: [u8; DIGEST_LEN],
    /// With a server signing key: its id and the signature over the transcript.
    pub signature: Option<(String, [u8; SIGNATURE_LEN])>,
}

/// The server side of a v2 init: the transcript hash, the directional keys, the
/// confirmation MAC and, with a server identity, the signature.
///
/// # Errors
/// [`CryptoError`] from the backend.
pub fn server_schedule(
    crypto: CryptoProvider,
    identity: Option<&ServerIdentity>,
    input: &TranscriptInput<'_>,
    shared: &SharedSecret,
    expires_in_sec: u64,
) -> Result<(SessionKeys, V2Proof), CryptoError> {
    let transcript = input.hash(crypto.digests).map_err(|_| CryptoError)?;
    let schedule = key_schedule(crypto.hkdf, shared, &transcript)?;
    let confirm = confirm_tag(
        crypto.digests,
        &schedule.confirm_key,
        &transcript,
        expires_in_sec,
    );
    let signature = match identity {
        Some(identity) => Some((identity.key_id().to_owned(), identity.sign(&transcript)?)),
        None => None,
    };
    Ok((schedule.keys, V2Proof { confirm, signature }))
}

/// The parts of a request that a v2 AAD binds besides the idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The HTTP method, as sent (`POST`).
    pub method: &'a str,
    /// The request target: the path and, if any, `?` and the query, exactly as in the
    /// request line.
    pub target: &'a str,
    /// `X-Inner-Content-Type` of the message the AAD belongs to, empty when absent.
    pub content_type: &'a str,
}

/// The fields common to both AADs.
#[derive(Debug, Clone, Copy)]
pub struct AadFields<'a> {
    /// Method, target, content type.
    pub line: RequestLine<'a>,
    /// `X-Kid` (`session:<id>`).
    pub kid: &'a str,
    /// `X-ClientId`.
    pub client_id: &'a str,
    /// The message's own timestamp text.
    pub timestamp: &'a str,
    /// The message's own nonce.
    pub nonce: &'a str,
}

impl AadFields<'_> {
    fn parts(&self) -> [&[u8]; 7] {
        [
            self.line.method.as_bytes(),
            self.line.target.as_bytes(),
            self.line.content_type.as_bytes(),
            self.kid.as_bytes(),
            self.client_id.as_bytes(),
            self.timestamp.as_bytes(),
            self.nonce.as_bytes(),
        ]
    }
}

/// The request AAD: label, method, target, content type, kid, client id, timestamp,
/// nonce.
///
/// # Errors
/// [`FieldTooLong`] (a target over 64 KiB).
pub fn request_aad(fields: &AadFields<'_>) -> Result<Aad, FieldTooLong> {
    let [m, t, c, k, id, ts, n] = fields.parts();
    encode(&[label::REQUEST_AAD, m, t, c, k, id, ts, n]).map(Aad::from_bytes)
}

/// [`request_aad`], followed — when the request carries an `Idempotency-Key` — by its
/// value as one more field (docs/PROTOCOL.md §15). Without the header the AAD is
/// exactly [`request_aad`], so clients that never send it are unaffected; with it, the
/// key cannot be added, removed or changed on the way.
///
/// # Errors
/// [`FieldTooLong`].
pub fn request_aad_keyed(
    fields: &AadFields<'_>,
    call_key: Option<&str>,
) -> Result<Aad, FieldTooLong> {
    let Some(call_key) = call_key else {
        return request_aad(fields);
    };
    let [m, t, c, k, id, ts, n] = fields.parts();
    encode(&[
        label::REQUEST_AAD,
        m,
        t,
        c,
        k,
        id,
        ts,
        n,
        call_key.as_bytes(),
    ])
    .map(Aad::from_bytes)
}

/// The response AAD: label, the request's method and target, the response's content
/// type, kid, client id, the response's timestamp and nonce, then the request's nonce
/// and the response status (three digits).
///
/// # Errors
/// [`FieldTooLong`]; also for a status outside 100–999 (not an HTTP status).
pub fn response_aad(
    fields: &AadFields<'_>,
    request_nonce: &str,
    status: u16,
) -> Result<Aad, FieldTooLong> {
    answer_aad(label::RESPONSE_AAD, fields, request_nonce, status)
}

/// The AAD of a sealed refusal (docs/PROTOCOL.md §9.1): the response AAD's fields under
/// its own label — the request's method, target and content type, kid, client id, the
/// refusal's timestamp and nonce, the request's nonce, the status — so a refusal can
/// never pass for an answer, nor an answer for a refusal.
///
/// # Errors
/// [`FieldTooLong`], or a status outside 100–999.
pub fn refusal_aad(
    fields: &AadFields<'_>,
    request_nonce: &str,
    status: u16,
) -> Result<Aad, FieldTooLong> {
    answer_aad(label::REFUSAL_AAD, fields, request_nonce, status)
}

fn answer_aad(
    first: &[u8],
    fields: &AadFields<'_>,
    request_nonce: &str,
    status: u16,
) -> Result<Aad, FieldTooLong> {
    let [m, t, c, k, id, ts, n] = fields.parts();
    // Three decimal digits, without a formatting allocation.
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    let status: &[u8] = if (100..1000).contains(&status) {
        &digits
    } else {
        return Err(FieldTooLong);
    };
    let fields = [
        first,
        m,
        t,
        c,
        k,
        id,
        ts,
        n,
        request_nonce.as_bytes(),
        status,
    ];
    encode(&fields).map(Aad::from_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed() {
        let mut out = Vec::new();
        push_field(&mut out, b"ab").unwrap();
        push_field(&mut out, b"").unwrap();
        assert_eq!(out, [0, 2, b'a', b'b', 0, 0]);
        assert_eq!(
            push_field(&mut out, &vec![0; 65_536]),
            Err(FieldTooLong),
            "no encoding for 64 KiB"
        );
        push_field(&mut Vec::new(), &vec![0; 65_535]).unwrap();
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_encoding() {
        // The ambiguity a separator-joined AAD has: "a|b" + "c" vs "a" + "b|c".
        assert_ne!(encode(&[b"ab", b"c"]), encode(&[b"a", b"bc"]));
        assert_ne!(encode(&[b"", b"x"]), encode(&[b"x", b""]));
    }
}
