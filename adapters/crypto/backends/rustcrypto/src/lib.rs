//! # crypto-rustcrypto — the pure-Rust RustCrypto backend
//!
//! Driven adapter implementing the crypto ports with `p256`, `aes-gcm`, `hkdf` and
//! `sha2`: no C code at all. Depends on `ports` and those crates only.

use aes_gcm::aead::{AeadInOut, KeyInit};
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
use ports::crypto::{DIGEST_LEN, IV_LEN, KEY_LEN, SIGNATURE_LEN, TAG_LEN};
use ports::{
    AeadKey, Aes256Gcm, CryptoError, CryptoProvider, Digests, Ecdsa, EphemeralKeyPair, HkdfSha256,
    KeyAgreement, P256PublicKey, SecureRandom, SessionKey, SharedSecret, SigningKey,
};
use zeroize::Zeroize;

/// The provider value for this backend.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    name: "rustcrypto",
    key_agreement: &Ecdh,
    hkdf: &Hkdf,
    aead: &Aead,
    random: &Random,
    digests: &Sha,
    ecdsa: &Signatures,
};

/// P-256 ECDH with `p256`.
#[derive(Debug)]
pub struct Ecdh;

struct KeyPair {
    secret: p256::SecretKey,
    public: P256PublicKey,
}

fn key_pair(secret: p256::SecretKey) -> Result<Box<dyn EphemeralKeyPair>, CryptoError> {
    let point = secret.public_key().to_sec1_point(false);
    let public = P256PublicKey(point.as_bytes().try_into().map_err(|_| CryptoError)?);
    Ok(Box::new(KeyPair { secret, public }))
}

impl KeyAgreement for Ecdh {
    fn generate(&self) -> Result<Box<dyn EphemeralKeyPair>, CryptoError> {
        key_pair(p256::SecretKey::try_generate().map_err(|_| CryptoError)?)
    }

    fn import_private_scalar(
        &self,
        scalar: &[u8; KEY_LEN],
    ) -> Result<Box<dyn EphemeralKeyPair>, CryptoError> {
        key_pair(p256::SecretKey::from_slice(scalar).map_err(|_| CryptoError)?)
    }
}

impl EphemeralKeyPair for KeyPair {
    fn public_key(&self) -> P256PublicKey {
        self.public
    }

    fn agree(self: Box<Self>, peer: &P256PublicKey) -> Result<SharedSecret, CryptoError> {
        // Full SEC1 validation (on curve, not identity) happens here too.
        let peer = p256::PublicKey::from_sec1_bytes(peer.as_bytes()).map_err(|_| CryptoError)?;
        let shared = self.secret.diffie_hellman(&peer);
        let z: [u8; KEY_LEN] = shared
            .raw_secret_bytes()
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError)?;
        Ok(SharedSecret::from_bytes(z))
    }
}

/// HKDF-SHA256 with `hkdf` + `sha2`.
#[derive(Debug)]
pub struct Hkdf;

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
        hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm)
            .expand_multi_info(info, out)
            .map_err(|_| CryptoError)
    }
}

/// AES-256-GCM with `aes-gcm`.
#[derive(Debug)]
pub struct Aead;

struct PreparedKey(aes_gcm::Aes256Gcm);

impl Aes256Gcm for Aead {
    fn prepare(&self, key: &SessionKey) -> Result<Box<dyn AeadKey>, CryptoError> {
        aes_gcm::Aes256Gcm::new_from_slice(key.expose())
            .map(|c| Box::new(PreparedKey(c)) as Box<dyn AeadKey>)
            .map_err(|_| CryptoError)
    }
}

impl AeadKey for PreparedKey {
    fn seal(&self, iv: &[u8; IV_LEN], aad: &[u8], in_out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let nonce = aes_gcm::Nonce::from(*iv);
        let tag = self
            .0
            .encrypt_inout_detached(&nonce, aad, in_out.as_mut_slice().into())
            .map_err(|_| CryptoError)?;
        in_out.extend_from_slice(tag.as_slice());
        Ok(())
    }

    fn open(&self, iv: &[u8; IV_LEN], aad: &[u8], in_out: &mut [u8]) -> Result<usize, CryptoError> {
        let Some(len) = in_out.len().checked_sub(TAG_LEN) else {
            return Err(CryptoError);
        };
        let (data, tag) = in_out.split_at_mut(len);
        let tag = aes_gcm::Tag::try_from(&*tag).map_err(|_| CryptoError)?;
        let nonce = aes_gcm::Nonce::from(*iv);
        match self
            .0
            .decrypt_inout_detached(&nonce, aad, data.into(), &tag)
        {
            Ok(()) => Ok(len),
            Err(_) => {
                data.zeroize();
                Err(CryptoError)
            }
        }
    }
}

/// The operating system's CSPRNG via `getrandom`.
#[derive(Debug)]
pub struct Random;

impl SecureRandom for Random {
    fn fill(&self, dest: &mut [u8]) -> Result<(), CryptoError> {
        getrandom::fill(dest).map_err(|_| CryptoError)
    }
}

/// SHA-256 and HMAC-SHA256 with `sha2` and `hmac`.
#[derive(Debug)]
pub struct Sha;

impl Digests for Sha {
    fn sha256(&self, parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for part in parts {
            h.update(part);
        }
        h.finalize().into()
    }

    fn hmac_sha256(&self, key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// P-256 ECDSA with `p256` (deterministic nonces, RFC 6979).
#[derive(Debug)]
pub struct Signatures;

struct Signer {
    key: p256::ecdsa::SigningKey,
    public: P256PublicKey,
}

impl Ecdsa for Signatures {
    fn signing_key(&self, scalar: &[u8; KEY_LEN]) -> Result<Box<dyn SigningKey>, CryptoError> {
        let key = p256::ecdsa::SigningKey::from_slice(scalar).map_err(|_| CryptoError)?;
        let point = key.verifying_key().to_sec1_point(false);
        let public = P256PublicKey(point.as_bytes().try_into().map_err(|_| CryptoError)?);
        Ok(Box::new(Signer { key, public }))
    }

    fn verify(&self, public_key: &P256PublicKey, message: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        if signature.len() != SIGNATURE_LEN {
            return false;
        }
        let (Ok(key), Ok(sig)) = (
            p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key.as_bytes()),
            p256::ecdsa::Signature::from_slice(signature),
        ) else {
            return false;
        };
        key.verify(message, &sig).is_ok()
    }
}

impl SigningKey for Signer {
    fn public_key(&self) -> P256PublicKey {
        self.public
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], CryptoError> {
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = self.key.try_sign(message).map_err(|_| CryptoError)?;
        sig.to_bytes()
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError)
    }
}
