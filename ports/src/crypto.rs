//! Crypto capabilities. Every backend adapter exposes one ready-made [`CryptoProvider`].

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a SEC1 uncompressed P-256 point: `0x04 || X || Y`.
pub const P256_PUBLIC_KEY_LEN: usize = 65;
/// Length of an AES-256 key, of the ECDH shared secret, and of a P-256 scalar.
pub const KEY_LEN: usize = 32;
/// AES-GCM IV length used by the protocol (96 bits).
pub const IV_LEN: usize = 12;
/// AES-GCM tag length (128 bits).
pub const TAG_LEN: usize = 16;

/// Compares two equal-length secrets without a data-dependent early exit.
pub fn constant_time_eq<const N: usize>(a: &[u8; N], b: &[u8; N]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold back into a short-circuiting compare.
    std::hint::black_box(diff) == 0
}

/// One opaque error for every backend failure: no backend detail leaks upward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cryptographic operation failed")]
pub struct CryptoError;

/// A SEC1 uncompressed P-256 public key (65 bytes).
///
/// Constructing one does not validate the point: the domain validates peer keys
/// (`domain::p256`) before handing them to a backend.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct P256PublicKey(pub [u8; P256_PUBLIC_KEY_LEN]);

impl P256PublicKey {
    /// The 65 encoded bytes.
    pub fn as_bytes(&self) -> &[u8; P256_PUBLIC_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for P256PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P256PublicKey(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

macro_rules! secret_bytes {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; KEY_LEN]);

        impl $name {
            /// Wraps raw bytes (the caller's copy should be zeroised by the caller).
            pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                Self(bytes)
            }
            /// The secret bytes. Do not log or persist them unprotected.
            pub fn expose(&self) -> &[u8; KEY_LEN] {
                &self.0
            }

            /// Equality in constant time (no early exit on the first differing byte).
            pub fn ct_eq(&self, other: &Self) -> bool {
                constant_time_eq(&self.0, &other.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

secret_bytes!(
    /// The 32-byte AES-256-GCM session key (same key both directions).
    SessionKey
);
secret_bytes!(
    /// `Z`: the 32-byte big-endian X coordinate of the ECDH product.
    SharedSecret
);

/// An ephemeral P-256 key pair, used for exactly one agreement.
pub trait EphemeralKeyPair: Send {
    /// Our public key, SEC1 uncompressed.
    fn public_key(&self) -> P256PublicKey;
    /// ECDH with a peer key that the caller has already validated; consumes the
    /// private key, which the backend zeroises.
    ///
    /// # Errors
    /// [`CryptoError`] if the backend rejects the peer key or fails internally.
    fn agree(self: Box<Self>, peer: &P256PublicKey) -> Result<SharedSecret, CryptoError>;
}

/// P-256 key generation and agreement.
pub trait KeyAgreement: Send + Sync {
    /// A fresh key pair from the backend's CSPRNG.
    ///
    /// # Errors
    /// [`CryptoError`] on an internal backend failure.
    fn generate(&self) -> Result<Box<dyn EphemeralKeyPair>, CryptoError>;

    /// A key pair from a known private scalar (big-endian, 32 bytes). Used by
    /// known-answer tests and by clients that import keys; production servers only
    /// call [`KeyAgreement::generate`].
    ///
    /// # Errors
    /// [`CryptoError`] if the scalar is zero or not below the group order.
    fn import_private_scalar(
        &self,
        scalar: &[u8; KEY_LEN],
    ) -> Result<Box<dyn EphemeralKeyPair>, CryptoError>;
}

/// HKDF with SHA-256 (RFC 5869, extract then expand).
pub trait HkdfSha256: Send + Sync {
    /// Fills `out` (1..=8160 bytes) with `HKDF-Expand(HKDF-Extract(salt, ikm), info, out.len())`,
    /// where `info` is the concatenation of the given parts.
    ///
    /// # Errors
    /// [`CryptoError`] if `out` is empty or longer than 255 × 32 bytes.
    fn derive(
        &self,
        salt: &[u8],
        ikm: &[u8],
        info: &[&[u8]],
        out: &mut [u8],
    ) -> Result<(), CryptoError>;
}

/// An AES-256-GCM key with its key schedule computed, for several operations under one
/// session key (a purchase opens and seals with the same key).
pub trait AeadKey: Send + Sync {
    /// Encrypts `in_out` in place and appends the 16-byte tag.
    ///
    /// # Errors
    /// [`CryptoError`] on an internal backend failure.
    fn seal(&self, iv: &[u8; IV_LEN], aad: &[u8], in_out: &mut Vec<u8>) -> Result<(), CryptoError>;

    /// Decrypts `ciphertext || tag` in place; on success returns the plaintext length
    /// (the plaintext is `in_out[..len]`). On failure the buffer content is unspecified
    /// and MUST NOT be used.
    ///
    /// # Errors
    /// [`CryptoError`] if the tag does not verify (wrong key, IV, AAD or data) or
    /// `in_out` is shorter than a tag.
    fn open(&self, iv: &[u8; IV_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<usize, CryptoError>;
}

/// AES-256-GCM with a 96-bit IV and a 128-bit tag.
pub trait Aes256Gcm: Send + Sync {
    /// Computes the key schedule of `key`.
    ///
    /// # Errors
    /// [`CryptoError`] on an internal backend failure.
    fn prepare(&self, key: &SessionKey) -> Result<Box<dyn AeadKey>, CryptoError>;

    /// One-shot [`AeadKey::seal`].
    ///
    /// # Errors
    /// [`CryptoError`] on an internal backend failure.
    fn seal(
        &self,
        key: &SessionKey,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        in_out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        self.prepare(key)?.seal(iv, aad, in_out)
    }

    /// One-shot [`AeadKey::open`].
    ///
    /// # Errors
    /// [`CryptoError`] as [`AeadKey::open`].
    fn open(
        &self,
        key: &SessionKey,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<usize, CryptoError> {
        self.prepare(key)?.open(iv, aad, in_out)
    }
}

/// A cryptographically secure random number generator.
pub trait SecureRandom: Send + Sync {
    /// Fills `dest` with random bytes.
    ///
    /// # Errors
    /// [`CryptoError`] if the operating system's generator fails.
    fn fill(&self, dest: &mut [u8]) -> Result<(), CryptoError>;
}

/// Length of a SHA-256 digest and of an HMAC-SHA256 tag.
pub const DIGEST_LEN: usize = 32;
/// Length of a P-256 ECDSA signature in its fixed form (IEEE P1363: `r ‖ s`, 32 bytes
/// each, big-endian), the form WebCrypto produces and expects.
pub const SIGNATURE_LEN: usize = 64;

/// SHA-256 and HMAC-SHA256 (protocol v2's transcript hash and key confirmation).
pub trait Digests: Send + Sync {
    /// SHA-256 of the concatenation of `parts`.
    fn sha256(&self, parts: &[&[u8]]) -> [u8; DIGEST_LEN];

    /// HMAC-SHA256 (RFC 2104) under `key` of the concatenation of `parts`.
    fn hmac_sha256(&self, key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; DIGEST_LEN];

    /// Whether `tag` is the HMAC-SHA256 of `parts` under `key`, compared in constant time.
    fn hmac_sha256_verify(&self, key: &[u8; KEY_LEN], parts: &[&[u8]], tag: &[u8]) -> bool {
        let expected = self.hmac_sha256(key, parts);
        match <&[u8; DIGEST_LEN]>::try_from(tag) {
            Ok(tag) => constant_time_eq(&expected, tag),
            Err(_) => false,
        }
    }
}

/// A P-256 ECDSA signing key (the server's long-term identity in protocol v2).
pub trait SigningKey: Send + Sync {
    /// The public half, SEC1 uncompressed.
    fn public_key(&self) -> P256PublicKey;
    /// ECDSA-P256-SHA256 of `message` (hashed by the backend), in the fixed form.
    ///
    /// # Errors
    /// [`CryptoError`] on an internal backend failure.
    fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], CryptoError>;
}

/// P-256 ECDSA with SHA-256.
pub trait Ecdsa: Send + Sync {
    /// A signing key from its private scalar (big-endian, 32 bytes).
    ///
    /// # Errors
    /// [`CryptoError`] if the scalar is zero or not below the group order.
    fn signing_key(&self, scalar: &[u8; KEY_LEN]) -> Result<Box<dyn SigningKey>, CryptoError>;

    /// Whether `signature` (fixed form, 64 bytes; any other length fails) is a valid
    /// ECDSA-P256-SHA256 signature of `message` under `public_key`.
    fn verify(&self, public_key: &P256PublicKey, message: &[u8], signature: &[u8]) -> bool;
}

/// One backend: a name plus its capabilities, each a `'static` object so that a
/// provider is `Copy` and can be chosen at run time.
#[derive(Clone, Copy)]
pub struct CryptoProvider {
    /// Its `CRYPTO_BACKEND` name (the list of them is `crypto-backends`).
    pub name: &'static str,
    /// P-256 ECDH.
    pub key_agreement: &'static dyn KeyAgreement,
    /// HKDF-SHA256.
    pub hkdf: &'static dyn HkdfSha256,
    /// AES-256-GCM.
    pub aead: &'static dyn Aes256Gcm,
    /// CSPRNG.
    pub random: &'static dyn SecureRandom,
    /// SHA-256 and HMAC-SHA256.
    pub digests: &'static dyn Digests,
    /// P-256 ECDSA.
    pub ecdsa: &'static dyn Ecdsa,
}

impl fmt::Debug for CryptoProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoProvider")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_equality() {
        let a = SessionKey::from_bytes([1; KEY_LEN]);
        let mut other = [1; KEY_LEN];
        assert!(a.ct_eq(&SessionKey::from_bytes(other)));
        for i in [0, 17, KEY_LEN - 1] {
            other = [1; KEY_LEN];
            other[i] ^= 0x80;
            assert!(!a.ct_eq(&SessionKey::from_bytes(other)), "byte {i}");
        }
        assert!(
            SharedSecret::from_bytes([9; KEY_LEN]).ct_eq(&SharedSecret::from_bytes([9; KEY_LEN]))
        );
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", SessionKey::from_bytes([0xab; KEY_LEN])),
            "SessionKey([REDACTED])"
        );
        assert_eq!(
            format!("{:?}", SharedSecret::from_bytes([0xab; KEY_LEN])),
            "SharedSecret([REDACTED])"
        );
    }
}
