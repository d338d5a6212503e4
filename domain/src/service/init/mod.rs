//! Creating a session: `POST /session/init` and `POST /v1/session/init`.

use std::net::IpAddr;

use ports::{
    Clock, P256PublicKey, Ports, Protocol, Quotas, RateDecision, RateLimit, Reservation,
    SessionCache, SessionKeys, SessionKind, SessionRecord, SessionStore,
};

mod error;

pub use error::InitError;

use super::{Family, SessionService, claimed, required};
use crate::envelope::derive_session_key;
use crate::headers::{ClientId, IdempotencyKey, SessionId};
use crate::limits::{init_client_key, init_ip_key};
use crate::p256::validate_public_key;
use crate::policy::{RequestedTtl, nonce_key};
use crate::timing::Timings;
use crate::v2::{self, TranscriptInput, V2Proof};

/// `protocol` in the init body, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedProtocol {
    /// No `protocol` field: v1, answered exactly as before versions existed.
    Absent,
    /// A non-negative integral JSON number (`2`, `2.0`, `2e0`).
    Number(u64),
    /// Anything else (a string, a fraction, a negative number, `null`).
    Invalid,
}

/// The parsed init body. `client_public_key` is already base64-decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct InitBody {
    /// Decoded `clientPublicKey`.
    pub client_public_key: Vec<u8>,
    /// `ttlSec` (ignored on `/v1`).
    pub ttl: RequestedTtl,
    /// `protocol`.
    pub protocol: RequestedProtocol,
}

/// An init request as seen by the domain.
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
    /// Whether the request declared its body as JSON (the `/v1` identity contract
    /// refuses an init that does not).
    pub declared_json: bool,
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
    /// The session's protocol version.
    pub protocol: Protocol,
    /// Whether the request named its version (then the answer names it too; an init
    /// without `protocol` is answered exactly as v1 always was).
    pub echo_protocol: bool,
    /// v2's key confirmation and optional signature.
    pub proof: Option<V2Proof>,
    /// Step durations for `Server-Timing`.
    pub timings: Timings,
}

/// An init that passed every check, ready for key agreement, the nonce claim and the
/// durable write.
struct NewSession<'a> {
    family: Family,
    key: &'a IdempotencyKey<'a>,
    protocol: Protocol,
    echo_protocol: bool,
    session_id: SessionId,
    client: &'a ClientId<'a>,
    peer: &'a P256PublicKey,
    ttl_sec: u64,
    kind: SessionKind,
    now: u64,
}

