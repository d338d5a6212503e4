//! The server's use cases, generic over the ports (static dispatch for the stores,
//! a `'static` provider for crypto so the backend can be chosen at run time).

use std::future::{Future, poll_fn};
use std::net::IpAddr;
use std::pin::pin;
use std::task::Poll;

use ports::crypto::IV_LEN;
use ports::{
    Clock, CryptoProvider, NonceClaim, NonceError, NonceStore, P256PublicKey, Quotas, RateDecision,
    RateLimit, SessionCache, SessionKind, SessionRecord, SessionStore, StoreError,
};
use zeroize::Zeroize;

use crate::encoding::uuid_v4;
use crate::envelope::{
    Aad, EnvelopeError, derive_session_key, open_envelope_with, seal_envelope_with,
};
use crate::headers::{ClientId, HeaderError, IdempotencyKey, SessionId, kid_session_part};
use crate::limits::{AbuseLimits, init_client_key, init_ip_key};
use crate::p256::{PublicKeyError, validate_public_key};
use crate::policy::{ReplayPolicy, RequestedTtl, TtlPolicy, V1TtlPolicy, nonce_key};
use crate::purchase::PayloadError;
use crate::timing::Timings;

/// Which route family a request arrived on: the unversioned API-server routes or the
/// `/v1` identity routes. They share rules and store but differ in TTL rules,
/// `encAlg` and error statuses (PROTOCOL.md §14 V1, V2, V11, V12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/session/init`, `/transaction/purchase`.
    Unversioned,
    /// `/v1/session/init`, `/v1/session/{id}`.
    V1,
}

impl Family {
    /// `encAlg` in the init response.
    pub fn enc_alg(self) -> &'static str {
        match self {
            Self::Unversioned => "A256GCM",
            Self::V1 => "aes-256-gcm",
        }
    }
}

/// The policies the service enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Window and nonce TTL.
    pub replay: ReplayPolicy,
    /// Unversioned TTL rules.
    pub ttl: TtlPolicy,
    /// `/v1` TTL rules.
    pub v1_ttl: V1TtlPolicy,
    /// Rate limits, session cap, encryption cap, idle timeout.
    pub limits: AbuseLimits,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            replay: ReplayPolicy::DEFAULT,
            ttl: TtlPolicy::DEFAULT,
            v1_ttl: V1TtlPolicy::DEFAULT,
            limits: AbuseLimits::DEFAULT,
        }
    }
}

/// The parsed init body. `client_public_key` is already base64-decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct InitBody {
    /// Decoded `clientPublicKey`.
    pub client_public_key: Vec<u8>,
    /// `ttlSec` (ignored on `/v1`).
    pub ttl: RequestedTtl,
}

/// `POST /session/init` and `POST /v1/session/init` as seen by the domain.
#[derive(Debug)]
pub struct InitRequest<'a> {
    /// Route family.
    pub family: Family,
    /// `X-Idempotency-Key`.
    pub idempotency_key: Option<&'a str>,
    /// `X-ClientId`.
    pub client_id: Option<&'a str>,
    /// `Authorization` (only its presence counts, and only when upstream auth is trusted).
    pub authorization: Option<&'a str>,
    /// The client's address for the per-IP rate limit; `None` when it is exempt.
    pub remote_ip: Option<IpAddr>,
    /// The body, or why it could not be read (reason for logs).
    pub body: Result<InitBody, &'static str>,
}

/// A successful init.
#[derive(Debug)]
pub struct InitOutcome {
    /// New session id.
    pub session_id: SessionId,
    /// The server's ephemeral public key.
    pub server_public_key: P256PublicKey,
    /// `A256GCM` or `aes-256-gcm`.
    pub enc_alg: &'static str,
    /// Effective TTL.
    pub expires_in_sec: u64,
    /// Step durations for `Server-Timing`.
    pub timings: Timings,
}

