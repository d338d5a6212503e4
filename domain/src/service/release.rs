//! Handing a session key to a trusted service on the internal network:
//! `GET /v1/session/{id}` (docs/PROTOCOL.md §8.5).

use ports::{Clock, Ports, SessionRecord, StoreError};

use super::{Lookup, SessionService};
use crate::headers::SessionId;

/// A released key.
#[derive(Debug)]
pub struct KeyRelease {
    /// The record (holds the key).
    pub record: SessionRecord,
}

/// Why a key release failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// `X-ClientId` missing.
    #[error("missing X-ClientId")]
    MissingClientId,
    /// Id not `^S-[0-9a-f]{32}$`.
    #[error("malformed session id")]
    MalformedId,
    /// No such session.
    #[error("session not found")]
    NotFound,
    /// Owned by another client (checked before expiry).
    #[error("client id does not own the session")]
    Forbidden,
    /// Past its expiry.
    #[error("session expired")]
    Expired,
    /// Store failure.
    #[error(transparent)]
    Store(StoreError),
}

impl<P: Ports> SessionService<P> {
    /// Releases the key of session `session_id` to its owner `client_id`.
    ///
    /// # Errors
    /// [`ReleaseError`].
    pub async fn release_key(
        &self,
        session_id: &str,
        client_id: Option<&str>,
    ) -> Result<KeyRelease, ReleaseError> {
        let client = client_id
            .filter(|c| !c.is_empty())
            .ok_or(ReleaseError::MissingClientId)?;
        let id = SessionId::parse(session_id).ok_or(ReleaseError::MalformedId)?;
        let now = self.ports.clock().now_ms();
        let record = match self
            .lookup(id.as_str(), now)
            .await
            .map_err(ReleaseError::Store)?
        {
            Lookup::Missing => return Err(ReleaseError::NotFound),
            Lookup::Found(r) | Lookup::Expired(r) => r,
        };
        if record.client_id != client {
            return Err(ReleaseError::Forbidden);
        }
        if record.is_expired(now) {
            return Err(ReleaseError::Expired);
        }
        Ok(KeyRelease { record })
    }
}