impl<P: Ports> SessionService<P> {
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
        match self.ports.quotas().rate(&key(), limit, now_ms).await {
            Ok(RateDecision::Allowed) => Ok(()),
            Ok(RateDecision::Limited { retry_after_ms }) => Err(InitError::RateLimited {
                scope,
                retry_after_ms,
            }),
            Err(e) => Err(InitError::Quota(e)),
        }
    }

    /// Creates a session (docs/PROTOCOL.md §8.1 / §5.5 with the §14 fixes). Everything that
    /// can be checked without state is checked before the nonce is claimed, so a bad
    /// request never burns a nonce; the keys are made before the claim, so that the
    /// claim and the session's cache entry can travel together
    /// ([`Ports::claim_and_cache_new`]).
    ///
    /// # Errors
    /// [`InitError`].
    pub async fn init(&self, req: InitRequest<'_>) -> Result<InitOutcome, InitError> {
        let clock = self.ports.clock();
        let mut timings = Timings::default();
        let limits = self.config.limits;
        let now = clock.now_ms();
        // Before anything else: a flood of malformed requests counts too.
        if let Some(ip) = req.remote_ip {
            self.check_rate("per-IP", || init_ip_key(ip), limits.init_per_ip, now)
                .await?;
        }
        let key_text = required(req.idempotency_key, "X-Idempotency-Key")?;
        let client_text = required(req.client_id, "X-ClientId")?;
        let key = IdempotencyKey::parse_request(key_text)?;
        let client = ClientId::parse(client_text)?;
        if !self.config.replay.in_window(key.timestamp_ms(), now) {
            return Err(InitError::OutsideWindow);
        }
        if req.family == Family::V1Paths && !req.declared_json {
            return Err(InitError::NotDeclaredJson);
        }
        let body = req.body.map_err(InitError::Body)?;
        let (protocol, echo_protocol) = match body.protocol {
            RequestedProtocol::Absent => (Protocol::V1, false),
            RequestedProtocol::Number(n) => (
                Protocol::from_number(n).ok_or(InitError::UnsupportedProtocol)?,
                true,
            ),
            RequestedProtocol::Invalid => return Err(InitError::UnsupportedProtocol),
        };
        if body.client_public_key.is_empty() {
            return Err(InitError::Body("clientPublicKey missing or empty"));
        }
        let t = clock.monotonic_ns();
        let peer = validate_public_key(&body.client_public_key)?;
        timings.record("validate-pubkey", t, clock.monotonic_ns());

        let (ttl_sec, kind) = match req.family {
            Family::Unversioned => (
                self.config.ttl.resolve(body.ttl).ok_or(InitError::Ttl)?,
                SessionKind::Anonymous,
            ),
            Family::V1Paths => {
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

        let mut id_bytes = [0u8; 16];
        self.crypto
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
                .ports
                .quotas()
                .reserve_session(Reservation {
                    client_id: client.as_str(),
                    session_id: session_id.as_str(),
                    expires_at_ms,
                    cap,
                    now_ms: now,
                })
                .await
                .map_err(InitError::Quota)?;
            if !fits {
                return Err(InitError::TooManySessions);
            }
        }
        let id_text = reserved.then(|| session_id.as_str().to_owned());
        let new = NewSession {
            family: req.family,
            key: &key,
            protocol,
            echo_protocol,
            session_id,
            client: &client,
            peer: &peer,
            ttl_sec,
            kind,
            now,
        };
        let result = self.create_session(new, timings).await;
        if let (Some(id), Err(_)) = (id_text, &result) {
            let _ = self
                .ports
                .quotas()
                .release_session(client.as_str(), &id, expires_at_ms)
                .await;
        }
        result
    }

    /// Key agreement and derivation, then the nonce claim (with the session's cache
    /// entry, in one trip where the stores allow) and the durable write, of an init that
    /// passed every check. A replayed init thus costs one key agreement, as any fresh
    /// one does; it writes nothing durable and is answered no session.
    async fn create_session(
        &self,
        new: NewSession<'_>,
        mut timings: Timings,
    ) -> Result<InitOutcome, InitError> {
        let (crypto, clock) = (self.crypto, self.ports.clock());
        let t = clock.monotonic_ns();
        let key_pair = crypto
            .key_agreement
            .generate()
            .map_err(|_| InitError::Crypto)?;
        let server_public_key = key_pair.public_key();
        let t2 = clock.monotonic_ns();
        timings.record("ecdh-keygen", t, t2);
        let shared = key_pair.agree(new.peer).map_err(|_| InitError::Crypto)?;
        let t3 = clock.monotonic_ns();
        timings.record("ecdh-compute", t2, t3);

        let (keys, proof) = match new.protocol {
            Protocol::V1 => {
                let key = derive_session_key(
                    crypto.hkdf,
                    &shared,
                    new.session_id.as_str(),
                    new.client.as_str(),
                )
                .map_err(|_| InitError::Crypto)?;
                (SessionKeys::V1(key), None)
            }
            Protocol::V2 => {
                let input = TranscriptInput {
                    client_id: new.client.as_str(),
                    session_id: new.session_id.as_str(),
                    client_public_key: new.peer,
                    server_public_key: &server_public_key,
                };
                let identity = self.signing.current();
                let (keys, proof) =
                    v2::server_schedule(crypto, identity, &input, &shared, new.ttl_sec)
                        .map_err(|_| InitError::Crypto)?;
                (keys, Some(proof))
            }
        };
        drop(shared);
        let t4 = clock.monotonic_ns();
        timings.record("hkdf", t3, t4);

        let record = SessionRecord {
            id: new.session_id.as_str().to_owned(),
            keys,
            kind: new.kind,
            client_id: new.client.as_str().to_owned(),
            created_at_ms: new.now,
            expires_at_ms: new.now.saturating_add(new.ttl_sec.saturating_mul(1000)),
            at_rest: Default::default(),
        };
        // The claim with the (best-effort) cache write, then the durable write; the
        // answer waits for both, so the session is committed before the client learns
        // its id. In this order a revocation can find the session only after its cache
        // entry exists, so the revocation's tombstone always comes later and the entry
        // needs no check for one (`put_new`). A cache failure only costs a store read
        // later; if the claim is not fresh the entry is withdrawn with it, and if the
        // store write fails, here.
        let nonce_key = nonce_key(new.client.as_str(), new.key.nonce());
        let claim = self.claim_of(&nonce_key, new.now, new.key.timestamp_ms());
        claimed(self.ports.claim_and_cache_new(claim, &record).await)?;
        let t5 = clock.monotonic_ns();
        timings.record("replay-protection", t4, t5);
        if let Err(e) = self.ports.sessions().insert(&record).await {
            let _ = self.ports.cache().delete(&record.id).await;
            return Err(InitError::Store(e));
        }
        timings.record("db-store", t5, clock.monotonic_ns());

        Ok(InitOutcome {
            session_id: new.session_id,
            server_public_key,
            enc_alg: new.family.enc_alg(),
            expires_in_sec: new.ttl_sec,
            protocol: new.protocol,
            echo_protocol: new.echo_protocol,
            proof,
            timings,
        })
    }
}
