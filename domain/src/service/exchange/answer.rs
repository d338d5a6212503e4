//! The two halves of an exchange, for routes whose answer is not ready when the
//! request has been checked (a gateway route waits for its upstream): [`accept`] checks
//! and opens the request and claims its nonce; [`seal`] seals whatever answer came of
//! it, with its status and content type (bound by a v2 session's response AAD).
//!
//! [`accept`]: SessionService::accept
//! [`seal`]: SessionService::seal

use ports::crypto::IV_LEN;
use ports::{Clock, Ports, Protocol};

use super::{Authenticated, ExchangeError, ExchangeOutcome, ExchangeRequest, ResponseContext};
use crate::encoding::{push_hex, uuid_v4};
use crate::envelope::{Aad, seal_envelope_with};
use crate::headers::{HeaderError, RESPONSE_NONCE_PREFIX};
use crate::service::SessionService;
use crate::timing::Timings;
use crate::v2::{self, AadFields, RequestLine};

/// An authentic, fresh request whose nonce is claimed and whose use is counted: its
/// plaintext, and what sealing its answer needs. Borrows the request body, which holds
/// the plaintext in place; the caller wipes the body once done with it.
pub struct Accepted<'a> {
    request: Authenticated<'a>,
    kid: &'a str,
    client_id: &'a str,
    /// The answer's randomness, drawn in one call: response nonce, IV.
    random: [u8; 16 + IV_LEN],
    context: ResponseContext,
    timings: Timings,
}

impl std::fmt::Debug for Accepted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the plaintext, the key or the session id.
        f.debug_struct("Accepted")
            .field("protocol", &self.protocol())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Accepted<'_> {
    /// The decrypted request body.
    pub fn plaintext(&self) -> &[u8] {
        self.request.plaintext
    }

    /// The session's protocol version.
    pub fn protocol(&self) -> Protocol {
        self.request.record.keys.protocol()
    }

    /// The session's owner (`X-ClientId`, checked).
    pub fn client_id(&self) -> &str {
        &self.request.record.client_id
    }

    /// The session id (a secret bearer value: never log or forward it as is).
    pub fn session_id(&self) -> &str {
        &self.request.record.id
    }

    /// Server time and random bytes for the route's own use.
    pub fn context(&self) -> ResponseContext {
        self.context
    }

    /// Records a route step (e.g. the upstream call) for `Server-Timing`.
    pub fn record_step(&mut self, name: &'static str, start_ns: u64, end_ns: u64) {
        self.timings.record(name, start_ns, end_ns);
    }
}

/// The answer to seal: its status, content type (empty: none) and plaintext.
#[derive(Debug)]
pub struct Answer<'p> {
    /// The status the answer is sent with (bound in v2).
    pub status: u16,
    /// Its `X-Inner-Content-Type` (bound in v2; empty when it has none).
    pub content_type: &'p str,
    /// The plaintext to seal (encrypted in place).
    pub plaintext: Vec<u8>,
}