/// Why an init failed. The HTTP adapter maps each to the family's status and body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// Missing or malformed header.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// Timestamp outside the window.
    #[error("timestamp outside the replay window")]
    OutsideWindow,
    /// Body unreadable (not JSON, wrong shape, missing key, bad base64).
    #[error("bad init body: {0}")]
    Body(&'static str),
    /// Public key refused.
    #[error(transparent)]
    PublicKey(#[from] PublicKeyError),
    /// `ttlSec` present but not an integer ≥ 0.
    #[error("ttlSec is not an integer >= 0")]
    Ttl,
    /// Nonce already used by this client.
    #[error("replayed nonce")]
    Replay,
    /// Nonce store could not decide (fail closed).
    #[error(transparent)]
    NonceStore(NonceError),
    /// Backend failure.
    #[error("crypto backend failure")]
    Crypto,
    /// Session store failure.
    #[error(transparent)]
    Store(StoreError),
    /// Over the per-IP or per-client init rate limit.
    #[error("{scope} init rate limit exceeded")]
    RateLimited {
        /// `"per-IP"` or `"per-client"`.
        scope: &'static str,
        /// When a retry can succeed.
        retry_after_ms: u64,
    },
    /// The client id already holds the maximum number of live sessions.
    #[error("client id holds the maximum number of live sessions")]
    TooManySessions,
    /// The limit state could not be read (fail closed).
    #[error("limit state unavailable: {0}")]
    Quota(StoreError),
}

impl InitError {
    /// A short, stable label of the failure class, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Header(_) => "bad_header",
            Self::OutsideWindow => "outside_window",
            Self::Body(_) | Self::Ttl => "bad_body",
            Self::PublicKey(_) => "bad_public_key",
            Self::Replay => "replay",
            Self::NonceStore(NonceError::Full) => "nonce_store_full",
            Self::NonceStore(NonceError::Unavailable(_)) => "nonce_store_unavailable",
            Self::Crypto => "crypto_failure",
            Self::Store(_) => "store_unavailable",
            Self::RateLimited { .. } => "rate_limited",
            Self::TooManySessions => "too_many_sessions",
            Self::Quota(_) => "limits_unavailable",
        }
    }
}

/// `POST /transaction/purchase` as seen by the domain.
#[derive(Debug)]
pub struct PurchaseRequest<'a> {
    /// `X-Kid`.
    pub kid: Option<&'a str>,
    /// `X-Idempotency-Key`.
    pub idempotency_key: Option<&'a str>,
    /// `X-ClientId`.
    pub client_id: Option<&'a str>,
    /// The envelope; decrypted in place and wiped before returning.
    pub body: &'a mut [u8],
}

/// What the response builder of a purchase gets besides the plaintext.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext {
    /// Random bytes for the transaction id.
    pub transaction_random: [u8; 8],
    /// Server time of the request, epoch ms.
    pub now_ms: u64,
}

/// A sealed purchase response.
#[derive(Debug)]
pub struct PurchaseOutcome {
    /// Response `X-Idempotency-Key`: `<server ms>.<uuid v4>`.
    pub idempotency_key: String,
    /// Response body.
    pub envelope: Vec<u8>,
    /// Step durations for `Server-Timing`.
    pub timings: Timings,
}

/// Why a purchase failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurchaseError {
    /// Missing or malformed header.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// Timestamp outside the window.
    #[error("timestamp outside the replay window")]
    OutsideWindow,
    /// The id after `session:` is not `S-` + 32 hex (→ 401, checked before any lookup).
    #[error("malformed session id")]
    SessionMalformed,
    /// No such session.
    #[error("unknown session")]
    SessionUnknown,
    /// Session past its expiry (deleted as a side effect).
    #[error("expired session")]
    SessionExpired,
    /// `X-ClientId` is not the session's owner.
    #[error("client id does not own the session")]
    ClientMismatch,
    /// Envelope too short or failed authentication.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// Nonce already used by this client.
    #[error("replayed nonce")]
    Replay,
    /// Nonce store could not decide (fail closed).
    #[error(transparent)]
    NonceStore(NonceError),
    /// Plaintext is not an acceptable purchase.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// Backend failure.
    #[error("crypto backend failure")]
    Crypto,
    /// Session store failure.
    #[error(transparent)]
    Store(StoreError),
    /// Unused for longer than the idle timeout (ended as a side effect).
    #[error("session idle for too long")]
    SessionIdle,
    /// The session key reached its encryption cap (ended as a side effect).
    #[error("session key reached its encryption cap")]
    KeyExhausted,
    /// The per-session counters could not be read (fail closed).
    #[error("limit state unavailable: {0}")]
    Quota(StoreError),
}

