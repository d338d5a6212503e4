//! The service on the memory stores, the pure-Rust backend and a fake clock, and the
//! requests the use-case tests share.

use domain::client::{ClientSession, Handshake, PURCHASE};
use domain::policy::RequestedTtl;
use domain::{
    AbuseLimits, ExchangeError, ExchangeOutcome, ExchangeRequest, Family, InitBody, InitError,
    InitRequest, PayloadError, ReplayPolicy, ResponseContext, ServiceConfig, SessionService,
};
use memory::{MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::{Clock, CryptoProvider, NoCache, Ports, SessionStore, Stores};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) const NOW: u64 = 1_706_700_000_000;
pub(crate) const CRYPTO: CryptoProvider = crypto_rustcrypto::PROVIDER;

#[derive(Debug)]
pub(crate) struct FakeClock(pub(crate) AtomicU64);
impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn monotonic_ns(&self) -> u64 {
        0
    }
}

pub(crate) type Service =
    SessionService<Stores<MemorySessionStore, NoCache, MemoryNonceStore, FakeClock, MemoryQuotas>>;

pub(crate) fn service_with(config: ServiceConfig) -> Service {
    SessionService::new(
        CRYPTO,
        Stores {
            sessions: MemorySessionStore::new(100),
            cache: NoCache,
            nonces: MemoryNonceStore::new(10_000),
            clock: FakeClock(AtomicU64::new(NOW)),
            quotas: MemoryQuotas::default(),
        },
        config,
    )
}

pub(crate) fn service() -> Service {
    service_with(ServiceConfig::default())
}

pub(crate) fn run<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// The exchange on a route that is a plain function (all check, no handler of its own),
/// whose only failures are the exchange's.
pub(crate) trait PlainExchange {
    async fn exchange_plain<'a, F>(
        &'a self,
        req: ExchangeRequest<'a>,
        route: F,
    ) -> Result<ExchangeOutcome, ExchangeError>
    where
        F: Fn(&[u8], &ResponseContext) -> Result<Vec<u8>, PayloadError> + Sync + 'a;
}

impl<P: Ports> PlainExchange for SessionService<P> {
    async fn exchange_plain<'a, F>(
        &'a self,
        req: ExchangeRequest<'a>,
        route: F,
    ) -> Result<ExchangeOutcome, ExchangeError>
    where
        F: Fn(&[u8], &ResponseContext) -> Result<Vec<u8>, PayloadError> + Sync + 'a,
    {
        self.exchange(req, &route)
            .await
            .map_err(ExchangeError::from)
    }
}

pub(crate) fn key(n: u32) -> String {
    format!("{NOW}.nonce-{n:0>16}")
}

pub(crate) fn init_req<'a>(
    family: Family,
    idem: &'a str,
    client: &'a str,
    pk: Vec<u8>,
    ttl: RequestedTtl,
) -> InitRequest<'a> {
    InitRequest {
        family,
        idempotency_key: Some(idem),
        client_id: Some(client),
        authorization: None,
        remote_ip: None,
        declared_json: true,
        body: Ok(InitBody {
            client_public_key: pk,
            ttl,
            protocol: domain::RequestedProtocol::Absent,
        }),
    }
}

/// init through the service, then derive the client session.
pub(crate) fn establish<P: Ports>(svc: &SessionService<P>, client: &str, n: u32) -> ClientSession {
    let hs = Handshake::start(CRYPTO).unwrap();
    let k = key(n);
    let out = run(svc.init(init_req(
        Family::Unversioned,
        &k,
        client,
        hs.public_key().0.to_vec(),
        RequestedTtl::Absent,
    )))
    .unwrap();
    hs.finish(out.session_id.as_str(), &out.server_public_key.0, client)
        .unwrap()
}

pub(crate) fn echo(
    svc: &Service,
) -> impl Fn(&[u8], &ResponseContext) -> Result<Vec<u8>, PayloadError> + Sync + '_ {
    |plain: &[u8], _: &ResponseContext| {
        let _ = svc;
        Ok([b"echo:".as_slice(), plain].concat())
    }
}

pub(crate) fn purchase(
    svc: &Service,
    s: &ClientSession,
    idem: &str,
    body: &mut [u8],
) -> Result<Vec<u8>, ExchangeError> {
    let out = run(svc.exchange_plain(
        ExchangeRequest {
            call_key: None,
            kid: Some(s.kid()),
            idempotency_key: Some(idem),
            client_id: Some(s.client_id()),
            line: PURCHASE,
            body,
        },
        echo(svc),
    ))?;
    let plain = s
        .open_response(
            &sealed_for(s, idem),
            domain::client::ResponseHead {
                status: 200,
                idempotency_key: &out.idempotency_key,
                content_type: "",
            },
            out.envelope,
            NOW,
            &ReplayPolicy::DEFAULT,
        )
        .unwrap();
    Ok(plain.to_vec())
}

