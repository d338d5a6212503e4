//! Session keys at rest: wrapped with AES-256-GCM under a key-wrapping key (KEK), with
//! the session id in the AAD, so neither the database nor the cache ever holds a raw
//! session key and a wrapped key copied to another row does not unwrap.
//!
//! Wrapped form: `IV (12) ‖ ciphertext ‖ tag (16)`, stored with the KEK's id; the
//! ciphertext is the session key (32 bytes: 60 in all), or a v2 session's request and
//! response keys (64 bytes: 92 in all). Rotation: new keys use the current KEK; previous KEKs still unwrap.

use ports::crypto::{IV_LEN, KEY_LEN, TAG_LEN};
use ports::{
    CryptoError, CryptoProvider, Protocol, SessionKey, SessionKeys, SessionRecord, WrappedKeys,
};

use crate::encoding::push_hex;
use crate::envelope::{Aad, open_envelope, seal_envelope};

/// Length of a wrapped key.
pub const WRAPPED_KEY_LEN: usize = IV_LEN + KEY_LEN + TAG_LEN;

/// A key-wrapping key and its public id (a fingerprint, safe to store and log).
struct Kek {
    id: String,
    key: SessionKey,
}

/// Why a wrapped key could not be unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    /// No configured KEK has this id (a previous KEK was removed too early?).
    #[error("no configured key-wrapping key has id {0}")]
    UnknownKek(String),
    /// Authentication failed: wrong session id (a moved row), tampering, or corruption.
    #[error("wrapped session key failed authentication")]
    Authentication,
}

/// A wrapped session key and the id of the KEK that wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// KEK id.
    pub kek_id: String,
    /// `IV ‖ ciphertext ‖ tag`.
    pub bytes: Vec<u8>,
}

/// Wraps and unwraps session keys.
pub struct KeyWrapper {
    crypto: CryptoProvider,
    current: Kek,
    previous: Vec<Kek>,
}

impl std::fmt::Debug for KeyWrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyWrapper")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The wrapping AAD. Its third field was always `v1`; it is now the session's protocol
/// version, so v1 rows wrapped by earlier releases unwrap unchanged.
fn aad(session_id: &str, protocol: Protocol) -> Aad {
    let version = match protocol {
        Protocol::V1 => "v1",
        Protocol::V2 => "v2",
    };
    Aad::new("session-crypto", "kek", version, session_id)
}

impl KeyWrapper {
    /// `current` wraps new keys; `previous` only unwrap.
    ///
    /// # Errors
    /// [`CryptoError`] if the backend cannot fingerprint a key.
    pub fn new(
        crypto: CryptoProvider,
        current: [u8; KEY_LEN],
        previous: Vec<[u8; KEY_LEN]>,
    ) -> Result<Self, CryptoError> {
        let kek = |bytes: [u8; KEY_LEN]| -> Result<Kek, CryptoError> {
            let key = SessionKey::from_bytes(bytes);
            Ok(Kek {
                id: fingerprint(crypto, &key)?,
                key,
            })
        };
        Ok(Self {
            crypto,
            current: kek(current)?,
            previous: previous.into_iter().map(kek).collect::<Result<_, _>>()?,
        })
    }

    /// The id of the current KEK.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Wraps a session's keys for `session_id` under the current KEK. The protocol
    /// version is bound too: a v1 wrapped key read back as v2, or the reverse, does not
    /// unwrap.
    ///
    /// # Errors
    /// [`CryptoError`].
    pub fn wrap(&self, session_id: &str, keys: &SessionKeys) -> Result<WrappedKey, CryptoError> {
        let mut plain = Vec::with_capacity(2 * KEY_LEN + TAG_LEN);
        plain.extend_from_slice(keys.request().expose());
        if keys.protocol() == Protocol::V2 {
            plain.extend_from_slice(keys.response().expose());
        }
        let bytes = seal_envelope(
            self.crypto.aead,
            self.crypto.random,
            &self.current.key,
            &aad(session_id, keys.protocol()),
            plain,
        )?;
        Ok(WrappedKey {
            kek_id: self.current.id.clone(),
            bytes,
        })
    }

    /// The wrap of `record`'s keys: the one a store made before
    /// ([`SessionRecord::at_rest`]) when it is bound to this record's id and version
    /// under the current KEK, else a new one, which the record then remembers. An
    /// init's cache entry and its durable row thus share one wrap.
    ///
    /// # Errors
    /// [`CryptoError`].
    pub fn wrap_record(&self, record: &SessionRecord) -> Result<WrappedKey, CryptoError> {
        let protocol = record.keys.protocol();
        if let Some(w) = record.at_rest.get()
            && w.kek_id == self.current.id
            && w.session_id == record.id
            && w.protocol == protocol
        {
            return Ok(WrappedKey {
                kek_id: w.kek_id.clone(),
                bytes: w.bytes.clone(),
            });
        }
        let wrapped = self.wrap(&record.id, &record.keys)?;
        record.at_rest.remember(WrappedKeys {
            session_id: record.id.clone(),
            protocol,
            kek_id: wrapped.kek_id.clone(),
            bytes: wrapped.bytes.clone(),
        });
        Ok(wrapped)
    }

    /// Unwraps the keys stored for `session_id`, a session of version `protocol`.
    ///
    /// # Errors
    /// [`UnwrapError`].
    pub fn unwrap(
        &self,
        session_id: &str,
        kek_id: &str,
        protocol: Protocol,
        wrapped: &[u8],
    ) -> Result<SessionKeys, UnwrapError> {
        let kek = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == kek_id)
            .ok_or_else(|| UnwrapError::UnknownKek(kek_id.to_owned()))?;
        if wrapped.len() != wrapped_len(protocol) {
            return Err(UnwrapError::Authentication);
        }
        let mut buf = zeroize::Zeroizing::new(wrapped.to_vec());
        let plain = open_envelope(
            self.crypto.aead,
            &kek.key,
            &aad(session_id, protocol),
            &mut buf,
        )
        .map_err(|_| UnwrapError::Authentication)?;
        let key = |i: usize| -> Result<SessionKey, UnwrapError> {
            let bytes: [u8; KEY_LEN] = plain[i * KEY_LEN..(i + 1) * KEY_LEN]
                .try_into()
                .map_err(|_| UnwrapError::Authentication)?;
            Ok(SessionKey::from_bytes(bytes))
        };
        let keys = match protocol {
            Protocol::V1 => SessionKeys::V1(key(0)?),
            Protocol::V2 => SessionKeys::V2 {
                request: key(0)?,
                response: key(1)?,
            },
        };
        Ok(keys)
    }
}

/// Length of the wrapped keys of a session of version `protocol`.
pub fn wrapped_len(protocol: Protocol) -> usize {
    match protocol {
        Protocol::V1 => WRAPPED_KEY_LEN,
        Protocol::V2 => WRAPPED_KEY_LEN + KEY_LEN,
    }
}

/// 16 hex digits identifying a KEK without revealing it: HKDF-SHA256 of the key with a
/// fixed label.
fn fingerprint(crypto: CryptoProvider, key: &SessionKey) -> Result<String, CryptoError> {
    let mut out = [0u8; 8];
    crypto
        .hkdf
        .derive(b"session-crypto kek id", key.expose(), &[b"v1"], &mut out)?;
    let mut id = String::with_capacity(16);
    push_hex(&mut id, &out, false);
    Ok(id)
}
