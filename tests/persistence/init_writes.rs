//! What an init leaves in the stores: a fresh one its session in PostgreSQL and the
//! session's cache entry in Redis (sent with the nonce claim, in one round trip); a
//! replayed one nothing — and a session id stored twice is served to no one.

use crate::helpers::*;
use crate::support::services::{PgServer, RedisServer};
use crate::support::*;

/// The headers and body of one init, to be sent more than once.
fn init_request(crypto: ports::CryptoProvider) -> (String, String) {
    (
        idem(crypto),
        format!(
            r#"{{"clientPublicKey":"{}"}}"#,
            b64(&fresh_public_key(crypto))
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_init_leaves_no_session_and_no_cache_entry() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let server = stateful(&pg, &redis, &[]);
    let mut conn = server.connect().await;
    let (key, body) = init_request(server.crypto);
    let headers = [
        ("content-type", "application/json"),
        ("x-idempotency-key", key.as_str()),
        ("x-clientid", "REPLAYED"),
    ];
    let first = post_init(&mut conn, "/session/init", &headers, body.clone()).await;
    assert_eq!(first.status, 200);
    let id = json(&first)["sessionId"].as_str().unwrap().to_owned();
    for (path, status) in [("/session/init", 400), ("/v1/session/init", 409)] {
        let again = post_init(&mut conn, path, &headers, body.clone()).await;
        assert_eq!(again.status, status, "{path}");
        assert!(
            !String::from_utf8_lossy(&again.body).contains("S-"),
            "{path}: no session id in a refusal"
        );
    }
    assert_eq!(pg.psql("SELECT count(*) FROM sessions").trim(), "1");
    // The replays' cache entries went out with their claims and were withdrawn.
    assert_eq!(redis.keys("sess:*"), [format!("sess:{{{id}}}")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_id_stored_twice_is_served_to_no_one() {
    let (pg, redis) = (PgServer::start(), RedisServer::start());
    let server = stateful(&pg, &redis, &[]);
    let mut client = server.client("TWICE").await;
    let (session, _) = client.init(INIT, None).await.unwrap();
    assert_eq!(purchase_status(&mut client, &session).await, 200);
    // A second row of the id, with another expiry: what an insert that does not look
    // through every partition could let in, were an id ever to come twice.
    pg.psql(
        "INSERT INTO sessions (session_id, wrapped_key, kek_id, session_type, client_id, \
         created_at, expires_at, protocol) SELECT session_id, wrapped_key, kek_id, \
         session_type, 'SOMEONE_ELSE', created_at, expires_at + interval '1 hour', protocol \
         FROM sessions",
    );
    assert_eq!(pg.psql("SELECT count(*) FROM sessions").trim(), "2");
    redis.delete_keys("sess:*");
    let refused = purchase_status(&mut client, &session).await;
    assert_ne!(refused, 200, "a session stored twice was served");
    assert_eq!(refused, 401);
}
