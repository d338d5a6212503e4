//! `POST /transaction/purchase`, the encrypted exchange: the answer, refusals, concurrency, expiry, a full nonce store.

use hyper::Method;
use session_crypto_client::FlowError;
use std::time::Duration;

use crate::helpers::*;
use crate::support::*;

#[tokio::test]
async fn purchase_success_shape() {
    let server = Server::start(&[]);
    let (mut client, session) = established(&server, "NODE_CLIENT").await;
    let sealed = session
        .seal_request(now(), br#"{"schemeCode":"TEST","amount":12.50}"#)
        .unwrap();
    let resp = client
        .connection()
        .send(
            Method::POST,
            "/transaction/purchase",
            &purchase_headers(session.kid(), &sealed.idempotency_key, "NODE_CLIENT"),
            sealed.envelope.clone(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(resp.header("x-kid"), Some(session.kid()));
    let rkey = resp.header("x-idempotency-key").unwrap();
    let parsed = domain::IdempotencyKey::parse(rkey).unwrap();
    assert!(parsed.timestamp_ms().abs_diff(now()) < 5_000);
    assert_ne!(rkey, sealed.idempotency_key, "fresh response key");
    let st = resp.header("server-timing").unwrap();
    for step in [
        "db-get",
        "aad-build",
        "aes-gcm-decrypt",
        "replay-protection",
        "aes-gcm-encrypt",
        "total",
    ] {
        assert!(st.contains(&format!("{step};dur=")), "{st}");
    }
    let head = domain::client::ResponseHead {
        status: 200,
        idempotency_key: rkey,
        content_type: "",
    };
    let plain = session
        .open_response(
            &sealed,
            head,
            resp.body.to_vec(),
            now(),
            &domain::ReplayPolicy::DEFAULT,
        )
        .unwrap();
    let text = String::from_utf8(plain.to_vec()).unwrap();
    assert!(
        text.contains(r#""amount":12.50,"#),
        "amount echoed as sent: {text}"
    );
    assert!(text.contains(r#""schemeCode":"TEST""#));
}

#[tokio::test]
async fn purchase_rejections() {
    let server = Server::start(&[]);
    let crypto = server.crypto;
    let (mut client, session) = established(&server, "OWNER").await;
    let conn = client.connection();
    let kid = session.kid().to_owned();
    let sealed = session.seal_request(now(), PAYLOAD).unwrap();
    let k = sealed.idempotency_key.as_str();
    let env = sealed.envelope.clone();

    // (what, headers, body, status, error code)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "no X-Kid",
            vec![
                ("x-idempotency-key", k.into()),
                ("x-clientid", "OWNER".into()),
            ],
            env.clone(),
            400,
            "CRYPTO_ERROR",
        ),
        (
            "no key",
            vec![("x-kid", kid.clone()), ("x-clientid", "OWNER".into())],
            env.clone(),
            400,
            "CRYPTO_ERROR",
        ),
        (
            "no client",
            vec![("x-kid", kid.clone()), ("x-idempotency-key", k.into())],
            env.clone(),
            400,
            "CRYPTO_ERROR",
        ),
        (
            "kid without prefix",
            vec![
                ("x-kid", kid[8..].into()),
                ("x-idempotency-key", k.into()),
                ("x-clientid", "OWNER".into()),
            ],
            env.clone(),
            400,
            "CRYPTO_ERROR",
        ),
        (
            "empty session part",
            vec![
                ("x-kid", "session:".into()),
                ("x-idempotency-key", k.into()),
                ("x-clientid", "OWNER".into()),
            ],
            env.clone(),
            400,
            "CRYPTO_ERROR",
        ),
        (
            "malformed session id",
            vec![
                ("x-kid", "session:S-nothex".into()),
                ("x-idempotency-key", k.into()),
                ("x-clientid", "OWNER".into()),
            ],
            env.clone(),
            401,
            "SESSION_EXPIRED",
        ),
        (
            "path-like session id",
            vec![
                ("x-kid", "session:../../etc".into()),
                ("x-idempotency-key", k.into()),
                ("x-clientid", "OWNER".into()),
            ],
            env.clone(),
            401,
            "SESSION_EXPIRED",
        ),
        (
            "unknown session",
            vec![
                ("x-kid", "session:S-00000000000000000000000000000000".into()),
                ("x-idempotency-key", k.into()),
                ("x-clientid", "OWNER".into()),
            ],
            env.clone(),
            401,
            "SESSION_EXPIRED",
        ),
        (
            "27-byte body",
            vec![
                ("x-kid", kid.clone()),
                ("x-idempotency-key", k.into()),
                ("x-clientid", "OWNER".into()),
            ],
            vec![0; 27],
            400,
            "CRYPTO_ERROR",
        ),
        (
            "wrong client id",
            vec![
                ("x-kid", kid.clone()),
                ("x-idempotency-key", k.into()),
                ("x-clientid", "THIEF".into()),
            ],
            env.clone(),
            400,
            "CRYPTO_ERROR",
        ),
        (
            "other timestamp than sealed",
            vec![
                ("x-kid", kid.clone()),
                (
                    "x-idempotency-key",
                    format!("{}{}", &k[..12], (k.as_bytes()[12] - b'0' + 1) % 10) + &k[13..],
                ),
                ("x-clientid", "OWNER".into()),
            ],
            env.clone(),
            400,
            "CRYPTO_ERROR",
        ),
        (
            "outside window",
            vec![
                ("x-kid", kid.clone()),
                ("x-idempotency-key", idem_at(now() - 400_000)),
                ("x-clientid", "OWNER".into()),
            ],
            env.clone(),
            400,
            "CRYPTO_ERROR",
        ),
    ];
    for (what, headers, body, status, code) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (*a, b.as_str())).collect();
        let resp = conn
            .send(Method::POST, "/transaction/purchase", &headers, body)
            .await
            .unwrap();
        assert_eq!(resp.status.as_u16(), status, "{what}");
        assert_code(&resp, status, code);
    }
    for i in [0, 12, env.len() - 1] {
        let mut tampered = env.clone();
        tampered[i] ^= 1;
        let resp = conn
            .send(
                Method::POST,
                "/transaction/purchase",
                &purchase_headers(&kid, k, "OWNER"),
                tampered,
            )
            .await
            .unwrap();
        assert_code(&resp, 400, "CRYPTO_ERROR");
    }
    // none of the failures consumed the nonce: the genuine request still succeeds, once
    let resp = conn
        .send(
            Method::POST,
            "/transaction/purchase",
            &purchase_headers(&kid, k, "OWNER"),
            env.clone(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let replay = conn
        .send(
            Method::POST,
            "/transaction/purchase",
            &purchase_headers(&kid, k, "OWNER"),
            env,
        )
        .await
        .unwrap();
    assert_code(&replay, 400, "CRYPTO_ERROR");

    // well-encrypted but unacceptable payloads
    for payload in [
        &b"not json"[..],
        b"[]",
        br#"{"amount":5000}"#,
        br#"{"schemeCode":"AEF"}"#,
        br#"{"schemeCode":"AEF","amount":"5000"}"#,
        br#"{"schemeCode":"AEF","amount":0}"#,
        br#"{"schemeCode":"","amount":1}"#,
        br#"{"schemeCode":5,"amount":1}"#,
        br#"{"schemeCode":"AEF","amount":1e308}"#,
        br#"{"schemeCode":"A\u0000F","amount":1}"#,
        br#"{"schemeCode":"A\nF","amount":1}"#,
        b"",
    ] {
        let sealed = session.seal_request(now(), payload).unwrap();
        let resp = conn
            .send(
                Method::POST,
                "/transaction/purchase",
                &purchase_headers(&kid, &sealed.idempotency_key, "OWNER"),
                sealed.envelope,
            )
            .await
            .unwrap();
        assert_code(&resp, 400, "CRYPTO_ERROR");
    }
    let _ = crypto;
}

#[tokio::test]
async fn sixteen_simultaneous_copies_of_one_purchase_succeed_exactly_once() {
    let server = Server::start(&[]);
    let (_, session) = established(&server, "RACE").await;
    let sealed = session.seal_request(now(), PAYLOAD).unwrap();
    let mut conns = Vec::new();
    for _ in 0..16 {
        conns.push(server.connect().await);
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (kid, key, env) = (
                session.kid().to_owned(),
                sealed.idempotency_key.clone(),
                sealed.envelope.clone(),
            );
            tokio::spawn(async move {
                conn.send(
                    Method::POST,
                    "/transaction/purchase",
                    &purchase_headers(&kid, &key, "RACE"),
                    env,
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let resp = t.await.unwrap();
        match resp.status.as_u16() {
            200 => ok += 1,
            _ => assert_code(&resp, 400, "CRYPTO_ERROR"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn expired_sessions_answer_401() {
    let server = Server::start(&[
        ("SESSION_TTL_MIN_SEC", "1"),
        ("SESSION_TTL_DEFAULT_SEC", "1"),
    ]);
    let mut client = server.client("C").await;
    let (session, _) = client.init(INIT, Some(1)).await.unwrap();
    assert!(client.purchase(&session, PAYLOAD).await.is_ok());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_401(client.purchase(&session, PAYLOAD).await);
}

#[tokio::test]
async fn full_nonce_store_fails_closed_per_family() {
    // One client id may fill it all here: the point is the full store's answers.
    let server = Server::start(&[
        ("MEMORY_NONCE_MAX_SIZE", "2"),
        ("MEMORY_NONCE_CLIENT_SHARE_PERCENT", "100"),
    ]);
    let mut client = server.client("C").await;
    let (session, _) = client.init(INIT, None).await.unwrap(); // nonce 1
    assert!(client.purchase(&session, PAYLOAD).await.is_ok()); // nonce 2
    let mut conn = server.connect().await;
    let crypto = server.crypto;
    let key = idem(crypto);
    let body = init_body(&fresh_public_key(crypto));
    assert_code(
        &post_init(
            &mut conn,
            "/session/init",
            &init_headers(&key, "C"),
            body.clone(),
        )
        .await,
        400,
        "CRYPTO_ERROR",
    );
    assert_identity(
        &post_init(
            &mut conn,
            "/v1/session/init",
            &init_headers(&key, "C"),
            body,
        )
        .await,
        503,
    );
    match client.purchase(&session, PAYLOAD).await {
        Err(FlowError::Status { status, .. }) => assert_eq!(status, 400),
        other => panic!("expected 400, got {other:?}"),
    }
}
