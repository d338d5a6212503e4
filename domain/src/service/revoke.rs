//! Ending a session at the client's request: `POST /session/revoke`.

use ports::{Clock, Ports};
use zeroize::Zeroize;

use super::SessionService;
use super::exchange::PayloadError;
use super::exchange::{ExchangeError, ExchangeRequest};
use crate::timing::Timings;

/// A revocation is authenticated exactly like an exchange (possession of the session
/// key proves the right to end the session), so it fails in the same ways.
pub type RevokeError = ExchangeError;

impl<P: Ports> SessionService<P> {
    /// Ends a session: the same headers and envelope rules as an exchange (replay
    /// protection included). `check` validates the plaintext. The session is deleted
    /// from the store and then from the cache; the call succeeds only when both
    /// deletions did, so a revocation is never reported while a cached copy could still
    /// serve the session. The request body is wiped before returning.
    ///
    /// # Errors
    /// [`RevokeError`] (a failed deletion is [`ExchangeError::Store`]).
    pub async fn revoke<F>(
        &self,
        req: ExchangeRequest<'_>,
        check: F,
    ) -> Result<Timings, RevokeError>
    where
        F: FnOnce(&[u8]) -> Result<(), PayloadError>,
    {
        let clock = self.ports.clock();
        let texts = req.texts();
        let body = req.body;
        let mut timings = Timings::default();
        let result = async {
            let authenticated = self
                .authenticate(texts, req.line, body, &mut timings)
                .await?;
            // The route's check before the nonce is used up (see the exchange).
            check(authenticated.plaintext)?;
            let t = clock.monotonic_ns();
            self.claim_request(&authenticated).await?;
            let t0 = t;
            let t = clock.monotonic_ns();
            timings.record("replay-protection", t0, t);
            self.end_session(&authenticated.record)
                .await
                .map_err(ExchangeError::Store)?;
            timings.record("db-delete", t, clock.monotonic_ns());
            Ok(())
        }
        .await;
        body.zeroize();
        result.map(|()| timings)
    }
}
