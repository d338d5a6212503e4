//! Setting a session up from the client's side: the ephemeral key pair, the init
//! request's fields, and the checks of the init answer (v1; v2 with key confirmation and
//! the server's signature).

use ports::{CryptoProvider, EphemeralKeyPair, P256PublicKey, SessionKeys};

use crate::envelope::derive_session_key;
use crate::headers::{ClientId, KID_PREFIX, SessionId};
use crate::p256::validate_public_key;
use crate::v2::{self, TranscriptInput};

use super::{ClientError, ClientSession};

/// Step 1 of a session: an ephemeral key pair whose public half goes to `/session/init`.
pub struct Handshake {
    crypto: CryptoProvider,
    key_pair: Box<dyn EphemeralKeyPair>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("public_key", &self.key_pair.public_key())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Generates a fresh key pair.
    ///
    /// # Errors
    /// [`ClientError::Crypto`].
    pub fn start(crypto: CryptoProvider) -> Result<Self, ClientError> {
        let key_pair = crypto
            .key_agreement
            .generate()
            .map_err(|_| ClientError::Crypto)?;
        Ok(Self { crypto, key_pair })
    }

    /// From a known private scalar (known-answer tests).
    ///
    /// # Errors
    /// [`ClientError::Crypto`] for an invalid scalar.
    pub fn from_private_scalar(
        crypto: CryptoProvider,
        scalar: &[u8; 32],
    ) -> Result<Self, ClientError> {
        let key_pair = crypto
            .key_agreement
            .import_private_scalar(scalar)
            .map_err(|_| ClientError::Crypto)?;
        Ok(Self { crypto, key_pair })
    }

    /// Our public key, to be sent base64-encoded as `clientPublicKey`.
    pub fn public_key(&self) -> P256PublicKey {
        self.key_pair.public_key()
    }

    /// Step 5: validate the server's key, agree, derive the session key.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn finish(
        self,
        session_id: &str,
        server_public_key: &[u8],
        client_id: &str,
    ) -> Result<ClientSession, ClientError> {
        ClientId::parse(client_id).map_err(ClientError::ClientId)?;
        let id = SessionId::parse(session_id).ok_or(ClientError::SessionId)?;
        let peer = validate_public_key(server_public_key).map_err(ClientError::ServerKey)?;
        let shared = self
            .key_pair
            .agree(&peer)
            .map_err(|_| ClientError::Crypto)?;
        let key = derive_session_key(self.crypto.hkdf, &shared, id.as_str(), client_id)
            .map_err(|_| ClientError::Crypto)?;
        Ok(ClientSession {
            crypto: self.crypto,
            kid: format!("{KID_PREFIX}{}", id.as_str()),
            client_id: client_id.to_owned(),
            keys: SessionKeys::V1(key),
            unmarked_v1_answers: false,
        })
    }

    /// Step 5 of a v2 session: validate the server's key, agree, run the key schedule
    /// and check `confirm` — and, with pinned server keys, the signature: it must verify
    /// under one of them (several during a key rotation) — before the session can be
    /// used.
    ///
    /// # Errors
    /// [`ClientError`]; [`ClientError::Confirmation`] and [`ClientError::Signature`]
    /// for a tampered init exchange.
    pub fn finish_v2(
        self,
        answer: &V2Answer<'_>,
        client_id: &str,
        pinned: &[P256PublicKey],
    ) -> Result<ClientSession, ClientError> {
        ClientId::parse(client_id).map_err(ClientError::ClientId)?;
        let id = SessionId::parse(answer.session_id).ok_or(ClientError::SessionId)?;
        let peer = validate_public_key(answer.server_public_key).map_err(ClientError::ServerKey)?;
        let client_public_key = self.key_pair.public_key();
        let transcript = TranscriptInput {
            client_id,
            session_id: id.as_str(),
            client_public_key: &client_public_key,
            server_public_key: &peer,
        }
        .hash(self.crypto.digests)
        .map_err(|_| ClientError::TooLong)?;
        if !pinned.is_empty() {
            let input = v2::signature_input(&transcript);
            let signed = answer.signature.is_some_and(|sig| {
                pinned
                    .iter()
                    .any(|key| self.crypto.ecdsa.verify(key, &input, sig))
            });
            if !signed {
                return Err(ClientError::Signature);
            }
        }
        let shared = self
            .key_pair
            .agree(&peer)
            .map_err(|_| ClientError::Crypto)?;
        let schedule = v2::key_schedule(self.crypto.hkdf, &shared, &transcript)
            .map_err(|_| ClientError::Crypto)?;
        let input = v2::confirm_input(&transcript, answer.expires_in_sec);
        if !self
            .crypto
            .digests
            .hmac_sha256_verify(&schedule.confirm_key, &[&input], answer.confirm)
        {
            return Err(ClientError::Confirmation);
        }
        Ok(ClientSession {
            crypto: self.crypto,
            kid: format!("{KID_PREFIX}{}", id.as_str()),
            client_id: client_id.to_owned(),
            keys: schedule.keys,
            unmarked_v1_answers: false,
        })
    }
}

/// The fields of a v2 init response the client checks (binary fields decoded).
#[derive(Debug, Clone, Copy)]
pub struct V2Answer<'a> {
    /// `sessionId`.
    pub session_id: &'a str,
    /// `serverPublicKey`, decoded.
    pub server_public_key: &'a [u8],
    /// `expiresInSec`.
    pub expires_in_sec: u64,
    /// `confirm`, decoded.
    pub confirm: &'a [u8],
    /// `signature`, decoded, if present.
    pub signature: Option<&'a [u8]>,
}

impl<'a> V2Answer<'a> {
    /// The answer an in-process server gave (benches, tests): `None` for a v1 init.
    pub fn from_outcome(out: &'a crate::InitOutcome) -> Option<Self> {
        let proof = out.proof.as_ref()?;
        Some(Self {
            session_id: out.session_id.as_str(),
            server_public_key: &out.server_public_key.0,
            expires_in_sec: out.expires_in_sec,
            confirm: &proof.confirm,
            signature: proof.signature.as_ref().map(|(_, s)| &s[..]),
        })
    }
}
