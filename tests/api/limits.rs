//! Abuse limits: init rate limits, X-Forwarded-For, the session cap, the encryption cap and the idle timeout.

use session_crypto_client::InitRoute;
use std::time::Duration;

use crate::helpers::*;
use crate::support::*;

#[tokio::test]
async fn init_rate_limits_answer_429_with_retry_after_in_both_families() {
    // Loopback is exempt by default; clear the exemption to limit this test's own address.
    let server = Server::start(&[
        ("INIT_RATE_LIMIT_PER_IP", "2"),
        ("INIT_RATE_LIMIT_PER_IP_BURST", "2"),
        ("RATE_LIMIT_EXEMPT", ""),
    ]);
    let crypto = server.crypto;
    let mut conn = server.connect().await;
    let pk = fresh_public_key(crypto);
    for _ in 0..2 {
        let key = idem(crypto);
        let r = post_init(
            &mut conn,
            "/session/init",
            &init_headers(&key, "A"),
            init_body(&pk),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let key = idem(crypto);
    let r = post_init(
        &mut conn,
        "/session/init",
        &init_headers(&key, "A"),
        init_body(&pk),
    )
    .await;
    assert_code(&r, 429, "RATE_LIMITED");
    // 2 a minute: the next one is 30 s away.
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&wait), "Retry-After {wait}");
    let r = post_init(
        &mut conn,
        "/v1/session/init",
        &init_headers(&key, "A"),
        init_body(&pk),
    )
    .await;
    assert_identity(&r, 429);
    assert!(r.header("retry-after").is_some());

    // Per client id: other client ids are unaffected. Loopback exempt from the IP limit.
    let server = Server::start(&[
        ("INIT_RATE_LIMIT_PER_CLIENT", "1"),
        ("INIT_RATE_LIMIT_PER_CLIENT_BURST", "1"),
    ]);
    let mut a = server.client("A").await;
    a.init(INIT, None).await.unwrap();
    assert_eq!(
        refusal(a.init(INIT, None).await),
        (429, r#"{"error":"RATE_LIMITED"}"#.to_owned())
    );
    let mut b = server.client("B").await;
    let (session, _) = b.init(INIT, None).await.unwrap();
    assert!(b.purchase(&session, PAYLOAD).await.is_ok());
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let server = Server::start(&[
        ("INIT_RATE_LIMIT_PER_IP", "1"),
        ("INIT_RATE_LIMIT_PER_IP_BURST", "1"),
        ("RATE_LIMIT_EXEMPT", "203.0.113.0/24"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let crypto = server.crypto;
    let mut conn = server.connect().await;
    let pk = fresh_public_key(crypto);
    let mut send = async |xff: &str| {
        let key = idem(crypto);
        let mut headers = init_headers(&key, "A");
        headers.push(("x-forwarded-for", xff));
        post_init(&mut conn, "/session/init", &headers, init_body(&pk))
            .await
            .status
    };
    // Two different clients behind the proxy each get their own budget.
    assert_eq!(send("198.51.100.1").await, 200);
    assert_eq!(send("198.51.100.2").await, 200);
    assert_eq!(send("198.51.100.1").await, 429);
    // A client cannot escape by prepending addresses: the proxy's own entry counts.
    assert_eq!(send("1.2.3.4, 198.51.100.1").await, 429);
    // Exempt ranges apply to the resolved client address.
    for _ in 0..3 {
        assert_eq!(send("203.0.113.5").await, 200);
    }
}

#[tokio::test]
async fn sessions_per_client_are_capped_until_one_is_revoked() {
    let server = Server::start(&[("MAX_SESSIONS_PER_CLIENT", "2")]);
    let mut client = server.client("CAPPED").await;
    let (first, _) = client.init(INIT, None).await.unwrap();
    client.init(InitRoute::V1, None).await.unwrap();
    assert_eq!(
        refusal(client.init(INIT, None).await),
        (429, r#"{"error":"TOO_MANY_SESSIONS"}"#.to_owned())
    );
    let (status, body) = refusal(client.init(InitRoute::V1, None).await);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &json["error"]), (429, &"Too Many Requests".into()));
    server.client("OTHER").await.init(INIT, None).await.unwrap();
    client.revoke(&first).await.unwrap();
    client.init(INIT, None).await.unwrap();
}

#[tokio::test]
async fn a_session_ends_at_its_encryption_cap_and_after_idling() {
    // Two encryptions per purchase (request + answer).
    let server = Server::start(&[("MAX_ENCRYPTIONS_PER_SESSION", "4")]);
    let (mut client, session) = established(&server, "C").await;
    assert!(client.purchase(&session, PAYLOAD).await.is_ok());
    assert!(client.purchase(&session, PAYLOAD).await.is_ok());
    assert_401(client.purchase(&session, PAYLOAD).await);
    let (fresh, _) = client.init(INIT, None).await.unwrap();
    assert!(client.purchase(&fresh, PAYLOAD).await.is_ok());

    let server = Server::start(&[("SESSION_IDLE_TIMEOUT_SEC", "1")]);
    let (mut client, busy) = established(&server, "C").await;
    let (idle, _) = client.init(INIT, None).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(client.purchase(&busy, PAYLOAD).await.is_ok());
    }
    // 1.6 s without a use.
    assert_401(client.purchase(&idle, PAYLOAD).await);
    assert!(client.purchase(&busy, PAYLOAD).await.is_ok());
}

#[tokio::test]
async fn a_forged_forwarded_for_line_cannot_claim_an_exempt_address() {
    // A proxy that appends its own X-Forwarded-For line (HAProxy `option forwardfor`,
    // Envoy) leaves the client's forged line first; every line counts, in order.
    let server = Server::start(&[
        ("INIT_RATE_LIMIT_PER_IP", "1"),
        ("INIT_RATE_LIMIT_PER_IP_BURST", "1"),
        ("RATE_LIMIT_EXEMPT", "10.0.0.0/8"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let crypto = server.crypto;
    let mut conn = server.connect().await;
    let pk = fresh_public_key(crypto);
    let mut send = async || {
        let key = idem(crypto);
        let mut headers = init_headers(&key, "A");
        headers.push(("x-forwarded-for", "10.0.0.1")); // forged by the client
        headers.push(("x-forwarded-for", "198.51.100.9")); // appended by the proxy
        post_init(&mut conn, "/session/init", &headers, init_body(&pk))
            .await
            .status
    };
    assert_eq!(send().await, 200);
    assert_eq!(
        send().await,
        429,
        "limited as 198.51.100.9, not exempt as 10.0.0.1"
    );
}
