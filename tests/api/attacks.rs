//! An on-path attacker who sees and replays traffic but holds no key: what they can
//! no longer do (SECURITY.md). Each test fails on a server without the matching fix.

use domain::client::ClientSession;
use http_adapter::client::{Connection, HttpResponse};
use hyper::Method;

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
