//! # crypto-aws-lc-rs — the aws-lc-rs backend (the default)
//!
//! Driven adapter implementing the crypto ports with `aws-lc-rs`. Depends on `ports`
//! and `aws-lc-rs` (plus `crypto-ring-like`, the HKDF, AEAD and randomness source it
//! shares with the ring backend, whose API aws-lc-rs mirrors).

use aws_lc_rs::agreement;
use ports::crypto::KEY_LEN;
use ports::{
    CryptoError, CryptoProvider, EphemeralKeyPair, KeyAgreement, P256PublicKey, SharedSecret,
};

// Expanded inside the generated module, where `signature` is aws-lc-rs'.
crypto_ring_like::ring_like!(
    aws_lc_rs,
    signature::EcdsaKeyPair::from_private_key_and_public_key
);

/// The provider value for this backend.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    name: "aws-lc-rs",
    key_agreement: &Ecdh,
    hkdf: &ring_like::Hkdf,
    aead: &ring_like::Aead,
    random: &ring_like::Random,
    digests: &ring_like::Digests,
    ecdsa: &ring_like::Signatures,
};

/// P-256 ECDH with aws-lc-rs private keys.
#[derive(Debug)]
pub struct Ecdh;

struct KeyPair {
    private: agreement::PrivateKey,
    public: P256PublicKey,
}

fn key_pair(private: agreement::PrivateKey) -> Result<Box<dyn EphemeralKeyPair>, CryptoError> {
    let public = private.compute_public_key().map_err(|_| CryptoError)?;
    let public = P256PublicKey(public.as_ref().try_into().map_err(|_| CryptoError)?);
    Ok(Box::new(KeyPair { private, public }))
}

impl KeyAgreement for Ecdh {
    fn generate(&self) -> Result<Box<dyn EphemeralKeyPair>, CryptoError> {
        key_pair(agreement::PrivateKey::generate(&agreement::ECDH_P256).map_err(|_| CryptoError)?)
    }

    fn import_private_scalar(
        &self,
        scalar: &[u8; KEY_LEN],
    ) -> Result<Box<dyn EphemeralKeyPair>, CryptoError> {
        key_pair(
            agreement::PrivateKey::from_private_key(&agreement::ECDH_P256, scalar)
                .map_err(|_| CryptoError)?,
        )
    }
}

impl EphemeralKeyPair for KeyPair {
    fn public_key(&self) -> P256PublicKey {
        self.public
    }

    fn agree(self: Box<Self>, peer: &P256PublicKey) -> Result<SharedSecret, CryptoError> {
        let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, peer.as_bytes());
        agreement::agree(&self.private, peer, CryptoError, |z| {
            <[u8; KEY_LEN]>::try_from(z)
                .map(SharedSecret::from_bytes)
                .map_err(|_| CryptoError)
        })
    }
}
