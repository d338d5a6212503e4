//! The client side of the protocol (PROTOCOL.md §13), shared by the CLI client, the
//! load generator and the tests, on the same crypto providers as the server.

use ports::{CryptoProvider, EphemeralKeyPair, P256PublicKey, SessionKey};
use zeroize::Zeroizing;

use crate::encoding::uuid_v4;
use crate::envelope::{Aad, EnvelopeError, derive_session_key, open_envelope, seal_envelope};
use crate::headers::{ClientId, HeaderError, IdempotencyKey, KID_PREFIX, SessionId};
use crate::p256::{PublicKeyError, validate_public_key};
use crate::policy::ReplayPolicy;

/// Client-side failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Our own client id is not acceptable to the protocol.
    #[error("client id: {0}")]
    ClientId(HeaderError),
    /// The server's session id is malformed.
    #[error("server returned a malformed session id")]
    SessionId,
    /// The server's public key is invalid.
    #[error("server public key: {0}")]
    ServerKey(PublicKeyError),
    /// A response header is missing or malformed.
    #[error("response X-Idempotency-Key: {0}")]
    ResponseKey(HeaderError),
    /// The response timestamp is outside the window.
    #[error("response timestamp outside the window")]
    ResponseWindow,
    /// The response did not authenticate.
    #[error("response envelope: {0}")]
    Envelope(EnvelopeError),
    /// Backend failure.
    #[error("crypto backend failure")]
    Crypto,
}

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
            key,
        })
    }
}

/// An established session on the client side.
pub struct ClientSession {
    crypto: CryptoProvider,
    kid: String,
    client_id: String,
    key: SessionKey,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("client_id", &self.client_id)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct SealedRequest {
    /// `X-Idempotency-Key` (fresh for every request, including retries).
    pub idempotency_key: String,
    /// Body.
    pub envelope: Vec<u8>,
}

impl ClientSession {
    /// Builds a session from a known key (tests, key-release callers).
    pub fn from_key(
        crypto: CryptoProvider,
        session_id: &str,
        client_id: &str,
        key: SessionKey,
    ) -> Self {
        Self {
            crypto,
            kid: format!("{KID_PREFIX}{session_id}"),
            client_id: client_id.to_owned(),
            key,
        }
    }

    /// `X-Kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }
    /// `X-ClientId`.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
    /// The session key (tests compare it with the server's).
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// Step 6: a fresh `<now>.<uuid>` key, the AAD, a random IV, AES-256-GCM.
    ///
    /// # Errors
    /// [`ClientError::Crypto`].
    pub fn seal_request(
        &self,
        now_ms: u64,
        plaintext: &[u8],
    ) -> Result<SealedRequest, ClientError> {
        let mut r = [0u8; 16];
        self.crypto
            .random
            .fill(&mut r)
            .map_err(|_| ClientError::Crypto)?;
        let nonce = uuid_v4(r);
        let ts = now_ms.to_string();
        let aad = Aad::new(&ts, &nonce, &self.kid, &self.client_id);
        let envelope = seal_envelope(
            self.crypto.aead,
            self.crypto.random,
            &self.key,
            &aad,
            plaintext.to_vec(),
        )
        .map_err(|_| ClientError::Crypto)?;
        Ok(SealedRequest {
            idempotency_key: format!("{ts}.{nonce}"),
            envelope,
        })
    }

    /// Step 8, hardened as PROTOCOL.md §5.2 recommends: the AAD uses our **own** kid
    /// (a swapped `X-Kid` fails), and the response timestamp must be inside `window`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn open_response(
        &self,
        idempotency_key: &str,
        mut envelope: Vec<u8>,
        now_ms: u64,
        window: &ReplayPolicy,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let key = IdempotencyKey::parse(idempotency_key).map_err(ClientError::ResponseKey)?;
        if !window.in_window(key.timestamp_ms(), now_ms) {
            return Err(ClientError::ResponseWindow);
        }
        let aad = Aad::new(
            key.timestamp_text(),
            key.nonce(),
            &self.kid,
            &self.client_id,
        );
        let len = open_envelope(self.crypto.aead, &self.key, &aad, &mut envelope)
            .map_err(ClientError::Envelope)?
            .len();
        envelope.copy_within(12..12 + len, 0);
        envelope.truncate(len);
        Ok(Zeroizing::new(envelope))
    }
}
