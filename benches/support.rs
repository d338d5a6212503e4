//! What both bench targets share: the service on the memory stores and the shipped
//! limits, fresh idempotency keys, init requests of each version, and a client session
//! set up through the service.

use std::sync::atomic::{AtomicU64, Ordering};

use domain::client::{ClientSession, Handshake, V2Answer};
use domain::policy::RequestedTtl;
use domain::{
    AbuseLimits, Family, InitBody, InitRequest, RequestedProtocol, ServiceConfig, SessionService,
};
use memory::{MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::{CryptoProvider, NoCache, Protocol, Stores, SystemClock};

pub(crate) type Service = SessionService<
    Stores<MemorySessionStore, NoCache, MemoryNonceStore, SystemClock, MemoryQuotas>,
>;

/// The service on memory stores sized for `capacity` sessions and twice as many nonces
/// (reserved up front, so no rehash pauses), with the shipped limits — the session cap
/// raised so that one client id can create every session a run needs (still counted).
pub(crate) fn service(p: CryptoProvider, capacity: usize) -> Service {
    SessionService::new(
        p,
        Stores {
            sessions: MemorySessionStore::new(capacity),
            cache: NoCache,
            nonces: MemoryNonceStore::new(2 * capacity),
            clock: SystemClock,
            quotas: MemoryQuotas::new(capacity),
        },
        ServiceConfig {
            limits: AbuseLimits {
                max_sessions_per_client: u64::MAX,
                ..AbuseLimits::DEFAULT
            },
            ..ServiceConfig::default()
        },
    )
}

pub(crate) fn now_ms() -> u64 {
    session_crypto_client::now_ms()
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh, valid `X-Idempotency-Key` (unique nonce) without calling an RNG.
pub(crate) fn fresh_key() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}.bench-nonce-{n:016}", now_ms())
}

/// An unversioned init of `protocol` (v1: without a `protocol` member).
pub(crate) fn init_request(
    key: &str,
    client_public_key: Vec<u8>,
    protocol: Protocol,
) -> InitRequest<'_> {
    InitRequest {
        family: Family::Unversioned,
        idempotency_key: Some(key),
        client_id: Some("BENCH"),
        authorization: None,
        remote_ip: None,
        declared_json: true,
        body: Ok(InitBody {
            client_public_key,
            ttl: RequestedTtl::Absent,
            protocol: match protocol {
                Protocol::V1 => RequestedProtocol::Absent,
                Protocol::V2 => RequestedProtocol::Number(2),
            },
        }),
    }
}

/// A client session of `protocol`, set up through `svc`.
pub(crate) fn establish(svc: &Service, p: CryptoProvider, protocol: Protocol) -> ClientSession {
    let hs = Handshake::start(p).unwrap();
    let key = fresh_key();
    let req = init_request(&key, hs.public_key().0.to_vec(), protocol);
    let out = futures_executor::block_on(svc.init(req)).unwrap();
    match V2Answer::from_outcome(&out) {
        None => hs
            .finish(out.session_id.as_str(), &out.server_public_key.0, "BENCH")
            .unwrap(),
        Some(answer) => hs.finish_v2(&answer, "BENCH", &[]).unwrap(),
    }
}
