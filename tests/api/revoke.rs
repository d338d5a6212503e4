//! `POST /session/revoke`: ending a session needs its key and holds.

use hyper::Method;

use crate::helpers::*;
use crate::support::*;

#[tokio::test]
async fn revocation_ends_a_session_and_needs_the_key() {
    let server = Server::start(&[]);
    let (mut client, session) = established(&server, "OWNER").await;
    let kid = session.kid().to_owned();
    // a tampered revocation, or one from another client id, changes nothing
    let mut bad = session.seal_request(now(), REVOKE).unwrap();
    *bad.envelope.last_mut().unwrap() ^= 1;
    let conn = client.connection();
    let r = conn
        .send(
            Method::POST,
            "/session/revoke",
            &purchase_headers(&kid, &bad.idempotency_key, "OWNER"),
            bad.envelope,
        )
        .await
        .unwrap();
    assert_code(&r, 400, "CRYPTO_ERROR");
    let other = session.seal_request(now(), REVOKE).unwrap();
    let r = conn
        .send(
            Method::POST,
            "/session/revoke",
            &purchase_headers(&kid, &other.idempotency_key, "THIEF"),
            other.envelope,
        )
        .await
        .unwrap();
    assert_code(&r, 400, "CRYPTO_ERROR");
    // the plaintext must be a JSON object
    let not_object = session.seal_request(now(), b"[]").unwrap();
    let r = conn
        .send(
            Method::POST,
            "/session/revoke",
            &purchase_headers(&kid, &not_object.idempotency_key, "OWNER"),
            not_object.envelope,
        )
        .await
        .unwrap();
    assert_code(&r, 400, "CRYPTO_ERROR");
    assert!(
        client.purchase(&session, PAYLOAD).await.is_ok(),
        "still alive"
    );

    let ok = session.seal_request(now(), REVOKE).unwrap();
    let r = client
        .connection()
        .send(
            Method::POST,
            "/session/revoke",
            &purchase_headers(&kid, &ok.idempotency_key, "OWNER"),
            ok.envelope.clone(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert!(r.header("server-timing").is_some());
    assert_401(client.purchase(&session, PAYLOAD).await);
    // revoking again, or replaying the revocation: the session is gone
    let r = client
        .connection()
        .send(
            Method::POST,
            "/session/revoke",
            &purchase_headers(&kid, &ok.idempotency_key, "OWNER"),
            ok.envelope,
        )
        .await
        .unwrap();
    assert_code(&r, 401, "SESSION_EXPIRED");
}