impl<P: Ports> SessionService<P> {
    /// Checks and opens a request (docs/PROTOCOL.md §8.2), runs the route's `check` on
    /// it, and only if that passes claims the nonce and counts the use. A request the
    /// route refuses therefore keeps its nonce. The body holds the plaintext in place
    /// and is not wiped: the caller wipes it once the answer is sealed.
    ///
    /// # Errors
    /// [`ExchangeError`], or the route's own refusal.
    pub async fn accept<'a, T, F>(
        &self,
        req: ExchangeRequest<'a>,
        check: F,
    ) -> Result<(Accepted<'a>, T), ExchangeError>
    where
        F: FnOnce(&Accepted<'a>) -> Result<T, ExchangeError>,
    {
        let (mut accepted, sample) = self.open(req).await?;
        // The route's check comes first: a request that does not fit the route is
        // refused before its nonce is used up.
        let checked = check(&accepted)?;
        let (start, end) = self.admit(&accepted, sample).await?;
        accepted.record_step("replay-protection", start, end);
        Ok((accepted, checked))
    }

    /// Authenticates and opens a request, and draws the answer's randomness; nothing
    /// is claimed yet. Returns the use-sampling byte for [`Self::admit`].
    pub(super) async fn open<'a>(
        &self,
        req: ExchangeRequest<'a>,
    ) -> Result<(Accepted<'a>, u8), ExchangeError> {
        let mut timings = Timings::default();
        let texts = req.texts();
        let request = self
            .authenticate(texts, req.line, req.body, &mut timings)
            .await?;
        // Present: `authenticate` checked them.
        let (kid, client_id) = (
            req.kid.unwrap_or_default(),
            req.client_id.unwrap_or_default(),
        );

        // All the randomness of the answer in one call (use sampling, the route's bytes,
        // response nonce, IV): the CSPRNG's per-call cost dominates these small draws.
        // None of it is secret (all but the sample goes on the wire).
        let mut random = [0u8; 1 + 8 + 16 + IV_LEN];
        self.crypto
            .random
            .fill(&mut random)
            .map_err(|_| ExchangeError::Crypto)?;
        let (sample, rest) = random.split_at(1);
        let (route_random, rest) = rest.split_at(8);
        let context = ResponseContext {
            random: route_random.try_into().unwrap_or_default(),
            now_ms: request.now,
        };
        let accepted = Accepted {
            request,
            kid,
            client_id,
            random: rest.try_into().unwrap_or_default(),
            context,
            timings,
        };
        Ok((accepted, sample[0]))
    }

    /// Claims the nonce of an opened request its route accepted, and counts the use
    /// (the request's encryption and the answer's). Returns the claim's start and end
    /// (monotonic ns) for `Server-Timing`.
    pub(super) async fn admit(
        &self,
        accepted: &Accepted<'_>,
        sample: u8,
    ) -> Result<(u64, u64), ExchangeError> {
        let clock = self.ports.clock();
        let start = clock.monotonic_ns();
        self.claim_request(&accepted.request).await?;
        let end = clock.monotonic_ns();
        self.count_use(&accepted.request.record, 2, accepted.request.now, sample)
            .await?;
        Ok((start, end))
    }

    /// The session's pseudonym for a gateway's upstream (`X-Session-Id`,
    /// docs/PROTOCOL.md §20): the first 16 bytes of HMAC-SHA256, under the gateway's
    /// `key`, over a label and the session id, in lowercase hex — stable for the
    /// session and the key, and useless to present as a session.
    pub fn session_pseudonym(&self, accepted: &Accepted<'_>, key: &[u8; 32]) -> String {
        let mac = self.crypto.digests.hmac_sha256(
            key,
            &[
                b"session-crypto gateway session id\0",
                accepted.session_id().as_bytes(),
            ],
        );
        let mut out = String::with_capacity(32);
        push_hex(&mut out, &mac[..16], false);
        out
    }

    /// Seals `answer` to the request `accepted` came from: a response nonce marked as
    /// such (so it can never pass for a request), the server's timestamp, and in v2 the
    /// response AAD bound to the request line, its nonce, and the answer's status and
    /// content type.
    ///
    /// # Errors
    /// [`ExchangeError::Crypto`] for a backend failure; a header error for a content
    /// type too long to encode.
    pub fn seal(
        &self,
        accepted: Accepted<'_>,
        answer: Answer<'_>,
    ) -> Result<ExchangeOutcome, ExchangeError> {
        let clock = self.ports.clock();
        let Accepted {
            request,
            kid,
            client_id,
            random,
            mut timings,
            ..
        } = accepted;
        let t = clock.monotonic_ns();
        let (nonce_random, iv) = random.split_at(16);
        let response_nonce = format!(
            "{RESPONSE_NONCE_PREFIX}{}",
            uuid_v4(nonce_random.try_into().unwrap_or_default())
        );
        let response_ts = request.now.to_string();
        let iv = iv.try_into().unwrap_or_default();
        let envelope = match request.record.keys.protocol() {
            // One key schedule for both directions.
            Protocol::V1 => seal_envelope_with(
                &*request.aead_key,
                &iv,
                &Aad::new(&response_ts, &response_nonce, kid, client_id),
                answer.plaintext,
            ),
            Protocol::V2 => {
                let fields = AadFields {
                    line: RequestLine {
                        content_type: answer.content_type,
                        ..request.line
                    },
                    kid,
                    client_id,
                    timestamp: &response_ts,
                    nonce: &response_nonce,
                };
                let aad = v2::response_aad(&fields, &request.nonce, answer.status)
                    .map_err(|_| HeaderError::TooLong)?;
                self.crypto
                    .aead
                    .prepare(request.record.keys.response())
                    .and_then(|key| seal_envelope_with(&*key, &iv, &aad, answer.plaintext))
            }
        }
        .map_err(|_| ExchangeError::Crypto)?;
        timings.record("aes-gcm-encrypt", t, clock.monotonic_ns());
        Ok(ExchangeOutcome {
            idempotency_key: format!("{response_ts}.{response_nonce}"),
            envelope,
            timings,
        })
    }
}
