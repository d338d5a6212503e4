//! # crypto-ring — the *ring* backend
//!
//! Driven adapter implementing the crypto ports with `ring` 0.17. Depends on `ports`,
//! `ring` and the shared `crypto-ring-like` source.

use ports::crypto::KEY_LEN;
use ports::{
    CryptoError, CryptoProvider, EphemeralKeyPair, KeyAgreement, P256PublicKey, SharedSecret,
};
use ring::agreement;

// The closure is expanded inside the generated module, where `signature` and `rand`
// are ring's.
crypto_ring_like::ring_like!(ring, |alg, private, public| {
    signature::EcdsaKeyPair::from_private_key_and_public_key(
        alg,
        private,
        public,
        &rand::SystemRandom::new(),
    )
});

/// The provider value for this backend.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    name: "ring",
    key_agreement: &Ecdh,
    hkdf: &ring_like::Hkdf,
    aead: &ring_like::Aead,
    random: &ring_like::Random,
    digests: &ring_like::Digests,
    ecdsa: &ring_like::Signatures,
};

/// P-256 ECDH with ring's ephemeral keys.
#[derive(Debug)]
pub struct Ecdh;

struct KeyPair {
    private: agreement::EphemeralPrivateKey,
    public: P256PublicKey,
}

fn key_pair(
    private: agreement::EphemeralPrivateKey,
) -> Result<Box<dyn EphemeralKeyPair>, CryptoError> {
    let public = private.compute_public_key().map_err(|_| CryptoError)?;
    let public = P256PublicKey(public.as_ref().try_into().map_err(|_| CryptoError)?);
    Ok(Box::new(KeyPair { private, public }))
}

impl KeyAgreement for Ecdh {
    fn generate(&self) -> Result<Box<dyn EphemeralKeyPair>, CryptoError> {
        let rng = ring::rand::SystemRandom::new();
        key_pair(
            agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
                .map_err(|_| CryptoError)?,
        )
    }

    fn import_private_scalar(
        &self,
        scalar: &[u8; KEY_LEN],
    ) -> Result<Box<dyn EphemeralKeyPair>, CryptoError> {
        // ring has no key import for agreement keys; its fixed-output RNG makes
        // `generate` take exactly these bytes as the scalar (and reject them when
        // they are zero or not below the group order).
        #[allow(deprecated)]
        let rng = ring::test::rand::FixedSliceRandom { bytes: scalar };
        key_pair(
            agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
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
        agreement::agree_ephemeral(self.private, &peer, |z| {
            <[u8; KEY_LEN]>::try_from(z).map(SharedSecret::from_bytes)
        })
        .map_err(|_| CryptoError)?
        .map_err(|_| CryptoError)
    }
}
