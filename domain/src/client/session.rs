//! An established session on the client's side: sealing requests and opening their
//! answers.

use ports::{CryptoProvider, Protocol, SessionKey, SessionKeys};
use zeroize::Zeroizing;

use crate::encoding::uuid_v4;
use crate::envelope::{Aad, open_envelope, seal_envelope};
use crate::headers::{IdempotencyKey, KID_PREFIX, RESPONSE_NONCE_PREFIX};
use crate::policy::ReplayPolicy;
use crate::v2::{self, AadFields, RequestLine};

use super::{ClientError, PURCHASE};

/// An established session on the client side.
pub struct ClientSession {
    pub(super) crypto: CryptoProvider,
    pub(super) kid: String,
    pub(super) client_id: String,
    pub(super) keys: SessionKeys,
    /// v1: accept answers whose nonce lacks the `rsp_` mark (the reference server's).
    pub(super) unmarked_v1_answers: bool,
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
    /// The `X-Inner-Content-Type` it was sealed with (empty: none).
    pub content_type: String,
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
            unmarked_v1_answers: false,
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
        self.seal_call(now_ms, line, None, plaintext)
    }

    /// [`Self::seal`] for a request that carries `Idempotency-Key: call_key` (the
    /// header's value, quoted): a v2 session binds it in the AAD.
    ///
    /// # Errors
    /// [`ClientError::Crypto`], [`ClientError::TooLong`].
    pub fn seal_call(
        &self,
        now_ms: u64,
        line: RequestLine<'_>,
        call_key: Option<&str>,
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
            Protocol::V2 => v2::request_aad_keyed(
                &AadFields {
                    line,
                    kid: &self.kid,
                    client_id: &self.client_id,
                    timestamp: &ts,
                    nonce: &nonce,
                },
                call_key,
            )
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
            content_type: line.content_type.to_owned(),
        })
    }

    /// v1 only: accepts answers whose nonce lacks the `rsp_` mark this server puts on
    /// every answer, for servers that do not mark them (the reference server). Opt in
    /// only for such a server: v1 seals both directions under one key, so without the
    /// mark a request sent back by anyone on the path opens as its own answer.
    pub fn accept_unmarked_v1_answers(&mut self) {
        self.unmarked_v1_answers = true;
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
            // The request's own nonce is never an answer's; the mark is required
            // unless this session opted out of it.
            Protocol::V1
                if key.nonce() == request.nonce
                    || (!self.unmarked_v1_answers
                        && !key.nonce().starts_with(RESPONSE_NONCE_PREFIX)) =>
            {
                return Err(ClientError::UnmarkedResponse);
            }
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

    /// Opens a sealed refusal (v2, docs/PROTOCOL.md §9.1) of `request`: the answer's
    /// `X-Kid` must be ours, its `X-Idempotency-Key` a server nonce; the envelope must
    /// open under the response key with the refusal AAD — bound to this request's
    /// nonce, so it was made after the request was sent, and no window applies. Returns
    /// what it says, with the server's time (ms) from its key.
    ///
    /// # Errors
    /// [`ClientError`] for anything that is not such a refusal.
    pub fn open_refusal(
        &self,
        request: &SealedRequest,
        status: u16,
        idempotency_key: &str,
        mut envelope: Vec<u8>,
    ) -> Result<Refusal, ClientError> {
        if self.keys.protocol() != Protocol::V2 {
            return Err(ClientError::UnmarkedResponse);
        }
        let key = IdempotencyKey::parse(idempotency_key).map_err(ClientError::ResponseKey)?;
        if !key.nonce().starts_with(RESPONSE_NONCE_PREFIX) {
            return Err(ClientError::UnmarkedResponse);
        }
        let aad = v2::refusal_aad(
            &AadFields {
                line: RequestLine {
                    method: &request.method,
                    target: &request.target,
                    content_type: &request.content_type,
                },
                kid: &self.kid,
                client_id: &self.client_id,
                timestamp: key.timestamp_text(),
                nonce: key.nonce(),
            },
            &request.nonce,
            status,
        )
        .map_err(|_| ClientError::TooLong)?;
        let plain = open_envelope(self.crypto.aead, self.keys.response(), &aad, &mut envelope)
            .map_err(ClientError::Envelope)?;
        let text = std::str::from_utf8(plain).map_err(|_| ClientError::RefusalFormat)?;
        let field = |name: &str| -> Option<String> {
            let start = text.find(&format!("\"{name}\":\""))? + name.len() + 4;
            let len = text[start..].find('"')?;
            Some(text[start..start + len].to_owned())
        };
        let code = field("error").ok_or(ClientError::RefusalFormat)?;
        let executed = match field("outcome").as_deref() {
            Some("not-executed") => Some(false),
            _ => None,
        };
        Ok(Refusal {
            status,
            code,
            executed,
            server_time_ms: key.timestamp_ms(),
        })
    }
}

/// A sealed refusal, opened (docs/PROTOCOL.md §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The error code (`CRYPTO_ERROR`, `SERVICE_UNAVAILABLE`, `BAD_GATEWAY`, …).
    pub code: String,
    /// `Some(false)`: the request did not run. `None`: it may have (a copy ran before,
    /// or a gateway lost the upstream's answer).
    pub executed: Option<bool>,
    /// The server's clock when it refused (ms since the epoch), authenticated.
    pub server_time_ms: u64,
}
