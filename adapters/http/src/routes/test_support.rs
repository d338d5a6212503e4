//! In-process route tests: the router over the memory stores and the pure-Rust
//! backend, driven with `hyper::Request`s, no server spawned.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::Bytes;
use domain::client::{ClientSession, Handshake};
use domain::encoding::{base64_decode, base64_encode};
use domain::{Family, ReplayPolicy, ServiceConfig, SessionService};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use memory::{MemoryNonceStore, MemoryQuotas, MemorySessionStore};
use ports::{Clock, CryptoProvider, NoCache, Stores, SystemClock};

use crate::config::ApiConfig;
use crate::health_check::{Dependency, HealthCheck, HealthReport};
use crate::router::Api;
use crate::wire::{Body, Listener};

const CRYPTO: CryptoProvider = crypto_rustcrypto::PROVIDER;
const CLIENT: &str = "ROUTE_TEST";

/// Memory stores, nothing to probe.
#[derive(Debug)]
pub(crate) struct Embedded;

impl HealthCheck for Embedded {
    async fn report(&self) -> HealthReport {
        HealthReport {
            session_store: "memory",
            postgres: Dependency::Disabled,
            redis: Dependency::Disabled,
            nonces_full: false,
            sessions_full: false,
        }
    }
}

type TestPorts = Stores<MemorySessionStore, NoCache, MemoryNonceStore, SystemClock, MemoryQuotas>;

/// The router on the embedded stack.
pub(crate) struct App {
    api: Arc<Api<TestPorts, Embedded>>,
}

/// A response body as JSON.
pub(crate) async fn body_json(resp: Response<Body>) -> serde_json::Value {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

impl App {
    pub(crate) fn new() -> Self {
        let ports = Stores {
            sessions: MemorySessionStore::new(1000),
            cache: NoCache,
            nonces: MemoryNonceStore::new(1000),
            clock: SystemClock,
            quotas: MemoryQuotas::default(),
        };
        let service = SessionService::new(CRYPTO, ports, ServiceConfig::default());
        Self {
            api: Api::new(service, Embedded, ApiConfig::default()),
        }
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> (StatusCode, Response<Body>) {
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let resp = self.api.handle(Listener::Public, peer, req).await;
        (resp.status(), resp)
    }

    /// An init on `family` whose idempotency key uses the nonce `nonce` (so tests can
    /// repeat one).
    pub(crate) async fn init(&self, family: Family, nonce: &str) -> (StatusCode, Response<Body>) {
        self.init_with(family, &Handshake::start(CRYPTO).unwrap(), nonce)
            .await
    }

    async fn init_with(
        &self,
        family: Family,
        hs: &Handshake,
        nonce: &str,
    ) -> (StatusCode, Response<Body>) {
        let path = match family {
            Family::Unversioned => "/session/init",
            Family::V1Paths => "/v1/session/init",
        };
        let body = format!(
            r#"{{"clientPublicKey":"{}"}}"#,
            base64_encode(&hs.public_key().0)
        );
        let req = Request::post(path)
            .header("content-type", "application/json")
            .header("x-clientid", CLIENT)
            .header(
                "x-idempotency-key",
                format!("{}.init-nonce-{nonce:0>16}", SystemClock.now_ms()),
            )
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send(req).await
    }

    /// A new session, established through `POST /session/init` (with the nonce
    /// `nonce`).
    pub(crate) async fn session(&self, nonce: &str) -> ClientSession {
        let hs = Handshake::start(CRYPTO).unwrap();
        let (status, resp) = self.init_with(Family::Unversioned, &hs, nonce).await;
        assert_eq!(status, StatusCode::OK);
        let v = body_json(resp).await;
        let server_key = base64_decode(v["serverPublicKey"].as_str().unwrap()).unwrap();
        hs.finish(v["sessionId"].as_str().unwrap(), &server_key, CLIENT)
            .unwrap()
    }

    /// A sealed request under session `s`.
    pub(crate) fn seal(&self, s: &ClientSession, plain: &[u8]) -> Sealed {
        let sealed = s.seal_request(SystemClock.now_ms(), plain).unwrap();
        Sealed {
            kid: s.kid().to_owned(),
            client_id: s.client_id().to_owned(),
            idempotency_key: sealed.idempotency_key.clone(),
            envelope: sealed.envelope.clone(),
            request: sealed,
        }
    }

    /// Posts a sealed request to `path`.
    pub(crate) async fn post(&self, path: &str, sealed: &Sealed) -> (StatusCode, Response<Body>) {
        let req = Request::post(path)
            .header("x-kid", &sealed.kid)
            .header("x-clientid", &sealed.client_id)
            .header("x-idempotency-key", &sealed.idempotency_key)
            .body(Full::new(Bytes::from(sealed.envelope.clone())))
            .unwrap();
        self.send(req).await
    }

    /// Opens the sealed answer to `sent`.
    pub(crate) async fn open(
        &self,
        s: &ClientSession,
        sent: &Sealed,
        resp: Response<Body>,
    ) -> Vec<u8> {
        let key = resp.headers()["x-idempotency-key"]
            .to_str()
            .unwrap()
            .to_owned();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let head = domain::client::ResponseHead {
            status,
            idempotency_key: &key,
            content_type: "",
        };
        s.open_response(
            &sent.request,
            head,
            body.to_vec(),
            SystemClock.now_ms(),
            &ReplayPolicy::DEFAULT,
        )
        .unwrap()
        .to_vec()
    }
}

/// A sealed request, ready to send (and to send again).
pub(crate) struct Sealed {
    kid: String,
    client_id: String,
    idempotency_key: String,
    envelope: Vec<u8>,
    request: domain::client::SealedRequest,
}
