//! The `/v1` identity family: init semantics and the internal key release.

use hyper::Method;
use session_crypto_client::{Connection, Endpoint};

use crate::helpers::*;
use crate::support::*;

#[tokio::test]
async fn v1_init_identity_semantics() {
    let server = Server::start(&[]);
    let crypto = server.crypto;
    let mut conn = server.connect().await;
    let key = idem(crypto);
    let resp = post_init(
        &mut conn,
        "/v1/session/init",
        &init_headers(&key, "C"),
        init_body(&fresh_public_key(crypto)),
    )
    .await;
    assert_eq!(resp.status, 200);
    let v = json(&resp);
    assert_eq!(v["encAlg"], "aes-256-gcm");
    assert_eq!(v["expiresInSec"], 1800, "ttlSec is ignored on /v1");
    assert_eq!(
        resp.header("x-kid"),
        v["sessionId"].as_str(),
        "bare session id"
    );
    // Authorization is ignored unless upstream auth is trusted
    let key = idem(crypto);
    let mut h = init_headers(&key, "C");
    h.push(("authorization", "Bearer whatever"));
    let resp = post_init(
        &mut conn,
        "/v1/session/init",
        &h,
        init_body(&fresh_public_key(crypto)),
    )
    .await;
    assert_eq!(json(&resp)["expiresInSec"], 1800);
    // identity-shaped errors
    let pk = fresh_public_key(crypto);
    assert_identity(
        &post_init(
            &mut conn,
            "/v1/session/init",
            &[("x-clientid", "C")],
            init_body(&pk),
        )
        .await,
        400,
    );
    let key = idem(crypto);
    assert_identity(
        &post_init(
            &mut conn,
            "/v1/session/init",
            &[("x-idempotency-key", &key)],
            init_body(&pk),
        )
        .await,
        400,
    );
    assert_identity(
        &post_init(&mut conn, "/v1/session/init", &init_headers(&key, "C"), "{").await,
        400,
    );
    assert_identity(
        &post_init(
            &mut conn,
            "/v1/session/init",
            &init_headers(&key, "C"),
            r#"{"clientPublicKey":"AAAA"}"#,
        )
        .await,
        400,
    );
    let trusted = Server::start(&[("TRUST_UPSTREAM_AUTH", "true")]);
    let mut conn = trusted.connect().await;
    let key = idem(crypto);
    let mut h = init_headers(&key, "C");
    h.push(("authorization", "Bearer verified-upstream"));
    assert_eq!(
        json(&post_init(&mut conn, "/v1/session/init", &h, init_body(&pk)).await)["expiresInSec"],
        3600
    );
}

#[tokio::test]
async fn key_release_only_on_the_internal_listener() {
    let server = Server::start(&[("INTERNAL_PORT", "0")]);
    let internal = server
        .internal_url
        .clone()
        .expect("internal listener announced");
    let (_, session) = established(&server, "OWNER").await;
    let id = session.kid()["session:".len()..].to_owned();
    let path = format!("/v1/session/{id}");
    let mut public = server.connect().await;
    assert_identity(
        &public
            .send(Method::GET, &path, &[("x-clientid", "OWNER")], "")
            .await
            .unwrap(),
        404,
    );

    let mut conn = Connection::open(&Endpoint::parse(&internal).unwrap())
        .await
        .unwrap();
    let resp = conn
        .send(Method::GET, &path, &[("x-clientid", "OWNER")], "")
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let v = json(&resp);
    assert_eq!(v["sessionId"], id.as_str());
    assert_eq!(
        domain::encoding::base64_decode(v["sessionKey"].as_str().unwrap()).unwrap(),
        session.key().expose()
    );
    assert!(v["expiresAt"].as_u64().unwrap() > now());
    assert!(resp.header("access-control-allow-origin").is_none());
    assert_identity(
        &conn
            .send(Method::GET, &path, &[("x-clientid", "OTHER")], "")
            .await
            .unwrap(),
        403,
    );
    assert_identity(&conn.send(Method::GET, &path, &[], "").await.unwrap(), 400);
    assert_identity(
        &conn
            .send(
                Method::GET,
                "/v1/session/S-bad",
                &[("x-clientid", "OWNER")],
                "",
            )
            .await
            .unwrap(),
        400,
    );
    assert_identity(
        &conn
            .send(
                Method::GET,
                "/v1/session/S-00000000000000000000000000000000",
                &[("x-clientid", "OWNER")],
                "",
            )
            .await
            .unwrap(),
        404,
    );
    // the internal listener serves /v1 init but not the unversioned routes
    assert_identity(
        &conn
            .send(Method::POST, "/v1/session/init", &[], "")
            .await
            .unwrap(),
        400,
    );
    assert_code(
        &conn
            .send(Method::POST, "/session/init", &[], "")
            .await
            .unwrap(),
        404,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn a_v1_init_without_a_json_content_type_is_415_and_creates_nothing() {
    let server = Server::start(&[]);
    let crypto = server.crypto;
    let mut conn = server.connect().await;
    let pk = fresh_public_key(crypto);
    let key = idem(crypto);
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut headers = vec![("x-idempotency-key", key.as_str()), ("x-clientid", "V1")];
        if let Some(t) = content_type {
            headers.push(("content-type", t));
        }
        let r = post_init(&mut conn, "/v1/session/init", &headers, init_body(&pk)).await;
        assert_identity(&r, 415);
    }
    // Nothing was created and the nonce is still unused: the same key with JSON works.
    let mut headers = init_headers(&key, "V1");
    headers[0] = ("content-type", "application/json; charset=utf-8");
    let r = post_init(&mut conn, "/v1/session/init", &headers, init_body(&pk)).await;
    assert_eq!(r.status, 200);
    // The unversioned route stays lenient.
    let key = idem(crypto);
    let headers = [("x-idempotency-key", key.as_str()), ("x-clientid", "V1")];
    let r = post_init(&mut conn, "/session/init", &headers, init_body(&pk)).await;
    assert_eq!(r.status, 200);
}
