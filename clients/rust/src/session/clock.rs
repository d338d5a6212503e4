//! The session's clock: corrected from authenticated server times (sealed refusals, v2
//! answers) for every call; before one is known, from an unsealed refusal's `Date` for
//! inits and idempotent calls only, which are then sent once more (docs/PROTOCOL.md,
//! the clients' READMEs).

use std::sync::atomic::Ordering;

use domain::client::ClientSession;

use super::Session;
use crate::protocol::SKEW_FIX_MS;
use crate::{Error, FlowError, InitRoute, ProtocolClient};

impl Session {
    /// The clock correction in use (server − this machine, ms): learned from
    /// authenticated server times (sealed refusals, v2 answers); before one is known,
    /// the one taken from an unsealed refusal's `Date` for inits and idempotent calls.
    pub fn clock_offset_ms(&self) -> i64 {
        self.stamp_offset(true)
    }

    /// Sets the clock correction, as if learned from an authenticated server time
    /// (tests; the library learns it by itself).
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.inner
            .clock_offset_ms
            .store(offset_ms, Ordering::Relaxed);
        self.inner.auth_clock.store(true, Ordering::Relaxed);
    }

    /// The offset that stamps a request: the authenticated one once known; before, the
    /// `Date` one for what may safely be sent twice (`corrected`) only.
    pub(super) fn stamp_offset(&self, corrected: bool) -> i64 {
        if self.inner.auth_clock.load(Ordering::Relaxed) {
            self.inner.clock_offset_ms.load(Ordering::Relaxed)
        } else if corrected {
            self.inner.date_offset_ms.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    pub(super) fn learn_time(&self, server_ms: u64) -> bool {
        let mut offset = self.inner.clock_offset_ms.load(Ordering::Relaxed);
        let changed = crate::protocol::learn_offset(&mut offset, server_ms);
        if changed {
            self.set_clock_offset_ms(offset);
        }
        changed
    }
}

/// A refusal the answer's `Date` explains (400 `CRYPTO_ERROR` with the server's clock
/// more than 30 s from the one that stamped the request, this machine's + `lent_ms`)
/// as [`Error::ClockSkew`]; any other error as it is.
pub(super) fn skew_or_error(e: FlowError, lent_ms: i64) -> Error {
    let skew = match &e {
        FlowError::Status {
            date_skew_ms: Some(raw),
            ..
        } => Some(raw - lent_ms),
        _ => None,
    };
    match (Error::from(e), skew) {
        (
            Error::Refused {
                status: 400, code, ..
            },
            Some(skew_ms),
        ) if code == "CRYPTO_ERROR" && skew_ms.unsigned_abs() > SKEW_FIX_MS => Error::ClockSkew {
            skew_ms,
            status: 400,
            code,
        },
        (error, _) => error,
    }
}

/// An init, sent once more with the clock an unsealed refusal's `Date` gives when it
/// was refused while the clocks disagree (an init may run twice: it only sets up a
/// session); `offset_ms` is the stamping offset, updated when corrected.
pub(super) async fn init_correcting(
    client: &mut ProtocolClient,
    route: InitRoute,
    ttl_sec: Option<u64>,
    offset_ms: &mut i64,
) -> Result<ClientSession, Error> {
    client.set_clock_offset_ms(*offset_ms);
    let lent = *offset_ms;
    match client
        .init(route, ttl_sec)
        .await
        .map_err(|e| skew_or_error(e, lent))
    {
        Err(Error::ClockSkew { skew_ms, .. }) => {
            *offset_ms += skew_ms;
            client.set_clock_offset_ms(*offset_ms);
            let lent = *offset_ms;
            let (session, _) = client
                .init(route, ttl_sec)
                .await
                .map_err(|e| skew_or_error(e, lent))?;
            Ok(session)
        }
        other => other.map(|(session, _)| session),
    }
}
