//! Server set-ups and requests the persistence areas share.

use crate::support::services::{PgServer, RedisServer};
use http_adapter::client::{FlowError, ProtocolClient};
use hyper::Method;

use crate::support::*;

pub(crate) const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub(crate) const KEK2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// How long after Redis trouble began requests stamped now pass the fence of
/// [`stateful`] servers (two leases + the margin, and some slack).
pub(crate) const FENCE_PASSED: std::time::Duration = std::time::Duration::from_millis(800);

pub(crate) fn stateful(pg: &PgServer, redis: &RedisServer, extra: &[(&str, &str)]) -> Server {
    let (db, r) = (pg.url(), redis.url());
    // No in-process cache unless a test asks: these tests look at what Redis and
    // PostgreSQL do.
    let mut env: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", &db),
        ("REDIS_URL", &r),
        ("SESSION_KEK", KEK),
        ("REDIS_COMMAND_TIMEOUT_MS", "500"),
        ("SESSION_LOCAL_CACHE_MS", "0"),
        // A fence after Redis trouble refuses requests stamped up to 600 ms after it
        // began (4 s by default), so that tests need not wait.
        ("REPLAY_FENCE_MARGIN_MS", "200"),
        ("REPLAY_FENCE_LEASE_MS", "200"),
    ];
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
    let mut conn = server.connect().await;
    let headers = [
        ("x-kid", session.kid()),
        ("x-idempotency-key", sealed.idempotency_key.as_str()),
        ("x-clientid", session.client_id()),
    ];
    conn.send(
        Method::POST,
        "/transaction/purchase",
        &headers,
        sealed.envelope.clone(),
    )
    .await
    .unwrap()
    .status
    .as_u16()
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
