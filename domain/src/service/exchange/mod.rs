//! The authenticated exchange every encrypted route is built on: check the headers and
//! the window, find the live session, open the request envelope, run the route's pure
//! check on the plaintext, claim the nonce, count the use, run the route's handler, and
//! seal its answer. The nonce is claimed only for a request that fits its route (an
//! authentic envelope whose plaintext the check accepts), so a request sent to the
//! wrong route is refused without using up its nonce; the handler runs only after the
//! claim, so two racing copies of one request never both act ([`EncryptedRoute`]).
//! `/transaction/purchase` is one such route.

use ports::{Clock, Ports, Protocol, Quotas, SessionCache, SessionRecord, SessionStore};
use zeroize::Zeroize;

mod answer;
mod error;
mod refusal;
mod route;

pub use answer::{Accepted, Answer};
pub use error::ExchangeError;
pub use refusal::{Outcome, RefusedRequest, SealedRefusal};
pub use route::{EncryptedRoute, PayloadError, RouteError};

use super::{Lookup, SessionService, required};
use crate::envelope::{Aad, open_envelope_with};
use crate::headers::{CallKey, ClientId, HeaderError, IdempotencyKey, SessionId, kid_session_part};
use crate::timing::Timings;
use crate::v2::{self, AadFields, RequestLine};

/// The header texts of an encrypted request the checks read (as sent).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderTexts<'a> {
    pub(crate) kid: Option<&'a str>,
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) client_id: Option<&'a str>,
    pub(crate) call_key: Option<&'a str>,
}

impl<'a> ExchangeRequest<'a> {
    /// Its header texts.
    pub(crate) fn texts(&self) -> HeaderTexts<'a> {
        HeaderTexts {
            kid: self.kid,
            idempotency_key: self.idempotency_key,
            client_id: self.client_id,
            call_key: self.call_key,
        }
    }
}

/// An encrypted request as seen by the domain.
#[derive(Debug)]
pub struct ExchangeRequest<'a> {
    /// `X-Kid`.
    pub kid: Option<&'a str>,
    /// `X-Idempotency-Key`.
    pub idempotency_key: Option<&'a str>,
    /// `X-ClientId`.
    pub client_id: Option<&'a str>,
    /// `Idempotency-Key` (the client's key of the call, stable across its re-sends):
    /// bound by a v2 session's AAD when present, and forwarded by a gateway.
    pub call_key: Option<&'a str>,
    /// Method, target and `X-Inner-Content-Type` (bound by a v2 session's AAD).
    pub line: RequestLine<'a>,
    /// The envelope; decrypted in place and wiped before returning.
    pub body: &'a mut [u8],
}

/// The status of a built-in route's sealed answer (errors are never sealed); a gateway
/// route seals its upstream's status instead.
pub const SEALED_STATUS: u16 = 200;

/// What a route's check and handler get besides the plaintext.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext {
    /// Random bytes for the route's own use (the purchase's transaction id).
    pub random: [u8; 8],
    /// Server time of the request, epoch ms.
    pub now_ms: u64,
}

/// A sealed answer.
#[derive(Debug)]
pub struct ExchangeOutcome {
    /// Response `X-Idempotency-Key`: `<server ms>.<uuid v4>`.
    pub idempotency_key: String,
    /// Response body.
    pub envelope: Vec<u8>,
    /// Step durations for `Server-Timing`.
    pub timings: Timings,
}

/// The parsed headers of an encrypted request.
struct Headers<'h> {
    kid: &'h str,
    key: IdempotencyKey<'h>,
    client: ClientId<'h>,
    session_id: SessionId,
}

/// An authentic request: its session, the prepared key and the plaintext (in place,
/// inside the request body). Its nonce is not claimed yet: [`SessionService::claim`]
/// does that once the route has accepted the plaintext.
pub(crate) struct Authenticated<'b> {
    pub(crate) record: SessionRecord,
    aead_key: Box<dyn ports::AeadKey>,
    pub(crate) plaintext: &'b mut [u8],
    now: u64,
    /// The request's nonce.
    nonce: String,
    /// The request's timestamp.
    stamped: u64,
    /// The request line the AAD bound (v2).
    line: RequestLine<'b>,
}

