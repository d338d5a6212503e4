//! The server's signing keys during a rotation (docs/operations.md, "Rotating the
//! signing key"): the current key signs v2 init responses; a `next` key is published
//! ahead of the switch so that clients can pin it before it signs; a `previous` key is
//! published after the switch, until its optional not-after time, for clients that
//! still reach instances signing with it. Only the current key's private part is held.

use ports::{CryptoProvider, P256PublicKey};

use crate::v2::{ServerIdentity, signing_key_id};

/// What a published key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Signs this server's v2 init responses.
    Current,
    /// Will sign after the switch: pin it now.
    Next,
    /// Signed before the switch: other instances may still sign with it.
    Previous,
}

impl KeyStatus {
    /// The word the well-known document uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Next => "next",
            Self::Previous => "previous",
        }
    }
}

/// One key of the well-known document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    /// The key id (`signingKeyId` of the answers it signs).
    pub key_id: String,
    /// The SEC1 public key.
    pub public_key: P256PublicKey,
    /// Its role.
    pub status: KeyStatus,
    /// After this instant (Unix seconds) the key is no longer published nor to be
    /// trusted.
    pub not_after: Option<u64>,
}

/// Why a set of signing keys is inconsistent (the settings are named by the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeysError {
    /// A next or previous key without a current one: pinned clients would refuse the
    /// unsigned answers.
    #[error("a {0} signing key is set but no current one (SERVER_SIGNING_KEY)")]
    NoCurrent(&'static str),
    /// The same key twice.
    #[error("the {0} signing key is the current one (key id {1})")]
    SameAsCurrent(&'static str, String),
    /// The next and previous keys are the same.
    #[error("the next and previous signing keys are the same key (key id {0})")]
    NextIsPrevious(String),
}

/// The current identity and the keys published beside it.
#[derive(Debug, Default)]
pub struct SigningKeys {
    current: Option<ServerIdentity>,
    others: Vec<PublishedKey>,
}

impl SigningKeys {
    /// The set: `current` signs; `next` and `previous` (public keys) are published.
    ///
    /// # Errors
    /// [`SigningKeysError`] for a set clients could not follow.
    pub fn new(
        crypto: CryptoProvider,
        current: Option<ServerIdentity>,
        next: Option<P256PublicKey>,
        previous: Option<(P256PublicKey, Option<u64>)>,
    ) -> Result<Self, SigningKeysError> {
        let mut others = Vec::new();
        if let Some(public_key) = next {
            others.push(PublishedKey {
                key_id: signing_key_id(crypto.digests, &public_key),
                public_key,
                status: KeyStatus::Next,
                not_after: None,
            });
        }
        if let Some((public_key, not_after)) = previous {
            others.push(PublishedKey {
                key_id: signing_key_id(crypto.digests, &public_key),
                public_key,
                status: KeyStatus::Previous,
                not_after,
            });
        }
        let Some(identity) = &current else {
            return match others.first() {
                Some(other) => Err(SigningKeysError::NoCurrent(other.status.as_str())),
                None => Ok(Self::default()),
            };
        };
        for other in &others {
            if other.key_id == identity.key_id() {
                return Err(SigningKeysError::SameAsCurrent(
                    other.status.as_str(),
                    other.key_id.clone(),
                ));
            }
        }
        if let [a, b] = &others[..]
            && a.key_id == b.key_id
        {
            return Err(SigningKeysError::NextIsPrevious(a.key_id.clone()));
        }
        Ok(Self { current, others })
    }

    /// Only a current key (or none).
    pub fn single(current: Option<ServerIdentity>) -> Self {
        Self {
            current,
            others: Vec::new(),
        }
    }

    /// The key that signs, if any.
    pub fn current(&self) -> Option<&ServerIdentity> {
        self.current.as_ref()
    }

    /// Every configured key, the current one first, whatever its not-after time.
    pub fn all(&self) -> Vec<PublishedKey> {
        let current = self.current.iter().map(|id| PublishedKey {
            key_id: id.key_id().to_owned(),
            public_key: id.public_key(),
            status: KeyStatus::Current,
            not_after: None,
        });
        current.chain(self.others.iter().cloned()).collect()
    }

    /// The keys to publish at `now` (Unix seconds): [`Self::all`] without those past
    /// their not-after time.
    pub fn published(&self, now: u64) -> Vec<PublishedKey> {
        let mut keys = self.all();
        keys.retain(|k| k.not_after.is_none_or(|t| now < t));
        keys
    }

    /// How long (s) the document published at `now` stays right: `cap`, or less when a
    /// published key's not-after time comes sooner.
    pub fn fresh_for(&self, now: u64, cap: u64) -> u64 {
        self.published(now)
            .iter()
            .filter_map(|k| k.not_after)
            .map(|t| t - now)
            .fold(cap, u64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crypto() -> CryptoProvider {
        crypto_rustcrypto::PROVIDER
    }

    fn identity(byte: u8) -> ServerIdentity {
        ServerIdentity::from_scalar(crypto(), &[byte; 32]).unwrap()
    }

    #[test]
    fn the_current_key_comes_first_and_expired_previous_keys_drop_out() {
        let next = identity(2).public_key();
        let previous = identity(3).public_key();
        let keys = SigningKeys::new(
            crypto(),
            Some(identity(1)),
            Some(next),
            Some((previous, Some(1000))),
        )
        .unwrap();
        let statuses = |now| {
            keys.published(now)
                .iter()
                .map(|k| k.status)
                .collect::<Vec<_>>()
        };
        use KeyStatus::*;
        assert_eq!(statuses(999), [Current, Next, Previous]);
        assert_eq!(statuses(1000), [Current, Next], "not-after is exclusive");
        assert_eq!(keys.all().len(), 3);
        assert_eq!(keys.fresh_for(700, 300), 300);
        assert_eq!(keys.fresh_for(900, 300), 100, "the cache ends with the key");
        assert_eq!(keys.fresh_for(1000, 300), 300);
        assert_eq!(keys.published(0)[1].public_key, next);
    }

    #[test]
    fn sets_clients_could_not_follow_are_refused() {
        let one = || Some(identity(1));
        let same = identity(1).public_key();
        let other = identity(2).public_key();
        assert!(matches!(
            SigningKeys::new(crypto(), None, Some(other), None),
            Err(SigningKeysError::NoCurrent("next"))
        ));
        assert!(matches!(
            SigningKeys::new(crypto(), None, None, Some((other, None))),
            Err(SigningKeysError::NoCurrent("previous"))
        ));
        assert!(matches!(
            SigningKeys::new(crypto(), one(), Some(same), None),
            Err(SigningKeysError::SameAsCurrent("next", _))
        ));
        assert!(matches!(
            SigningKeys::new(crypto(), one(), None, Some((same, None))),
            Err(SigningKeysError::SameAsCurrent("previous", _))
        ));
        assert!(matches!(
            SigningKeys::new(crypto(), one(), Some(other), Some((other, None))),
            Err(SigningKeysError::NextIsPrevious(_))
        ));
        assert!(
            SigningKeys::new(crypto(), None, None, None)
                .unwrap()
                .all()
                .is_empty()
        );
    }
}
