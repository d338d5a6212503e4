//! An on-path attacker who sees and replays traffic but holds no key: what they can
//! no longer do (SECURITY.md). Each test fails on a server without the matching fix.

use domain::client::ClientSession;
use hyper::Method;
use session_crypto_client::{Connection, HttpResponse};

use crate::helpers::*;
use crate::support::*;

/// Sends `plain` sealed under `session` to `path`; the answer and what was sent.
async fn sealed_post(
    conn: &mut Connection,
    session: &ClientSession,
    path: &str,
    plain: &[u8],
) -> (HttpResponse, (String, Vec<u8>)) {
    let sealed = session.seal_request(now(), plain).unwrap();
    let headers = purchase_headers(session.kid(), &sealed.idempotency_key, session.client_id());
    let resp = conn
        .send(Method::POST, path, &headers, sealed.envelope.clone())
        .await
        .unwrap();
    (resp, (sealed.idempotency_key, sealed.envelope))
}

/// Sends captured headers and body again, as the attacker would.
async fn replay(
    conn: &mut Connection,
    session: &ClientSession,
    path: &str,
    key: &str,
    body: Vec<u8>,
) -> HttpResponse {
    let headers = purchase_headers(session.kid(), key, session.client_id());
    conn.send(Method::POST, path, &headers, body).await.unwrap()
}

#[tokio::test]
async fn a_purchase_response_is_never_taken_for_a_request() {
    let server = Server::start(&[]);
    let (mut client, session) = established(&server, "VICTIM").await;
    let conn = client.connection();
    let (resp, _) = sealed_post(conn, &session, "/transaction/purchase", PAYLOAD).await;
    assert_eq!(resp.status, 200);
    let response_key = resp.header("x-idempotency-key").unwrap().to_owned();
    let response_body = resp.body.to_vec();

    // Its headers and body, sent back as a purchase or a revocation: refused.
    for path in ["/transaction/purchase", "/session/revoke"] {
        let r = replay(conn, &session, path, &response_key, response_body.clone()).await;
        assert_code(&r, 400, "CRYPTO_ERROR");
    }
    // The victim's session is untouched.
    assert!(client.purchase(&session, PAYLOAD).await.is_ok());
}

