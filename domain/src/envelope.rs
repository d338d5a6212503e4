//! Key derivation (§3.2), AAD (§3.4) and the binary envelope (§3.3).

use ports::crypto::{IV_LEN, KEY_LEN, TAG_LEN};
use ports::{AeadKey, Aes256Gcm, CryptoError, HkdfSha256, SecureRandom, SessionKey, SharedSecret};
use zeroize::Zeroize;

/// Shortest valid envelope: IV + tag around an empty plaintext.
pub const MIN_ENVELOPE_LEN: usize = IV_LEN + TAG_LEN;
/// The fixed HKDF info prefix; the client id follows it verbatim.
pub const HKDF_INFO_PREFIX: &[u8] = b"SESSION|A256GCM|";

/// Session key = HKDF-SHA256(IKM = Z, salt = sessionId bytes, info = prefix ‖ clientId, L = 32).
///
/// # Errors
/// [`CryptoError`] from the backend.
pub fn derive_session_key(
    hkdf: &dyn HkdfSha256,
    shared_secret: &SharedSecret,
    session_id: &str,
    client_id: &str,
) -> Result<SessionKey, CryptoError> {
    let mut okm = [0u8; KEY_LEN];
    let result = hkdf.derive(
        session_id.as_bytes(),
        shared_secret.expose(),
        &[HKDF_INFO_PREFIX, client_id.as_bytes()],
        &mut okm,
    );
    let key = result.map(|()| SessionKey::from_bytes(okm));
    okm.zeroize();
    key
}

/// Additional authenticated data: `<timestamp>|<nonce>|<kid>|<clientId>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad(Vec<u8>);

impl Aad {
    /// Joins the four fields with `|`, byte for byte as given.
    pub fn new(timestamp: &str, nonce: &str, kid: &str, client_id: &str) -> Self {
        let mut v =
            Vec::with_capacity(timestamp.len() + nonce.len() + kid.len() + client_id.len() + 3);
        for (i, part) in [timestamp, nonce, kid, client_id].into_iter().enumerate() {
            if i > 0 {
                v.push(b'|');
            }
            v.extend_from_slice(part.as_bytes());
        }
        Self(v)
    }

    /// AAD built elsewhere (the v2 encodings of [`crate::v2`]).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Why an envelope did not open. Kept coarse: the wire only ever says `CRYPTO_ERROR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Fewer than 28 bytes.
    #[error("envelope shorter than 28 bytes")]
    TooShort,
    /// Authentication failed (wrong key, IV, AAD, ciphertext or tag).
    #[error("envelope failed authentication")]
    Authentication,
}

/// Opens `IV ‖ ciphertext ‖ tag` in place and returns the plaintext, a sub-slice of
/// `body`. On failure nothing decrypted is left readable.
///
/// # Errors
/// [`EnvelopeError`].
pub fn open_envelope<'b>(
    aead: &dyn Aes256Gcm,
    key: &SessionKey,
    aad: &Aad,
    body: &'b mut [u8],
) -> Result<&'b mut [u8], EnvelopeError> {
    if body.len() < MIN_ENVELOPE_LEN {
        return Err(EnvelopeError::TooShort);
    }
    let key = aead
        .prepare(key)
        .map_err(|_| EnvelopeError::Authentication)?;
    open_envelope_with(&*key, aad, body)
}

/// [`open_envelope`] with a prepared key.
///
/// # Errors
/// [`EnvelopeError`].
pub fn open_envelope_with<'b>(
    key: &dyn AeadKey,
    aad: &Aad,
    body: &'b mut [u8],
) -> Result<&'b mut [u8], EnvelopeError> {
    if body.len() < MIN_ENVELOPE_LEN {
        return Err(EnvelopeError::TooShort);
    }
    let (iv, rest) = body.split_at_mut(IV_LEN);
    let iv: [u8; IV_LEN] = (&*iv).try_into().map_err(|_| EnvelopeError::TooShort)?;
    match key.open(&iv, aad.as_bytes(), rest) {
        Ok(len) => Ok(&mut rest[..len]),
        Err(CryptoError) => {
            rest.zeroize();
            Err(EnvelopeError::Authentication)
        }
    }
}

/// Seals `plaintext` under a fresh random IV and returns `IV ‖ ciphertext ‖ tag`.
/// The plaintext buffer is consumed (it becomes the ciphertext).
///
/// # Errors
/// [`CryptoError`] from the RNG or the AEAD.
pub fn seal_envelope(
    aead: &dyn Aes256Gcm,
    random: &dyn SecureRandom,
    key: &SessionKey,
    aad: &Aad,
    plaintext: Vec<u8>,
) -> Result<Vec<u8>, CryptoError> {
    let mut iv = [0u8; IV_LEN];
    random.fill(&mut iv)?;
    seal_envelope_with_iv(aead, key, &iv, aad, plaintext)
}

/// [`seal_envelope`] with a caller-chosen IV: a fresh random IV drawn together with other
/// randomness, or a known-answer test. An IV must never repeat under one key.
///
/// # Errors
/// [`CryptoError`] from the AEAD.
pub fn seal_envelope_with_iv(
    aead: &dyn Aes256Gcm,
    key: &SessionKey,
    iv: &[u8; IV_LEN],
    aad: &Aad,
    plaintext: Vec<u8>,
) -> Result<Vec<u8>, CryptoError> {
    seal_envelope_with(&*aead.prepare(key)?, iv, aad, plaintext)
}

/// [`seal_envelope_with_iv`] with a prepared key.
///
/// # Errors
/// [`CryptoError`] from the AEAD.
pub fn seal_envelope_with(
    key: &dyn AeadKey,
    iv: &[u8; IV_LEN],
    aad: &Aad,
    plaintext: Vec<u8>,
) -> Result<Vec<u8>, CryptoError> {
    let mut body = plaintext;
    if let Err(e) = key.seal(iv, aad.as_bytes(), &mut body) {
        body.zeroize();
        return Err(e);
    }
    let mut envelope = Vec::with_capacity(IV_LEN + body.len());
    envelope.extend_from_slice(iv);
    envelope.extend_from_slice(&body);
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_matches_the_vector() {
        let aad = Aad::new(
            "1706700000000",
            "123e4567-e89b-42d3-a456-426614174000",
            "session:S-000102030405060708090a0b0c0d0e0f",
            "NODE_CLIENT",
        );
        assert_eq!(
            aad.as_bytes(),
            b"1706700000000|123e4567-e89b-42d3-a456-426614174000|session:S-000102030405060708090a0b0c0d0e0f|NODE_CLIENT"
        );
    }
}
