//! The client side of the protocol (docs/PROTOCOL.md §12), shared by the CLI client, the
//! load generator and the tests, on the same crypto providers as the server.

use ports::{CryptoProvider, EphemeralKeyPair, P256PublicKey, Protocol, SessionKey, SessionKeys};
use zeroize::Zeroizing;

use crate::encoding::uuid_v4;
use crate::envelope::{Aad, EnvelopeError, derive_session_key, open_envelope, seal_envelope};
use crate::headers::{ClientId, HeaderError, IdempotencyKey, KID_PREFIX, SessionId};
use crate::p256::{PublicKeyError, validate_public_key};
use crate::policy::ReplayPolicy;
use crate::v2::{self, AadFields, RequestLine, TranscriptInput};

/// The request line [`ClientSession::seal_request`] assumes: the demo purchase.
pub const PURCHASE: RequestLine<'static> = RequestLine {
    method: "POST",
    target: "/transaction/purchase",
    content_type: "",
};

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
    /// The v2 init response's `confirm` is missing or wrong: the init response (or
    /// the request) was changed on the way, or the server derived other keys.
    #[error("key confirmation failed: the init exchange was tampered with")]
    Confirmation,
    /// A pinned server key was expected but the init response is unsigned, signed by
    /// another key, or the signature does not verify.
    #[error("server signature missing or invalid for the pinned server key")]
    Signature,
    /// A field too long for the v2 AAD.
    #[error("request target or content type longer than 65535 bytes")]
    TooLong,
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
            keys: SessionKeys::V1(key),
        })
    }

    /// Step 5 of a v2 session: validate the server's key, agree, run the key schedule
    /// and check `confirm` — and, with a pinned server key, the signature — before the
    /// session can be used.
    ///
    /// # Errors
    /// [`ClientError`]; [`ClientError::Confirmation`] and [`ClientError::Signature`]
    /// for a tampered init exchange.
    pub fn finish_v2(
        self,
        answer: &V2Answer<'_>,
        client_id: &str,
        pinned: Option<&P256PublicKey>,
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
        if let Some(pinned) = pinned {
            let signed = answer.signature.is_some_and(|sig| {
                self.crypto
                    .ecdsa
                    .verify(pinned, &v2::signature_input(&transcript), sig)
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

/// An established session on the client side.
pub struct ClientSession {
    crypto: CryptoProvider,
    kid: String,
    client_id: String,
    keys: SessionKeys,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("client_id", &self.client_id)
            .field("keys", &self.keys)
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
    /// The nonce in the idempotency key (a v2 response binds it).
    pub nonce: String,
    /// The method the request was sealed for.
    pub method: String,
    /// The request target it was sealed for.
    pub target: String,
}

/// What a client reads from a sealed response's head.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'a> {
    /// The HTTP status.
    pub status: u16,
    /// `X-Idempotency-Key`.
    pub idempotency_key: &'a str,
    /// `X-Inner-Content-Type`, empty when absent.
    pub content_type: &'a str,
}

impl ClientSession {
    /// Builds a v1 session from a known key (tests, key-release callers).
    pub fn from_key(
        crypto: CryptoProvider,
        session_id: &str,
        client_id: &str,
        key: SessionKey,
    ) -> Self {
        Self::from_keys(crypto, session_id, client_id, SessionKeys::V1(key))
    }

    /// Builds a session of either version from known keys.
    pub fn from_keys(
        crypto: CryptoProvider,
        session_id: &str,
        client_id: &str,
        keys: SessionKeys,
    ) -> Self {
        Self {
            crypto,
            kid: format!("{KID_PREFIX}{session_id}"),
            client_id: client_id.to_owned(),
            keys,
        }
    }

    /// The session's protocol version.
    pub fn protocol(&self) -> Protocol {
        self.keys.protocol()
    }

    /// `X-Kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }
    /// `X-ClientId`.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
    /// The session keys (tests compare them with the server's).
    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    /// The v1 session key, or a v2 session's request key.
    pub fn key(&self) -> &SessionKey {
        self.keys.request()
    }

    /// [`Self::seal`] for `POST /transaction/purchase` (the request line only matters
    /// to a v2 session).
    ///
    /// # Errors
    /// [`ClientError::Crypto`].
    pub fn seal_request(
        &self,
        now_ms: u64,
        plaintext: &[u8],
    ) -> Result<SealedRequest, ClientError> {
        self.seal(now_ms, PURCHASE, plaintext)
    }

    /// Step 6: a fresh `<now>.<uuid>` key, the AAD (v2: over `line` too), a random IV,
    /// AES-256-GCM under the request key.
    ///
    /// # Errors
    /// [`ClientError::Crypto`], [`ClientError::TooLong`].
    pub fn seal(
        &self,
        now_ms: u64,
        line: RequestLine<'_>,
        plaintext: &[u8],
    ) -> Result<SealedRequest, ClientError> {
        let mut r = [0u8; 16];
        self.crypto
            .random
            .fill(&mut r)
            .map_err(|_| ClientError::Crypto)?;
        let nonce = uuid_v4(r);
        let ts = now_ms.to_string();
        let aad = match self.keys.protocol() {
            Protocol::V1 => Aad::new(&ts, &nonce, &self.kid, &self.client_id),
            Protocol::V2 => v2::request_aad(&AadFields {
                line,
                kid: &self.kid,
                client_id: &self.client_id,
                timestamp: &ts,
                nonce: &nonce,
            })
            .map_err(|_| ClientError::TooLong)?,
        };
        let envelope = seal_envelope(
            self.crypto.aead,
            self.crypto.random,
            self.keys.request(),
            &aad,
            plaintext.to_vec(),
        )
        .map_err(|_| ClientError::Crypto)?;
        Ok(SealedRequest {
            idempotency_key: format!("{ts}.{nonce}"),
            envelope,
            nonce,
            method: line.method.to_owned(),
            target: line.target.to_owned(),
        })
    }

    /// Step 8, hardened as docs/PROTOCOL.md §8.2 recommends: the AAD uses our **own** kid
    /// (a swapped `X-Kid` fails), and the response timestamp must be inside `window`.
    ///
    /// # Errors
    /// [`ClientError`].
    /// A v2 session also binds the answer to `request` (its method, target and nonce)
    /// and to the response's status and content type, under the response key.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn open_response(
        &self,
        request: &SealedRequest,
        head: ResponseHead<'_>,
        mut envelope: Vec<u8>,
        now_ms: u64,
        window: &ReplayPolicy,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let key = IdempotencyKey::parse(head.idempotency_key).map_err(ClientError::ResponseKey)?;
        if !window.in_window(key.timestamp_ms(), now_ms) {
            return Err(ClientError::ResponseWindow);
        }
        let aad = match self.keys.protocol() {
            Protocol::V1 => Aad::new(
                key.timestamp_text(),
                key.nonce(),
                &self.kid,
                &self.client_id,
            ),
            Protocol::V2 => {
                let fields = AadFields {
                    line: RequestLine {
                        method: &request.method,
                        target: &request.target,
                        content_type: head.content_type,
                    },
                    kid: &self.kid,
                    client_id: &self.client_id,
                    timestamp: key.timestamp_text(),
                    nonce: key.nonce(),
                };
                v2::response_aad(&fields, &request.nonce, head.status)
                    .map_err(|_| ClientError::TooLong)?
            }
        };
        let len = open_envelope(self.crypto.aead, self.keys.response(), &aad, &mut envelope)
            .map_err(ClientError::Envelope)?
            .len();
        envelope.copy_within(12..12 + len, 0);
        envelope.truncate(len);
        Ok(Zeroizing::new(envelope))
    }
}