impl PurchaseError {
    /// A short, stable label of the failure class, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Header(_) => "bad_header",
            Self::OutsideWindow => "outside_window",
            Self::SessionMalformed | Self::SessionUnknown => "unknown_session",
            Self::SessionExpired => "expired_session",
            Self::ClientMismatch => "client_mismatch",
            Self::Envelope(EnvelopeError::TooShort) => "bad_envelope",
            Self::Envelope(EnvelopeError::Authentication) => "decrypt_failed",
            Self::Replay => "replay",
            Self::NonceStore(NonceError::Full) => "nonce_store_full",
            Self::NonceStore(NonceError::Unavailable(_)) => "nonce_store_unavailable",
            Self::Payload(_) => "bad_payload",
            Self::Crypto => "crypto_failure",
            Self::Store(_) => "store_unavailable",
            Self::SessionIdle => "idle_session",
            Self::KeyExhausted => "key_exhausted",
            Self::Quota(_) => "limits_unavailable",
        }
    }

    /// Whether the wire answer is 401 `SESSION_EXPIRED` (the client starts a new session).
    pub fn is_session_state(&self) -> bool {
        matches!(
            self,
            Self::SessionMalformed
                | Self::SessionUnknown
                | Self::SessionExpired
                | Self::SessionIdle
                | Self::KeyExhausted
        )
    }
}

/// The key-release answer of `GET /v1/session/{id}` (internal listener only).
#[derive(Debug)]
pub struct KeyRelease {
    /// The record (holds the key).
    pub record: SessionRecord,
}

/// Why a key release failed (PROTOCOL.md §5.6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// `X-ClientId` missing → 400.
    #[error("missing X-ClientId")]
    MissingClientId,
    /// Id not `^S-[0-9a-f]{32}$` → 400.
    #[error("malformed session id")]
    MalformedId,
    /// Not found → 404.
    #[error("session not found")]
    NotFound,
    /// Owned by another client → 403 (checked before expiry).
    #[error("client id does not own the session")]
    Forbidden,
    /// Expired → 410.
    #[error("session expired")]
    Expired,
    /// Store failure → 503.
    #[error(transparent)]
    Store(StoreError),
}

struct Authenticated<'b> {
    record: SessionRecord,
    aead_key: Box<dyn ports::AeadKey>,
    plaintext: &'b mut [u8],
    now: u64,
}

enum Lookup {
    Found(SessionRecord),
    Missing,
    Expired(SessionRecord),
}

/// Polls two futures concurrently until both are done (`std` has no stable `join!`).
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

fn required<'a>(value: Option<&'a str>, name: &'static str) -> Result<&'a str, HeaderError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or(HeaderError::Missing(name))
}

/// The session service: every server-side rule of the protocol.
#[derive(Debug)]
pub struct SessionService<S, C, N, K, Q> {
    crypto: CryptoProvider,
    store: S,
    cache: C,
    nonces: N,
    clock: K,
    quotas: Q,
    config: ServiceConfig,
}

/// The stores a [`SessionService`] runs on.
#[derive(Debug)]
pub struct Stores<S, C, N, K, Q> {
    /// Source of truth for sessions.
    pub sessions: S,
    /// Cache in front of it.
    pub cache: C,
    /// Single-use nonces.
    pub nonces: N,
    /// Time.
    pub clock: K,
    /// Abuse-limit state.
    pub quotas: Q,
}

