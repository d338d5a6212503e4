//! Trace-level logs hold no secret, plaintext or whole session id.

use crate::support::services::{PgServer, RedisServer};
use hyper::Method;

use crate::helpers::*;
use crate::support::*;

/// Runs flows — including rejections and a Redis outage — with every log level on,
/// then scans the log: no session key, KEK, plaintext or whole session id may appear.
#[tokio::test(flavor = "multi_thread")]
async fn trace_logs_hold_no_secrets_plaintexts_or_whole_session_ids() {
    let (pg, mut redis) = (PgServer::start(), RedisServer::start());
    let log = std::env::temp_dir().join(format!("session-crypto-log-{}.txt", std::process::id()));
    let (db, r) = (pg.url(), redis.url());
    let server = Server::start_logging_to(
        &[
            ("DATABASE_URL", &db),
            ("REDIS_URL", &r),
            ("SESSION_KEK", KEK),
            ("RUST_LOG", "trace"),
            ("REDIS_COMMAND_TIMEOUT_MS", "300"),
            ("REPLAY_FENCE_MARGIN_MS", "200"),
            ("REPLAY_FENCE_LEASE_MS", "1000"),
            ("INTERNAL_PORT", "0"),
        ],
        &log,
    );
    let mut client = server.client("LOGGED_CLIENT").await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let (s, _) = client.init(INIT, None).await.unwrap();
        client.purchase(&s, MARKED_PAYLOAD).await.unwrap();
        sessions.push(s);
    }
    // rejections log their reasons
    let sealed = sessions[0].seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(send_sealed(&server, &sessions[0], &sealed).await, 200);
    assert_eq!(send_sealed(&server, &sessions[0], &sealed).await, 400);
    let mut tampered = sessions[1].seal_request(now(), PAYLOAD).unwrap();
    *tampered.envelope.last_mut().unwrap() ^= 1;
    assert_eq!(send_sealed(&server, &sessions[1], &tampered).await, 400);
    // the key release on the internal listener, and a Redis outage
    let internal = server.internal_url.clone().unwrap();
    let mut conn = session_crypto_client::Connection::open(
        &session_crypto_client::Endpoint::parse(&internal).unwrap(),
    )
    .await
    .unwrap();
    let path = format!("/v1/session/{}", &sessions[2].kid()[8..]);
    assert_eq!(
        conn.send(Method::GET, &path, &[("x-clientid", "LOGGED_CLIENT")], "")
            .await
            .unwrap()
            .status,
        200
    );
    redis.kill();
    assert_eq!(
        purchase_status(&mut client, &sessions[2]).await,
        503,
        "fenced"
    );
    tokio::time::sleep(FENCE_PASSED).await;
    assert_eq!(purchase_status(&mut client, &sessions[2]).await, 200);
    drop(server);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "a log written to a file has no terminal colour codes"
    );
    let _ = std::fs::remove_file(&log);
    assert!(
        text.contains("session-crypto starting"),
        "the log was captured"
    );
    assert!(
        text.contains("replayed nonce"),
        "rejection reasons are logged"
    );
    assert!(text.contains("redis unreachable"), "the outage is logged");
    // session ids do reach the log, shortened (the key release names its session)
    assert!(
        text.contains(&sessions[2].kid()[8..18]),
        "short id of the released session"
    );
    let kek = domain::encoding::base64_decode(KEK).unwrap();
    let mut secrets: Vec<String> = vec![
        KEK.to_owned(),
        hex_of(&kek),
        "SECRET-SCHEME-7F3A".into(),
        "4242.42".into(),
    ];
    for s in &sessions {
        secrets.push(hex_of(s.key().expose()));
        secrets.push(b64(s.key().expose()));
        secrets.push(s.kid()[8..].to_owned()); // a whole session id
    }
    for secret in secrets {
        assert!(!text.contains(&secret), "log contains {secret:?}");
    }
}
