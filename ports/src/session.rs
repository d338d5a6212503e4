//! A session as the stores keep it: its kind, protocol version, keys, the keys' wrap
//! and the record itself.

use std::fmt;

use crate::crypto::SessionKey;

/// How a session was created (identity labels, docs/PROTOCOL.md §6 / §14 V16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// No trusted upstream authentication.
    Anonymous,
    /// Created with an `Authorization` header while upstream auth is trusted.
    Authenticated,
}

impl SessionKind {
    /// The stored label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Authenticated => "authenticated",
        }
    }
}

/// The protocol version a session speaks (docs/PROTOCOL.md), fixed at its init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The reference protocol: one key for both directions, `|`-joined AAD.
    V1,
    /// Directional keys from a transcript-bound key schedule, length-prefixed AAD that
    /// binds method, path and (for a response) the request.
    V2,
}

impl Protocol {
    /// Every version this implementation speaks, oldest first.
    pub const ALL: [Self; 2] = [Self::V1, Self::V2];

    /// The numbers of [`Self::ALL`], as servers list them (`supported`, `protocols`).
    pub fn numbers() -> [u8; 2] {
        Self::ALL.map(Self::number)
    }

    /// The version number on the wire and in the stores.
    pub const fn number(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    /// The version with this number, if it is one this implementation speaks.
    pub fn from_number(n: u64) -> Option<Self> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }
}

/// A session's AES-256-GCM keys; the variant is the session's protocol version.
#[derive(Clone)]
pub enum SessionKeys {
    /// v1: the same key both ways.
    V1(SessionKey),
    /// v2: one key per direction.
    V2 {
        /// Client → server.
        request: SessionKey,
        /// Server → client.
        response: SessionKey,
    },
}

impl SessionKeys {
    /// The protocol version of the session.
    pub fn protocol(&self) -> Protocol {
        match self {
            Self::V1(_) => Protocol::V1,
            Self::V2 { .. } => Protocol::V2,
        }
    }
    /// The key requests are sealed under.
    pub fn request(&self) -> &SessionKey {
        match self {
            Self::V1(key) | Self::V2 { request: key, .. } => key,
        }
    }
    /// The key responses are sealed under.
    pub fn response(&self) -> &SessionKey {
        match self {
            Self::V1(key) | Self::V2 { response: key, .. } => key,
        }
    }
    /// Equality in constant time (same version and every key equal).
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.protocol() == other.protocol()
            && self.request().ct_eq(other.request())
            && self.response().ct_eq(other.response())
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKeys::{:?}([REDACTED])", self.protocol())
    }
}

/// A session's keys as stores keep them: wrapped under a key-encryption key (KEK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKeys {
    /// The session the wrap is bound to (its AAD).
    pub session_id: String,
    /// The protocol version the wrap is bound to.
    pub protocol: Protocol,
    /// The id of the KEK that wrapped them.
    pub kek_id: String,
    /// `IV ‖ ciphertext ‖ tag`.
    pub bytes: Vec<u8>,
}

/// The wrap of a [`SessionRecord`]'s keys, once a store has made one: the next store to
/// keep the record reuses it (an init's cache entry and its durable row share one wrap).
/// Empty in a new record; filled by the adapters, which reuse it only when it is bound
/// to the record's id and version under their current KEK.
#[derive(Debug, Clone, Default)]
pub struct AtRest(std::sync::OnceLock<WrappedKeys>);

impl AtRest {
    /// The wrap made before, if any.
    pub fn get(&self) -> Option<&WrappedKeys> {
        self.0.get()
    }
    /// Remembers a wrap (the first one stays).
    pub fn remember(&self, wrapped: WrappedKeys) {
        let _ = self.0.set(wrapped);
    }
}

/// A stored session. `Debug` redacts the keys and shortens the id.
#[derive(Clone)]
pub struct SessionRecord {
    /// `S-` + 32 lowercase hex digits.
    pub id: String,
    /// The AES-256-GCM keys, and with them the protocol version.
    pub keys: SessionKeys,
    /// Anonymous or authenticated.
    pub kind: SessionKind,
    /// The `X-ClientId` that created the session (owner).
    pub client_id: String,
    /// Creation time, epoch ms.
    pub created_at_ms: u64,
    /// Last instant (inclusive) at which the session is usable, epoch ms.
    pub expires_at_ms: u64,
    /// The keys' wrap, once a store has made one.
    pub at_rest: AtRest,
}

impl SessionRecord {
    /// Usable while `now ≤ expires_at` (docs/PROTOCOL.md §6).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms > self.expires_at_ms
    }
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id.get(..10).unwrap_or("?"))
            .field("keys", &self.keys)
            .field("kind", &self.kind)
            .field("client_id", &self.client_id)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}