pub(crate) fn fixed_session() -> ClientSession {
    ClientSession::from_key(
        CRYPTO,
        "S-000102030405060708090a0b0c0d0e0f",
        "NODE_CLIENT",
        ports::SessionKey::from_bytes([9; 32]),
    )
}

/// A store that is down, and a cache that records what it holds.
#[derive(Debug, Default)]
pub(crate) struct DownStore;
impl SessionStore for DownStore {
    async fn insert(&self, _: &ports::SessionRecord) -> Result<(), ports::StoreError> {
        Err(ports::StoreError::Unavailable("down".into()))
    }
    async fn get(&self, _: &str) -> Result<Option<ports::SessionRecord>, ports::StoreError> {
        Err(ports::StoreError::Unavailable("down".into()))
    }
    async fn delete(&self, _: &str) -> Result<(), ports::StoreError> {
        Err(ports::StoreError::Unavailable("down".into()))
    }
}

#[derive(Debug, Default)]
pub(crate) struct RecordingCache(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<String>>>);
impl ports::SessionCache for RecordingCache {
    async fn put(&self, r: &ports::SessionRecord) -> Result<(), ports::StoreError> {
        self.0.lock().unwrap().push(r.id.clone());
        Ok(())
    }
    async fn get(&self, _: &str) -> Result<Option<ports::SessionRecord>, ports::StoreError> {
        Ok(None)
    }
    async fn delete(&self, id: &str) -> Result<(), ports::StoreError> {
        self.0.lock().unwrap().retain(|k| k != id);
        Ok(())
    }
    async fn revoke(&self, r: &ports::SessionRecord) -> Result<(), ports::StoreError> {
        self.delete(&r.id).await
    }
}

pub(crate) fn limited(limits: AbuseLimits) -> Service {
    service_with(ServiceConfig {
        limits,
        ..ServiceConfig::default()
    })
}

/// A purchase sealed at the service's current time, its answer left unopened.
pub(crate) fn buy(svc: &Service, s: &ClientSession) -> Result<(), ExchangeError> {
    let now = svc.ports().clock.now_ms();
    let req = s.seal_request(now, b"{}").unwrap();
    let mut body = req.envelope;
    run(svc.exchange_plain(
        ExchangeRequest {
            call_key: None,
            kid: Some(s.kid()),
            idempotency_key: Some(&req.idempotency_key),
            client_id: Some(s.client_id()),
            line: PURCHASE,
            body: &mut body,
        },
        echo(svc),
    ))
    .map(|_| ())
}

/// An init from `ip` with nonce number `n`, stamped with the service's current time.
pub(crate) fn init_from(svc: &Service, ip: &str, client: &str, n: u32) -> Result<(), InitError> {
    let k = format!("{}.nonce-{n:0>16}", svc.ports().clock.now_ms());
    let pk = Handshake::start(CRYPTO).unwrap().public_key().0.to_vec();
    let mut req = init_req(Family::Unversioned, &k, client, pk, RequestedTtl::Absent);
    req.remote_ip = Some(ip.parse().unwrap());
    run(svc.init(req)).map(|_| ())
}

/// The domain's view of a request sealed under `s`.
pub(crate) fn request<'a>(
    s: &'a ClientSession,
    idem: &'a str,
    body: &'a mut [u8],
) -> ExchangeRequest<'a> {
    ExchangeRequest {
        call_key: None,
        kid: Some(s.kid()),
        idempotency_key: Some(idem),
        client_id: Some(s.client_id()),
        line: PURCHASE,
        body,
    }
}

/// What the client remembers of a purchase sealed under `s` with key `idem` (the
/// request line and nonce a v2 answer is bound to).
pub(crate) fn sealed_for(s: &ClientSession, idem: &str) -> domain::client::SealedRequest {
    let _ = s;
    domain::client::SealedRequest {
        idempotency_key: idem.to_owned(),
        envelope: Vec::new(),
        nonce: idem
            .split_once('.')
            .map(|(_, n)| n.to_owned())
            .unwrap_or_default(),
        method: PURCHASE.method.to_owned(),
        target: PURCHASE.target.to_owned(),
        content_type: String::new(),
    }
}
