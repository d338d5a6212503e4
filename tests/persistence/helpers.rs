//! Server set-ups and requests the persistence areas share.

use crate::support::services::{PgServer, RedisServer};
use crate::support::topologies::{MASTER, RedisCluster, RedisSentinel};
use session_crypto_client::{FlowError, HttpResponse, ProtocolClient};

use crate::support::*;

pub(crate) const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub(crate) const KEK2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// How long after Redis trouble began requests stamped now pass the fence of
/// [`stateful`] servers (a lease + the margin, and some slack).
pub(crate) const FENCE_PASSED: std::time::Duration = std::time::Duration::from_millis(1500);

/// A Redis deployment the servers can be pointed at: standalone, Cluster, Sentinel.
pub(crate) trait RedisUnderTest {
    /// The settings that name it.
    fn settings(&self) -> Vec<(&'static str, String)>;
    /// Every key matching `pattern`, wherever it lives.
    fn keys(&self, pattern: &str) -> Vec<String>;
    /// `TTL key` (s), on the node that holds it.
    fn ttl(&self, key: &str) -> i64;
}

impl RedisUnderTest for RedisServer {
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![("REDIS_URL", self.url())]
    }
    fn keys(&self, pattern: &str) -> Vec<String> {
        lines(&self.cli(&["--scan", "--pattern", pattern]))
    }
    fn ttl(&self, key: &str) -> i64 {
        self.cli(&["TTL", key]).trim().parse().unwrap_or(-2)
    }
}

impl RedisUnderTest for RedisCluster {
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![("REDIS_CLUSTER_URLS", self.urls())]
    }
    fn keys(&self, pattern: &str) -> Vec<String> {
        RedisCluster::keys(self, pattern)
    }
    fn ttl(&self, key: &str) -> i64 {
        self.primaries()
            .into_iter()
            .map(|i| self.nodes[i].cli(&["-c", "TTL", key]))
            .find_map(|t| t.trim().parse().ok())
            .unwrap_or(-2)
    }
}

impl RedisUnderTest for RedisSentinel {
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REDIS_SENTINEL_URLS", self.urls()),
            ("REDIS_SENTINEL_MASTER", MASTER.to_owned()),
        ]
    }
    fn keys(&self, pattern: &str) -> Vec<String> {
        self.current_primary().keys(pattern)
    }
    fn ttl(&self, key: &str) -> i64 {
        self.current_primary().ttl(key)
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The Redis key of a cached session.
pub(crate) fn cache_key(session: &domain::client::ClientSession) -> String {
    format!("sess:{{{}}}", &session.kid()[8..])
}

pub(crate) fn stateful(
    pg: &PgServer,
    redis: &impl RedisUnderTest,
    extra: &[(&str, &str)],
) -> Server {
    let db = pg.url();
    let redis_settings = redis.settings();
    // No in-process cache unless a test asks: these tests look at what Redis and
    // PostgreSQL do.
    let mut env: Vec<(&str, &str)> = vec![("DATABASE_URL", &db)];
    env.extend(redis_settings.iter().map(|(k, v)| (*k, v.as_str())));
    env.extend_from_slice(&[
        ("SESSION_KEK", KEK),
        ("REDIS_COMMAND_TIMEOUT_MS", "500"),
        ("SESSION_LOCAL_CACHE_MS", "0"),
        // A fence after Redis trouble refuses requests stamped up to about a second
        // after it began (2.5 s or more by default), so that tests need not wait.
        ("REPLAY_FENCE_MARGIN_MS", "200"),
        ("REPLAY_FENCE_LEASE_MS", "1000"),
    ]);
    env.extend_from_slice(extra);
    Server::start(&env)
}

pub(crate) async fn purchase_status(
    client: &mut ProtocolClient,
    session: &domain::client::ClientSession,
) -> u16 {
    match client.purchase(session, PAYLOAD).await {
        Ok(_) => 200,
        Err(FlowError::Status { status, .. }) => status.as_u16(),
        Err(e) => panic!("{e}"),
    }
}

/// Sends one sealed purchase as given (for replays).
pub(crate) async fn send_sealed(
    server: &Server,
    session: &domain::client::ClientSession,
    sealed: &domain::client::SealedRequest,
) -> u16 {
    send_sealed_answer(server, session, sealed)
        .await
        .status
        .as_u16()
}

/// A fence refusal: 503 `SERVICE_UNAVAILABLE` with `Retry-After` (whole seconds, at
/// least 1), never the 400 of a bad request. Returns `Retry-After`.
pub(crate) fn assert_fenced(resp: &HttpResponse) -> u64 {
    assert_code(resp, 503, "SERVICE_UNAVAILABLE");
    let after: u64 = resp
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After: {:?}", resp.header("retry-after")));
    assert!(after >= 1, "{after}");
    after
}

/// Sends one sealed purchase and returns the whole answer.
pub(crate) async fn send_sealed_answer(
    server: &Server,
    session: &domain::client::ClientSession,
    sealed: &domain::client::SealedRequest,
) -> HttpResponse {
    let mut conn = server.connect().await;
    post_sealed(&mut conn, session, sealed).await.unwrap()
}

pub(crate) const MARKED_PAYLOAD: &[u8] = br#"{"schemeCode":"SECRET-SCHEME-7F3A","amount":4242.42}"#;

pub(crate) fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn init_status(server: &Server, client_id: &str) -> (u16, String) {
    match server.client(client_id).await.init(INIT, None).await {
        Ok(_) => (200, String::new()),
        refused => refusal(refused),
    }
}