#[tokio::test]
async fn a_request_cannot_be_moved_to_another_route_nor_burn_its_nonce_there() {
    let server = Server::start(&[]);
    let (mut client, session) = established(&server, "VICTIM").await;
    let conn = client.connection();

    // A purchase, captured and sent to /session/revoke first: refused, and the
    // session lives on.
    let sealed = session.seal_request(now(), PAYLOAD).unwrap();
    let r = replay(
        conn,
        &session,
        "/session/revoke",
        &sealed.idempotency_key,
        sealed.envelope.clone(),
    )
    .await;
    assert_code(&r, 400, "CRYPTO_ERROR");
    // ...and the genuine purchase still goes through: its nonce was not consumed.
    let r = replay(
        conn,
        &session,
        "/transaction/purchase",
        &sealed.idempotency_key,
        sealed.envelope,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // A revocation sent to /transaction/purchase first: refused without consuming its
    // nonce, so the genuine revocation then succeeds.
    let revoke = session
        .seal_request(now(), br#"{"action":"revoke"}"#)
        .unwrap();
    let r = replay(
        conn,
        &session,
        "/transaction/purchase",
        &revoke.idempotency_key,
        revoke.envelope.clone(),
    )
    .await;
    assert_code(&r, 400, "CRYPTO_ERROR");
    let r = replay(
        conn,
        &session,
        "/session/revoke",
        &revoke.idempotency_key,
        revoke.envelope,
    )
    .await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn a_revocation_needs_the_explicit_revoke_plaintext() {
    let server = Server::start(&[]);
    let (mut client, session) = established(&server, "OWNER").await;
    let conn = client.connection();
    for plain in [&b"{}"[..], br#"{"action":"purchase"}"#, PAYLOAD] {
        let (r, _) = sealed_post(conn, &session, "/session/revoke", plain).await;
        assert_code(&r, 400, "CRYPTO_ERROR");
    }
    assert!(client.purchase(&session, PAYLOAD).await.is_ok());
}

#[tokio::test]
async fn a_protocol_header_sent_twice_is_refused() {
    let server = Server::start(&[]);
    let crypto = server.crypto;
    let (mut client, session) = established(&server, "OWNER").await;
    let conn = client.connection();
    let pk = fresh_public_key(crypto);
    // init: two X-Idempotency-Key or two X-ClientId lines, in both families.
    for (path, identity) in [("/session/init", false), ("/v1/session/init", true)] {
        let (k1, k2) = (idem(crypto), idem(crypto));
        for extra in [("x-idempotency-key", k2.as_str()), ("x-clientid", "OTHER")] {
            let mut headers = init_headers(&k1, "OWNER");
            headers.push(extra);
            let r = post_init(conn, path, &headers, init_body(&pk)).await;
            if identity {
                assert_identity(&r, 400);
            } else {
                assert_code(&r, 400, "CRYPTO_ERROR");
            }
        }
    }
    // purchase: a second X-Kid, X-ClientId or X-Idempotency-Key line.
    for (name, value) in [
        ("x-kid", "session:S-00000000000000000000000000000000"),
        ("x-clientid", "OTHER"),
        (
            "x-idempotency-key",
            "1706700000000.0f8fad5b-d9cb-469f-a165-70867728950e",
        ),
    ] {
        let sealed = session.seal_request(now(), PAYLOAD).unwrap();
        let mut headers =
            purchase_headers(session.kid(), &sealed.idempotency_key, "OWNER").to_vec();
        headers.push((name, value));
        let r = conn
            .send(
                Method::POST,
                "/transaction/purchase",
                &headers,
                sealed.envelope,
            )
            .await
            .unwrap();
        assert_code(&r, 400, "CRYPTO_ERROR");
    }
}

#[tokio::test]
async fn buffered_bodies_have_a_global_budget() {
    let server = Server::start(&[("BODY_BUFFER_BUDGET_BYTES", "100000")]);
    let (mut client, session) = established(&server, "OWNER").await;
    let conn = client.connection();
    // Under the per-request limit (1 MiB), over what the server buffers at once.
    let sealed = session.seal_request(now(), &vec![b' '; 150_000]).unwrap();
    let headers = purchase_headers(session.kid(), &sealed.idempotency_key, "OWNER");
    let r = conn
        .send(
            Method::POST,
            "/transaction/purchase",
            &headers,
            sealed.envelope,
        )
        .await
        .unwrap();
    assert_code(&r, 503, "SERVICE_UNAVAILABLE");
    // The budget comes back: an ordinary purchase goes through.
    assert!(client.purchase(&session, PAYLOAD).await.is_ok());
}

#[tokio::test]
async fn an_encrypted_request_with_bad_headers_is_refused_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&[]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // A body announced and never sent, behind a malformed X-Idempotency-Key.
    s.write_all(
        b"POST /transaction/purchase HTTP/1.1\r\nHost: x\r\nX-Kid: session:S-000102030405060708090a0b0c0d0e0f\r\n\
          X-ClientId: C\r\nX-Idempotency-Key: not-a-key\r\nContent-Length: 500000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(3), s.read(&mut answer))
        .await
        .expect("no answer before the body: the server waits for it")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains(r#"{"error":"CRYPTO_ERROR"}"#), "{text}");
}

#[tokio::test]
async fn one_client_filling_the_nonce_store_locks_out_only_itself_and_a_full_store_shows() {
    let server = Server::start(&[("MEMORY_NONCE_MAX_SIZE", "20"), ("ADMIN_PORT", "0")]);
    let (mut attacker, session) = established(&server, "ATTACKER").await; // 1 nonce
    // Its share is half the store: 10 nonces, then it is refused...
    for _ in 0..9 {
        assert!(attacker.purchase(&session, PAYLOAD).await.is_ok());
    }
    let (status, _) = refusal(attacker.purchase(&session, PAYLOAD).await);
    assert_eq!(status, 400);
    // ...while everyone else goes on, and the server still says it is fine.
    let (mut other, theirs) = established(&server, "SOMEONE").await;
    assert!(other.purchase(&theirs, PAYLOAD).await.is_ok());
    let mut conn = server.connect().await;
    let health = conn.send(Method::GET, "/health", &[], "").await.unwrap();
    assert_eq!(json(&health)["status"], "ok");
    assert_eq!(json(&health)["nonceStore"], "ok");

    // Filled up by several clients, the store refuses everyone: /health says
    // degraded, /ready 503, and the metrics name the reason.
    for i in 0..10 {
        let (mut c, s) = match server.client(&format!("C{i}")).await.init(INIT, None).await {
            Ok((s, _)) => (server.client(&format!("C{i}")).await, s),
            Err(_) => break,
        };
        let _ = c.purchase(&s, PAYLOAD).await;
    }
    let health = conn.send(Method::GET, "/health", &[], "").await.unwrap();
    assert_eq!(json(&health)["status"], "degraded", "{:?}", health.body);
    assert_eq!(json(&health)["nonceStore"], "full");
    let ready = conn.send(Method::GET, "/ready", &[], "").await.unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(json(&ready)["nonceStore"], "full");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"reason="nonce_store_full""#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_full_session_store_answers_503_and_shows_in_health() {
    let server = Server::start(&[("MEMORY_SESSION_MAX_SIZE", "3")]);
    let mut client = server.client("C").await;
    for _ in 0..3 {
        client.init(INIT, None).await.unwrap();
    }
    let (status, body) = refusal(client.init(INIT, None).await);
    assert_eq!(
        (status, body.as_str()),
        (503, r#"{"error":"SERVICE_UNAVAILABLE"}"#)
    );
    let mut conn = server.connect().await;
    let health = conn.send(Method::GET, "/health", &[], "").await.unwrap();
    assert_eq!(json(&health)["status"], "degraded");
    assert_eq!(json(&health)["sessions"], "full");
}