impl<P: Ports> SessionService<P> {
    async fn load_live_session(
        &self,
        id: &str,
        now_ms: u64,
    ) -> Result<SessionRecord, ExchangeError> {
        match self
            .lookup(id, now_ms)
            .await
            .map_err(ExchangeError::Store)?
        {
            Lookup::Found(record) => Ok(record),
            Lookup::Missing => Err(ExchangeError::SessionUnknown),
            Lookup::Expired(_) => {
                // Lazy deletion (docs/PROTOCOL.md §6); failures only delay it.
                let _ = self.ports.sessions().delete(id).await;
                let _ = self.ports.cache().delete(id).await;
                Err(ExchangeError::SessionExpired)
            }
        }
    }

    /// Runs one exchange on `route` (docs/PROTOCOL.md §8.2): opens the request, runs the
    /// route's check on the plaintext, claims the nonce and counts the use, runs the
    /// route's handler, and seals its answer.
    ///
    /// The nonce is claimed only once the envelope has authenticated and the route has
    /// accepted the plaintext, so nobody without the session key can burn a client's
    /// nonces and a misdirected request keeps its nonce; the handler runs only after the
    /// claim, so of two concurrent copies of one request at most one acts. The request
    /// body is wiped before returning.
    ///
    /// # Errors
    /// [`RouteError::Exchange`] for a refused request, [`RouteError::Handler`] when the
    /// handler failed (its nonce is used).
    pub async fn exchange<R: EncryptedRoute>(
        &self,
        req: ExchangeRequest<'_>,
        route: &R,
    ) -> Result<ExchangeOutcome, RouteError<R::Error>> {
        let ExchangeRequest {
            kid,
            idempotency_key,
            client_id,
            call_key,
            line,
            body,
        } = req;
        let req = ExchangeRequest {
            kid,
            idempotency_key,
            client_id,
            call_key,
            line,
            body: &mut *body,
        };
        let result = async {
            let (mut accepted, sample) = self.open(req).await?;
            let context = accepted.context();
            // The pure check before the claim: a refused plaintext keeps its nonce.
            let checked = route
                .check(accepted.plaintext(), &context)
                .map_err(ExchangeError::from)?;
            let (start, end) = self.admit(&accepted, sample).await?;
            // Only a request whose nonce this call claimed gets here.
            let plaintext = route
                .handle(checked, context)
                .await
                .map_err(RouteError::Handler)?;
            accepted.record_step("replay-protection", start, end);
            Ok(self.seal(
                accepted,
                Answer {
                    status: SEALED_STATUS,
                    // The answer of a built-in route has no inner content type.
                    content_type: "",
                    plaintext,
                },
            )?)
        }
        .await;
        body.zeroize();
        result
    }

    /// The checks of an encrypted request that need neither its body nor any state —
    /// header grammars, the window, the session id's form — so a driving adapter can
    /// refuse a request before it reads (and buffers) the body.
    ///
    /// # Errors
    /// The [`ExchangeError`] the full exchange would fail with.
    pub fn precheck(
        &self,
        kid: Option<&str>,
        idempotency_key: Option<&str>,
        client_id: Option<&str>,
    ) -> Result<(), ExchangeError> {
        let now = self.ports.clock().now_ms();
        self.check_headers(kid, idempotency_key, client_id, now)
            .map(|_| ())
    }

