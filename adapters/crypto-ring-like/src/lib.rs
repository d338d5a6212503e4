//! # crypto-ring-like — HKDF, AES-256-GCM and randomness for ring and aws-lc-rs
//!
//! aws-lc-rs mirrors ring's API for these primitives, so one source serves both C
//! backends (the quinn approach). It is a macro rather than generic code because the two
//! libraries' types are distinct: each backend crate expands it over its own library,
//!
//! ```ignore
//! crypto_ring_like::ring_like!(ring);
//! // defines `ring_like::{Hkdf, Aead, Random}` implementing the crypto ports
//! ```
//!
//! The expansion uses `ports` and the named library; this crate itself depends on
//! nothing.

/// Defines `mod ring_like` with [`ports`]-implementing `Hkdf`, `Aead` and `Random`
/// over `$backend` (`ring` or `aws_lc_rs`).
#[macro_export]
macro_rules! ring_like {
    ($backend:ident) => {
        mod ring_like {
            use ::ports::crypto::{IV_LEN, TAG_LEN};
            use ::ports::{AeadKey, Aes256Gcm, CryptoError, HkdfSha256, SecureRandom, SessionKey};

            use $backend::{aead, hkdf, rand};

            /// HKDF-SHA256.
            #[derive(Debug)]
            pub(crate) struct Hkdf;

            struct Len(usize);

            impl hkdf::KeyType for Len {
                fn len(&self) -> usize {
                    self.0
                }
            }

            impl HkdfSha256 for Hkdf {
                fn derive(
                    &self,
                    salt: &[u8],
                    ikm: &[u8],
                    info: &[&[u8]],
                    out: &mut [u8],
                ) -> Result<(), CryptoError> {
                    if out.is_empty() {
                        return Err(CryptoError);
                    }
                    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
                        .extract(ikm)
                        .expand(info, Len(out.len()))
                        .and_then(|okm| okm.fill(out))
                        .map_err(|_| CryptoError)
                }
            }

            /// AES-256-GCM.
            #[derive(Debug)]
            pub(crate) struct Aead;

            struct PreparedKey(aead::LessSafeKey);

            impl Aes256Gcm for Aead {
                fn prepare(&self, key: &SessionKey) -> Result<Box<dyn AeadKey>, CryptoError> {
                    aead::UnboundKey::new(&aead::AES_256_GCM, key.expose())
                        .map(|k| {
                            Box::new(PreparedKey(aead::LessSafeKey::new(k))) as Box<dyn AeadKey>
                        })
                        .map_err(|_| CryptoError)
                }
            }

            impl AeadKey for PreparedKey {
                fn seal(
                    &self,
                    iv: &[u8; IV_LEN],
                    aad: &[u8],
                    in_out: &mut Vec<u8>,
                ) -> Result<(), CryptoError> {
                    self.0
                        .seal_in_place_append_tag(
                            aead::Nonce::assume_unique_for_key(*iv),
                            aead::Aad::from(aad),
                            in_out,
                        )
                        .map_err(|_| CryptoError)
                }

                fn open(
                    &self,
                    iv: &[u8; IV_LEN],
                    aad: &[u8],
                    in_out: &mut [u8],
                ) -> Result<usize, CryptoError> {
                    if in_out.len() < TAG_LEN {
                        return Err(CryptoError);
                    }
                    self.0
                        .open_in_place(
                            aead::Nonce::assume_unique_for_key(*iv),
                            aead::Aad::from(aad),
                            in_out,
                        )
                        .map(|plaintext| plaintext.len())
                        .map_err(|_| CryptoError)
                }
            }

            /// The operating system's CSPRNG as exposed by the library.
            #[derive(Debug)]
            pub(crate) struct Random;

            impl SecureRandom for Random {
                fn fill(&self, dest: &mut [u8]) -> Result<(), CryptoError> {
                    use rand::SecureRandom as _;
                    rand::SystemRandom::new()
                        .fill(dest)
                        .map_err(|_| CryptoError)
                }
            }
        }
    };
}