impl<S, C, N, K, Q> SessionService<S, C, N, K, Q>
where
    S: SessionStore,
    C: SessionCache,
    N: NonceStore,
    K: Clock,
    Q: Quotas,
{
    /// Assembles the service.
    pub fn new(
        crypto: CryptoProvider,
        stores: Stores<S, C, N, K, Q>,
        config: ServiceConfig,
    ) -> Self {
        Self {
            crypto,
            store: stores.sessions,
            cache: stores.cache,
            nonces: stores.nonces,
            clock: stores.clock,
            quotas: stores.quotas,
            config,
        }
    }

    /// The crypto backend in use.
    pub fn crypto(&self) -> CryptoProvider {
        self.crypto
    }
    /// The policies.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }
    /// The session store (for health probes).
    pub fn store(&self) -> &S {
        &self.store
    }
    /// The session cache.
    pub fn cache(&self) -> &C {
        &self.cache
    }
    /// The clock.
    pub fn clock(&self) -> &K {
        &self.clock
    }
    /// The abuse-limit state.
    pub fn quotas(&self) -> &Q {
        &self.quotas
    }

    async fn check_rate(
        &self,
        scope: &'static str,
        key: impl FnOnce() -> String,
        limit: RateLimit,
        now_ms: u64,
    ) -> Result<(), InitError> {
        if limit.is_off() {
            return Ok(());
        }
        match self.quotas.rate(&key(), limit, now_ms).await {
            Ok(RateDecision::Allowed) => Ok(()),
            Ok(RateDecision::Limited { retry_after_ms }) => Err(InitError::RateLimited {
                scope,
                retry_after_ms,
            }),
            Err(e) => Err(InitError::Quota(e)),
        }
    }

    /// Deletes a session everywhere: store, cache, its client's session count.
    async fn end_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.store.delete(&record.id).await?;
        self.cache.delete(&record.id).await?;
        // The count entry lapses at the session's expiry if this fails.
        let _ = self
            .quotas
            .release_session(&record.client_id, &record.id, record.expires_at_ms)
            .await;
        Ok(())
    }

    async fn claim_nonce(
        &self,
        client_id: &str,
        nonce: &str,
        now_ms: u64,
    ) -> Result<(), Result<NonceError, ()>> {
        let key = nonce_key(client_id, nonce);
        match self
            .nonces
            .claim(&key, self.config.replay.nonce_ttl_sec(), now_ms)
            .await
        {
            Ok(NonceClaim::Fresh) => Ok(()),
            Ok(NonceClaim::Replay) => Err(Err(())),
            Err(e) => Err(Ok(e)),
        }
    }

    /// Creates a session (PROTOCOL.md §5.1 / §5.5 with the §14 fixes). Everything that
    /// can be checked without state is checked before the nonce is claimed, so a bad
    /// request never burns a nonce; key generation happens only after the claim.
    ///
    /// # Errors
    /// [`InitError`].
    pub async fn init(&self, req: InitRequest<'_>) -> Result<InitOutcome, InitError> {
        let mut timings = Timings::default();
        let limits = self.config.limits;
        let now = self.clock.now_ms();
        // Before anything else: a flood of malformed requests counts too.
        if let Some(ip) = req.remote_ip {
            self.check_rate("per-IP", || init_ip_key(ip), limits.init_per_ip, now)
                .await?;
        }
        let key_text = required(req.idempotency_key, "X-Idempotency-Key")?;
        let client_text = required(req.client_id, "X-ClientId")?;
        let key = IdempotencyKey::parse(key_text)?;
        let client = ClientId::parse(client_text)?;
        if !self.config.replay.in_window(key.timestamp_ms(), now) {
            return Err(InitError::OutsideWindow);
        }
        let body = req.body.map_err(InitError::Body)?;
        if body.client_public_key.is_empty() {
            return Err(InitError::Body("clientPublicKey missing or empty"));
        }
        let t = self.clock.monotonic_ns();
        let peer = validate_public_key(&body.client_public_key)?;
        timings.record("validate-pubkey", t, self.clock.monotonic_ns());

        let (ttl_sec, kind) = match req.family {
            Family::Unversioned => (
                self.config.ttl.resolve(body.ttl).ok_or(InitError::Ttl)?,
                SessionKind::Anonymous,
            ),
            Family::V1 => {
                let policy = self.config.v1_ttl;
                if policy.trust_upstream_auth && req.authorization.is_some_and(|a| !a.is_empty()) {
                    (policy.authenticated_sec, SessionKind::Authenticated)
                } else {
                    (policy.anonymous_sec, SessionKind::Anonymous)
                }
            }
        };

        self.check_rate(
            "per-client",
            || init_client_key(client.as_str()),
            limits.init_per_client,
            now,
        )
        .await?;

        let crypto = self.crypto;
        let mut id_bytes = [0u8; 16];
        crypto
            .random
            .fill(&mut id_bytes)
            .map_err(|_| InitError::Crypto)?;
        let session_id = SessionId::from_random(id_bytes);
        let expires_at_ms = now.saturating_add(ttl_sec.saturating_mul(1000));
        // The session count is reserved before the nonce is claimed, so a refusal
        // consumes no nonce; every later failure gives the reservation back.
        let cap = limits.max_sessions_per_client;
        let reserved = cap > 0;
        if reserved {
            let fits = self
                .quotas
                .reserve_session(
                    client.as_str(),
                    session_id.as_str(),
                    expires_at_ms,
                    cap,
                    now,
                )
                .await
                .map_err(InitError::Quota)?;
            if !fits {
                return Err(InitError::TooManySessions);
            }
        }
        let id_text = reserved.then(|| session_id.as_str().to_owned());
        let result = async {
            let t = self.clock.monotonic_ns();
            self.claim_nonce(client.as_str(), key.nonce(), now)
                .await
                .map_err(|e| match e {
                    Ok(store) => InitError::NonceStore(store),
                    Err(()) => InitError::Replay,
                })?;
            timings.record("replay-protection", t, self.clock.monotonic_ns());
            self.create_session(
                req.family,
                session_id,
                &client,
                &peer,
                (ttl_sec, kind),
                now,
                timings,
            )
            .await
        }
        .await;
        if let (Some(id), Err(_)) = (id_text, &result) {
            let _ = self
                .quotas
                .release_session(client.as_str(), &id, expires_at_ms)
                .await;
        }
        result
    }

    /// Key agreement, derivation and the durable write of an init that passed every check.
    #[allow(clippy::too_many_arguments)]
    async fn create_session(
        &self,
        family: Family,
        session_id: SessionId,
        client: &ClientId<'_>,
        peer: &P256PublicKey,
        (ttl_sec, kind): (u64, SessionKind),
        now: u64,
        mut timings: Timings,
    ) -> Result<InitOutcome, InitError> {
        let crypto = self.crypto;
        let t = self.clock.monotonic_ns();
        let key_pair = crypto
            .key_agreement
            .generate()
            .map_err(|_| InitError::Crypto)?;
        let server_public_key = key_pair.public_key();
        let t2 = self.clock.monotonic_ns();
        timings.record("ecdh-keygen", t, t2);
        let shared = key_pair.agree(peer).map_err(|_| InitError::Crypto)?;
        let t3 = self.clock.monotonic_ns();
        timings.record("ecdh-compute", t2, t3);

        let session_key =
            derive_session_key(crypto.hkdf, &shared, session_id.as_str(), client.as_str())
                .map_err(|_| InitError::Crypto)?;
        drop(shared);
        let t4 = self.clock.monotonic_ns();
        timings.record("hkdf", t3, t4);

        let record = SessionRecord {
            id: session_id.as_str().to_owned(),
            key: session_key,
            kind,
            client_id: client.as_str().to_owned(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(ttl_sec.saturating_mul(1000)),
        };
        // The durable write and the (best-effort) cache write go out together; the
        // answer waits for both, so the session is committed before the client learns
        // its id. A cache failure only costs a store read later; if the store write
        // fails, the cache entry is withdrawn.
        let (stored, _) = join(self.store.insert(&record), self.cache.put(&record)).await;
        if let Err(e) = stored {
            let _ = self.cache.delete(&record.id).await;
            return Err(InitError::Store(e));
        }
        timings.record("db-store", t4, self.clock.monotonic_ns());

        Ok(InitOutcome {
            session_id,
            server_public_key,
            enc_alg: family.enc_alg(),
            expires_in_sec: ttl_sec,
            timings,
        })
    }

    async fn lookup(&self, id: &str, now_ms: u64) -> Result<Lookup, StoreError> {
        let record = match self.cache.get(id).await {
            Ok(Some(record)) => record,
            _ => match self.store.get(id).await? {
                Some(record) => {
                    if !record.is_expired(now_ms) {
                        let _ = self.cache.put(&record).await;
                    }
                    record
                }
                None => return Ok(Lookup::Missing),
            },
        };
        if record.is_expired(now_ms) {
            return Ok(Lookup::Expired(record));
        }
        Ok(Lookup::Found(record))
    }

    async fn load_live_session(
        &self,
        id: &str,
        now_ms: u64,
    ) -> Result<SessionRecord, PurchaseError> {
        match self
            .lookup(id, now_ms)
            .await
            .map_err(PurchaseError::Store)?
        {
            Lookup::Found(record) => Ok(record),
            Lookup::Missing => Err(PurchaseError::SessionUnknown),
            Lookup::Expired(_) => {
                // Lazy deletion (PROTOCOL.md §7.6); failures only delay it.
                let _ = self.store.delete(id).await;
                let _ = self.cache.delete(id).await;
                Err(PurchaseError::SessionExpired)
            }
        }
    }

    /// Decrypts a purchase, hands the plaintext to `respond` (which parses it and
    /// builds the response plaintext), and seals the answer (PROTOCOL.md §5.2).
    ///
    /// The nonce is claimed only once the envelope has authenticated, so nobody without
    /// the session key can burn a client's nonces, and two concurrent copies of one
    /// request cannot both pass. The request body is wiped before returning.
    ///
    /// # Errors
    /// [`PurchaseError`].
    pub async fn purchase<F>(
        &self,
        req: PurchaseRequest<'_>,
        respond: F,
    ) -> Result<PurchaseOutcome, PurchaseError>
    where
        F: FnOnce(&[u8], &ResponseContext) -> Result<Vec<u8>, PayloadError>,
    {
        let body = req.body;
        let result = self
            .purchase_inner(req.kid, req.idempotency_key, req.client_id, body, respond)
            .await;
        body.zeroize();
        result
    }

    /// Everything a purchase and a revocation share: header grammars, window, session
    /// lookup and ownership, opening the envelope, and — once it has authenticated —
    /// the nonce claim. The plaintext is returned in place, inside `body`.
    async fn authenticate<'b>(
        &self,
        kid: Option<&str>,
        idempotency_key: Option<&str>,
        client_id: Option<&str>,
        body: &'b mut [u8],
        timings: &mut Timings,
    ) -> Result<Authenticated<'b>, PurchaseError> {
        let kid = required(kid, "X-Kid")?;
        let key_text = required(idempotency_key, "X-Idempotency-Key")?;
        let client_text = required(client_id, "X-ClientId")?;
        let key = IdempotencyKey::parse(key_text)?;
        let client = ClientId::parse(client_text)?;
        let session_part = kid_session_part(kid)?;
        let now = self.clock.now_ms();
        if !self.config.replay.in_window(key.timestamp_ms(), now) {
            return Err(PurchaseError::OutsideWindow);
        }
        let session_id = SessionId::parse(session_part).ok_or(PurchaseError::SessionMalformed)?;

        // Step boundaries are shared: each clock reading ends one step and starts the next.
        let t0 = self.clock.monotonic_ns();
        let record = self.load_live_session(session_id.as_str(), now).await?;
        let t1 = self.clock.monotonic_ns();
        timings.record("db-get", t0, t1);
        if record.client_id != client.as_str() {
            // Same generic 400 as a decryption failure: no existence oracle (§14 V14).
            return Err(PurchaseError::ClientMismatch);
        }

        let aad = Aad::new(key.timestamp_text(), key.nonce(), kid, client.as_str());
        let t2 = self.clock.monotonic_ns();
        timings.record("aad-build", t1, t2);
        // One key schedule for both directions.
        let aead_key = self
            .crypto
            .aead
            .prepare(&record.key)
            .map_err(|_| PurchaseError::Crypto)?;
        let plaintext = open_envelope_with(&*aead_key, &aad, body)?;
        let t3 = self.clock.monotonic_ns();
        timings.record("aes-gcm-decrypt", t2, t3);

        self.claim_nonce(client.as_str(), key.nonce(), now)
            .await
            .map_err(|e| match e {
                Ok(store) => PurchaseError::NonceStore(store),
                Err(()) => PurchaseError::Replay,
            })?;
        timings.record("replay-protection", t3, self.clock.monotonic_ns());
        Ok(Authenticated {
            record,
            aead_key,
            plaintext,
            now,
        })
    }

    /// Counts this request's encryptions under the session key (the client's, and the
    /// server's answer) and enforces the encryption cap and the idle timeout. Runs only
    /// for authentic, fresh requests, so replays and forgeries count for nothing. A
    /// session over either limit is ended, and the client has to start a new one.
    ///
    /// Without an idle timeout, large caps are counted by sampling (see
    /// [`AbuseLimits::encryption_sample_rate`]): `sample` (a uniformly random byte)
    /// picks the uses that are recorded, each with the weight of the ones skipped.
    async fn count_use(
        &self,
        record: &SessionRecord,
        encryptions: u64,
        now: u64,
        sample: u8,
    ) -> Result<(), PurchaseError> {
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
            .quotas
            .touch(record, weight, now, idle_ms)
            .await
            .map_err(PurchaseError::Quota)?;
        let refusal = if idle_ms > 0 && now.saturating_sub(usage.last_used_ms) > idle_ms {
            PurchaseError::SessionIdle
        } else if limits.max_encryptions_per_session > 0
            && usage.uses.saturating_add(weight) > limits.max_encryptions_per_session
        {
            PurchaseError::KeyExhausted
        } else {
            return Ok(());
        };
        // Refused either way; if the deletion fails the counters keep refusing it.
        let _ = self.end_session(record).await;
        Err(refusal)
    }

    async fn purchase_inner<F>(
        &self,
        kid: Option<&str>,
        idempotency_key: Option<&str>,
        client_id: Option<&str>,
        body: &mut [u8],
        respond: F,
    ) -> Result<PurchaseOutcome, PurchaseError>
    where
        F: FnOnce(&[u8], &ResponseContext) -> Result<Vec<u8>, PayloadError>,
    {
        let mut timings = Timings::default();
        let Authenticated {
            record,
            aead_key,
            plaintext,
            now,
        } = self
            .authenticate(kid, idempotency_key, client_id, body, &mut timings)
            .await?;
        // Present: `authenticate` checked them.
        let (kid, client) = (kid.unwrap_or_default(), client_id.unwrap_or_default());

        // All the randomness of the answer in one call (use sampling, transaction id,
        // response nonce, IV): the CSPRNG's per-call cost dominates these small draws.
        // None of it is secret (all but the sample goes on the wire).
        let mut random = [0u8; 1 + 8 + 16 + IV_LEN];
        self.crypto
            .random
            .fill(&mut random)
            .map_err(|_| PurchaseError::Crypto)?;
        let (sample, rest) = random.split_at(1);
        // The request's encryption and the answer's.
        self.count_use(&record, 2, now, sample[0]).await?;
        let (transaction_random, rest) = rest.split_at(8);
        let (nonce_random, iv) = rest.split_at(16);
        let context = ResponseContext {
            transaction_random: transaction_random.try_into().unwrap_or_default(),
            now_ms: now,
        };
        let response_plaintext = respond(plaintext, &context)?;

        let t = self.clock.monotonic_ns();
        let response_nonce = uuid_v4(nonce_random.try_into().unwrap_or_default());
        let response_ts = now.to_string();
        let response_aad = Aad::new(&response_ts, &response_nonce, kid, client);
        let envelope = seal_envelope_with(
            &*aead_key,
            &iv.try_into().unwrap_or_default(),
            &response_aad,
            response_plaintext,
        )
        .map_err(|_| PurchaseError::Crypto)?;
        let response_key = format!("{response_ts}.{response_nonce}");
        timings.record("aes-gcm-encrypt", t, self.clock.monotonic_ns());
        Ok(PurchaseOutcome {
            idempotency_key: response_key,
            envelope,
            timings,
        })
    }

    /// `POST /session/revoke`: the same headers and envelope rules as a purchase (replay
    /// protection included) — possession of the session key proves the right to end
    /// the session. `check` validates the plaintext (a JSON object). The session is
    /// deleted from the store and then from the cache; the call succeeds only when both
    /// deletions did, so a revocation is never reported while a cached copy could still
    /// serve the session. The request body is wiped before returning.
    ///
    /// # Errors
    /// [`PurchaseError`] (a failed deletion is [`PurchaseError::Store`]).
    pub async fn revoke<F>(
        &self,
        req: PurchaseRequest<'_>,
        check: F,
    ) -> Result<Timings, PurchaseError>
    where
        F: FnOnce(&[u8]) -> Result<(), PayloadError>,
    {
        let body = req.body;
        let mut timings = Timings::default();
        let result = async {
            let authenticated = self
                .authenticate(
                    req.kid,
                    req.idempotency_key,
                    req.client_id,
                    body,
                    &mut timings,
                )
                .await?;
            check(authenticated.plaintext)?;
            let t = self.clock.monotonic_ns();
            self.end_session(&authenticated.record)
                .await
                .map_err(PurchaseError::Store)?;
            timings.record("db-delete", t, self.clock.monotonic_ns());
            Ok(())
        }
        .await;
        body.zeroize();
        result.map(|()| timings)
    }

    /// `GET /v1/session/{id}` (internal listener only; PROTOCOL.md §5.6).
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
        let now = self.clock.now_ms();
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