    fn check_headers<'h>(
        &self,
        kid: Option<&'h str>,
        idempotency_key: Option<&'h str>,
        client_id: Option<&'h str>,
        now: u64,
    ) -> Result<Headers<'h>, ExchangeError> {
        let kid = required(kid, "X-Kid")?;
        let key_text = required(idempotency_key, "X-Idempotency-Key")?;
        let client_text = required(client_id, "X-ClientId")?;
        let key = IdempotencyKey::parse_request(key_text)?;
        let client = ClientId::parse(client_text)?;
        let session_part = kid_session_part(kid)?;
        if !self.config.replay.in_window(key.timestamp_ms(), now) {
            return Err(ExchangeError::OutsideWindow);
        }
        let session_id = SessionId::parse(session_part).ok_or(ExchangeError::SessionMalformed)?;
        Ok(Headers {
            kid,
            key,
            client,
            session_id,
        })
    }

    /// Everything the encrypted routes share before their own check: header grammars,
    /// window, session lookup and ownership, opening the envelope. The plaintext is
    /// returned in place, inside `body`; the nonce is claimed by [`Self::claim`].
    pub(crate) async fn authenticate<'b>(
        &self,
        texts: HeaderTexts<'_>,
        line: RequestLine<'b>,
        body: &'b mut [u8],
        timings: &mut Timings,
    ) -> Result<Authenticated<'b>, ExchangeError> {
        let HeaderTexts {
            kid,
            idempotency_key,
            client_id,
            call_key,
        } = texts;
        let clock = self.ports.clock();
        let now = clock.now_ms();
        let Headers {
            kid,
            key,
            client,
            session_id,
        } = self.check_headers(kid, idempotency_key, client_id, now)?;

        // Step boundaries are shared: each clock reading ends one step and starts the next.
        let t0 = clock.monotonic_ns();
        let record = self.load_live_session(session_id.as_str(), now).await?;
        let t1 = clock.monotonic_ns();
        timings.record("db-get", t0, t1);
        if record.client_id != client.as_str() {
            // Same generic answer as a decryption failure: no existence oracle (§14 V14).
            return Err(ExchangeError::ClientMismatch);
        }

        let aad = match record.keys.protocol() {
            Protocol::V1 => Aad::new(key.timestamp_text(), key.nonce(), kid, client.as_str()),
            Protocol::V2 => {
                let call_key = call_key.map(CallKey::parse).transpose()?;
                v2::request_aad_keyed(
                    &AadFields {
                        line,
                        kid,
                        client_id: client.as_str(),
                        timestamp: key.timestamp_text(),
                        nonce: key.nonce(),
                    },
                    call_key.as_ref().map(CallKey::as_str),
                )
                .map_err(|_| HeaderError::TooLong)?
            }
        };
        let t2 = clock.monotonic_ns();
        timings.record("aad-build", t1, t2);
        let aead_key = self
            .crypto
            .aead
            .prepare(record.keys.request())
            .map_err(|_| ExchangeError::Crypto)?;
        let plaintext = open_envelope_with(&*aead_key, &aad, body)?;
        timings.record("aes-gcm-decrypt", t2, clock.monotonic_ns());
        Ok(Authenticated {
            record,
            aead_key,
            plaintext,
            now,
            nonce: key.nonce().to_owned(),
            stamped: key.timestamp_ms(),
            line,
        })
    }

    /// Claims the nonce of an authentic request that its route accepted.
    pub(crate) async fn claim_request(
        &self,
        request: &Authenticated<'_>,
    ) -> Result<(), ExchangeError> {
        self.claim_nonce(
            &request.record.client_id,
            &request.nonce,
            request.now,
            request.stamped,
        )
        .await?;
        Ok(())
    }

    /// Counts this request's encryptions under the session key (the client's, and the
    /// server's answer) and enforces the encryption cap and the idle timeout. Runs only
    /// for authentic, fresh requests, so replays and forgeries count for nothing. A
    /// session over either limit is ended, and the client has to start a new one.
    ///
    /// Without an idle timeout, large caps are counted by sampling (see
    /// [`crate::AbuseLimits::encryption_sample_rate`]): `sample` (a uniformly random
    /// byte) picks the uses that are recorded, each with the weight of the ones skipped.
    async fn count_use(
        &self,
        record: &SessionRecord,
        encryptions: u64,
        now: u64,
        sample: u8,
    ) -> Result<(), ExchangeError> {
        let limits = self.config.limits;
        if !limits.counts_uses() {
            return Ok(());
        }
        let idle_ms = limits.idle_timeout_sec.saturating_mul(1000);
        let mut weight = encryptions;
        if idle_ms == 0 {
            let rate = limits.encryption_sample_rate();
            if u64::from(sample) % rate != 0 {
                return Ok(());
            }
            weight *= rate;
        }
        let usage = self
            .ports
            .quotas()
            .touch(record, weight, now, idle_ms)
            .await
            .map_err(ExchangeError::Quota)?;
        let refusal = if idle_ms > 0 && now.saturating_sub(usage.last_used_ms) > idle_ms {
            ExchangeError::SessionIdle
        } else if limits.max_encryptions_per_session > 0
            && usage.uses.saturating_add(weight) > limits.max_encryptions_per_session
        {
            ExchangeError::KeyExhausted
        } else {
            return Ok(());
        };
        // Refused either way; if the deletion fails the counters keep refusing it.
        let _ = self.end_session(record).await;
        Err(refusal)
    }
}
