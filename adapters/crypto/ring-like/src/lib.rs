//! # crypto-ring-like — HKDF, AES-256-GCM and randomness for ring and aws-lc-rs
//!
//! aws-lc-rs mirrors ring's API for these primitives, so one source serves both C
//! backends (the quinn approach). It is a macro rather than generic code because the two
//! libraries' types are distinct: each backend crate expands it over its own library,
//!
//! ```ignore
//! crypto_ring_like::ring_like!(ring, |alg, private, public| {
//!     ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
//!         alg, private, public, &ring::rand::SystemRandom::new())
//! });
//! // defines `ring_like::{Hkdf, Aead, Random, Digests, Signatures}` implementing the
//! // crypto ports; the closure builds an ECDSA key pair (ring's takes a random source,
//! // aws-lc-rs' does not). The invoking module must define `Ecdh` (its key agreement).
//! ```
//!
//! The expansion uses `ports` and the named library; this crate itself depends on
//! nothing.

/// Defines `mod ring_like` with [`ports`]-implementing `Hkdf`, `Aead`, `Random`,
/// `Digests` and `Signatures` over `$backend` (`ring` or `aws_lc_rs`); `$key_pair`
/// builds an ECDSA key pair from the algorithm, the private scalar and the public key.
#[macro_export]
macro_rules! ring_like {
    ($backend:ident, $key_pair:expr) => {
        mod ring_like {
            use ::ports::crypto::{DIGEST_LEN, IV_LEN, KEY_LEN, SIGNATURE_LEN, TAG_LEN};
            use ::ports::{
                AeadKey, Aes256Gcm, CryptoError, Digests as DigestsPort, Ecdsa, HkdfSha256,
                KeyAgreement as _, P256PublicKey, SecureRandom, SessionKey, SigningKey,
            };

            use $backend::{aead, digest, hkdf, hmac, rand, signature};

            /// SHA-256 and HMAC-SHA256.
            #[derive(Debug)]
            pub(crate) struct Digests;

            impl DigestsPort for Digests {
                fn sha256(&self, parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
                    let mut ctx = digest::Context::new(&digest::SHA256);
                    for part in parts {
                        ctx.update(part);
                    }
                    let mut out = [0u8; DIGEST_LEN];
                    out.copy_from_slice(ctx.finish().as_ref());
                    out
                }

                fn hmac_sha256(&self, key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
                    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
                    let mut ctx = hmac::Context::with_key(&key);
                    for part in parts {
                        ctx.update(part);
                    }
                    let mut out = [0u8; DIGEST_LEN];
                    out.copy_from_slice(ctx.sign().as_ref());
                    out
                }
            }

            /// ECDSA-P256-SHA256, fixed-length (P1363) signatures.
            #[derive(Debug)]
            pub(crate) struct Signatures;

            struct Signer {
                key: signature::EcdsaKeyPair,
                public: P256PublicKey,
            }

            impl Ecdsa for Signatures {
                fn signing_key(
                    &self,
                    scalar: &[u8; KEY_LEN],
                ) -> Result<Box<dyn SigningKey>, CryptoError> {
                    let public = super::Ecdh.import_private_scalar(scalar)?.public_key();
                    let make = $key_pair;
                    let key = make(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        &scalar[..],
                        &public.as_bytes()[..],
                    )
                    .map_err(|_| CryptoError)?;
                    Ok(Box::new(Signer { key, public }))
                }

                fn verify(&self, public_key: &P256PublicKey, message: &[u8], sig: &[u8]) -> bool {
                    sig.len() == SIGNATURE_LEN
                        && signature::UnparsedPublicKey::new(
                            &signature::ECDSA_P256_SHA256_FIXED,
                            public_key.as_bytes(),
                        )
                        .verify(message, sig)
                        .is_ok()
                }
            }

            impl SigningKey for Signer {
                fn public_key(&self) -> P256PublicKey {
                    self.public
                }

                fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], CryptoError> {
                    // aws-lc-rs ignores the random source (it draws its own).
                    let sig = self
                        .key
                        .sign(&rand::SystemRandom::new(), message)
                        .map_err(|_| CryptoError)?;
                    sig.as_ref().try_into().map_err(|_| CryptoError)
                }
            }

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
