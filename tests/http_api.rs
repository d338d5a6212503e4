//! End-to-end tests: the real binary on a random port, driven over HTTP by the
//! project's own client (PROTOCOL.md §5.1, §5.2, §5.5, §8 and the §14 fixes).

mod support;

use std::time::Duration;

use domain::client::ClientSession;
use http_adapter::client::{Connection, Endpoint, FlowError, InitRoute};
use hyper::Method;
use support::*;

fn init_headers<'a>(key: &'a str, client: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("content-type", "application/json"),
        ("x-idempotency-key", key),
        ("x-clientid", client),
    ]
}

fn init_body(pk: &[u8]) -> String {
    format!(r#"{{"clientPublicKey":"{}","ttlSec":1800}}"#, b64(pk))
}

#[tokio::test]
async fn every_backend_serves_both_init_routes_and_purchase() {
    for crypto in backends() {
        let server = Server::start_with(crypto, &[]);
        let mut client = server.client("RUST_CLIENT").await;
        for route in [InitRoute::Unversioned, InitRoute::V1] {
            let (session, init) = client.init(route, None).await.unwrap();
            assert!(
                init.server_timing
                    .as_deref()
                    .is_some_and(|t| t.contains("ecdh-keygen;dur=") && t.contains("total;dur="))
            );
            let (plain, purchase) = client.purchase(&session, PAYLOAD).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
            assert_eq!(v["status"], "SUCCESS", "{}", crypto.name);
            assert_eq!(v["schemeCode"], "AEF");
            assert_eq!(v["amount"], 5000);
            let txn = v["transactionId"].as_str().unwrap();
            assert!(
                txn.len() == 20
                    && txn.starts_with("TXN-")
                    && txn[4..]
                        .bytes()
                        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            );
            // field order on the wire is the §9 order
            let text = String::from_utf8_lossy(&plain);
            let positions: Vec<usize> = [
                "status",
                "transactionId",
                "schemeCode",
                "amount",
                "timestamp",
                "message",
            ]
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
            assert!(
                purchase
                    .server_timing
                    .unwrap()
                    .contains("aes-gcm-decrypt;dur=")
            );
        }
        let mut conn = server.connect().await;
        let health = conn.send(Method::GET, "/health", &[], "").await.unwrap();
        assert_eq!(health.status, 200);
        let h = json(&health);
        assert_eq!(h["cryptoBackend"], crypto.name);
        assert_eq!(h["status"], "ok");
        assert_eq!(h["redis"], "disabled");
    }
}

#[tokio::test]
async fn init_success_shape_and_ttl_rules() {
    let server = Server::start(&[]);
    let crypto = server.crypto;
    let mut conn = server.connect().await;
    let cases: [(&str, u16, Option<u64>); 8] = [
        ("", 200, Some(1800)),
        (r#","ttlSec":0"#, 200, Some(300)),
        (r#","ttlSec":1800.0"#, 200, Some(1800)),
        (r#","ttlSec":99999999"#, 200, Some(3600)),
        (r#","ttlSec":"1800""#, 400, None),
        (r#","ttlSec":null"#, 400, None),
        (r#","ttlSec":1.5"#, 400, None),
        (r#","ttlSec":-1"#, 400, None),
    ];
    for (extra, status, ttl) in cases {
        let key = idem(crypto);
        let body = format!(
            r#"{{"clientPublicKey":"{}"{extra}}}"#,
            b64(&fresh_public_key(crypto))
        );
        let resp = post_init(&mut conn, "/session/init", &init_headers(&key, "C"), body).await;
        if status == 200 {
            assert_eq!(resp.status, 200, "{extra}: {:?}", resp.body);
            assert_eq!(resp.header("content-type"), Some("application/json"));
            assert!(
                resp.header("x-kid").is_none(),
                "unversioned init has no X-Kid"
            );
            assert!(resp.header("server-timing").is_some());
            let v = json(&resp);
            assert_eq!(v["expiresInSec"], ttl.unwrap(), "{extra}");
            assert_eq!(v["encAlg"], "A256GCM");
            let sid = v["sessionId"].as_str().unwrap();
            assert!(domain::SessionId::parse(sid).is_some(), "{sid}");
            let spk =
                domain::encoding::base64_decode(v["serverPublicKey"].as_str().unwrap()).unwrap();
            assert!(domain::p256::validate_public_key(&spk).is_ok());
            assert!(
                v["serverPublicKey"].as_str().unwrap().ends_with('='),
                "padded base64"
            );
        } else {
            assert_code(&resp, status, "CRYPTO_ERROR");
        }
    }
}

/// A valid public key written in the URL-safe alphabet (one whose standard base64 has a
/// `+` or `/` to replace, so the text really differs).
fn url_safe_key_text(crypto: ports::CryptoProvider) -> String {
    loop {
        let text = b64(&fresh_public_key(crypto));
        if text.contains(['+', '/']) {
            return text.replace('+', "-").replace('/', "_");
        }
    }
}

#[tokio::test]
async fn init_rejections_are_generic_json_400s() {
    let server = Server::start(&[]);
    let crypto = server.crypto;
    let mut conn = server.connect().await;
    let pk = fresh_public_key(crypto);
    let mut off_curve = pk.clone();
    off_curve[64] ^= 1;
    // SEC1 hybrid form: valid coordinates, prefix 0x06/0x07. aws-lc-rs would accept it
    // in agreement; the protocol does not (found by the init_request fuzz target).
    let mut hybrid = pk.clone();
    hybrid[0] = 6 + (pk[64] & 1);
    let mut compressed = vec![2 + (pk[64] & 1)];
    compressed.extend_from_slice(&pk[1..33]);
    let good = init_body(&pk);
    let bodies: Vec<(&str, String)> = vec![
        ("malformed JSON", "{\"clientPublicKey\":".into()),
        ("empty body", String::new()),
        ("JSON array", format!(r#"["{}"]"#, b64(&pk))),
        ("missing key", r#"{"ttlSec":1800}"#.into()),
        ("empty key", r#"{"clientPublicKey":""}"#.into()),
        ("key not a string", r#"{"clientPublicKey":5}"#.into()),
        (
            "url-safe base64",
            format!(r#"{{"clientPublicKey":"{}"}}"#, url_safe_key_text(crypto)),
        ),
        ("not base64", r#"{"clientPublicKey":"!!!!"}"#.into()),
        ("64 bytes", init_body(&pk[..64])),
        ("compressed point", init_body(&compressed)),
        ("hybrid point (0x06/0x07)", init_body(&hybrid)),
        ("off-curve point", init_body(&off_curve)),
        (
            "all-zero point",
            init_body(&[&[4u8][..], &[0; 64]].concat()),
        ),
        (
            "duplicate field",
            format!(
                r#"{{"clientPublicKey":"{0}","clientPublicKey":"{0}"}}"#,
                b64(&pk)
            ),
        ),
    ];
    for (what, body) in bodies {
        let key = idem(crypto);
        let resp = post_init(&mut conn, "/session/init", &init_headers(&key, "C"), body).await;
        assert_eq!(resp.status, 400, "{what}");
        assert_code(&resp, 400, "CRYPTO_ERROR");
    }
    let now = now();
    let header_cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no idempotency key", vec![("x-clientid", "C".into())]),
        (
            "empty idempotency key",
            vec![
                ("x-idempotency-key", String::new()),
                ("x-clientid", "C".into()),
            ],
        ),
        ("no client id", vec![("x-idempotency-key", idem(crypto))]),
        (
            "empty nonce",
            vec![
                ("x-idempotency-key", format!("{now}.")),
                ("x-clientid", "C".into()),
            ],
        ),
        (
            "short nonce",
            vec![
                ("x-idempotency-key", format!("{now}.abc")),
                ("x-clientid", "C".into()),
            ],
        ),
        (
            "three parts",
            vec![
                ("x-idempotency-key", format!("{}.x", idem(crypto))),
                ("x-clientid", "C".into()),
            ],
        ),
        (
            "lenient timestamp",
            vec![
                ("x-idempotency-key", format!("{now}abc.{}", uuid_like())),
                ("x-clientid", "C".into()),
            ],
        ),
        (
            "pipe in client id",
            vec![
                ("x-idempotency-key", idem(crypto)),
                ("x-clientid", "A|B".into()),
            ],
        ),
        (
            "window -301 s",
            vec![
                ("x-idempotency-key", idem_at(now - 301_000)),
                ("x-clientid", "C".into()),
            ],
        ),
        (
            "window +301 s",
            vec![
                ("x-idempotency-key", idem_at(now + 301_000)),
                ("x-clientid", "C".into()),
            ],
        ),
    ];
    for (what, headers) in header_cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = post_init(&mut conn, "/session/init", &headers, good.clone()).await;
        assert_eq!(resp.status, 400, "{what}");
        assert_code(&resp, 400, "CRYPTO_ERROR");
    }
    for ts in [now - 299_000, now + 299_000] {
        let key = idem_at(ts);
        let resp = post_init(
            &mut conn,
            "/session/init",
            &init_headers(&key, "C"),
            good.clone(),
        )
        .await;
        assert_eq!(resp.status, 200, "just inside the window ({ts} vs {now})");
    }
}

#[tokio::test]
async fn init_replay_is_refused_per_client_and_bad_requests_burn_no_nonce() {
    let server = Server::start(&[]);
    let crypto = server.crypto;
    let mut conn = server.connect().await;
    let key = idem(crypto);
    let pk = fresh_public_key(crypto);
    let mut off = pk.clone();
    off[64] ^= 1;
    // an invalid request first: it must not consume the nonce
    assert_code(
        &post_init(
            &mut conn,
            "/session/init",
            &init_headers(&key, "A"),
            init_body(&off),
        )
        .await,
        400,
        "CRYPTO_ERROR",
    );
    assert_eq!(
        post_init(
            &mut conn,
            "/session/init",
            &init_headers(&key, "A"),
            init_body(&pk)
        )
        .await
        .status,
        200
    );
    assert_code(
        &post_init(
            &mut conn,
            "/session/init",
            &init_headers(&key, "A"),
            init_body(&pk),
        )
        .await,
        400,
        "CRYPTO_ERROR",
    );
    // nonces are scoped per client id
    assert_eq!(
        post_init(
            &mut conn,
            "/session/init",
            &init_headers(&key, "B"),
            init_body(&pk)
        )
        .await
        .status,
        200
    );
    // on /v1 a replay is 409
    assert_identity(
        &post_init(
            &mut conn,
            "/v1/session/init",
            &init_headers(&key, "A"),
            init_body(&pk),
        )
        .await,
        409,
    );
}

#[tokio::test]
async fn body_limits_and_content_types() {
    let server = Server::start(&[]);
    let crypto = server.crypto;
    let mut conn = server.connect().await;
    let key = idem(crypto);
    let big = vec![b' '; 2 * 1024 * 1024];
    assert_code(
        &post_init(
            &mut conn,
            "/session/init",
            &init_headers(&key, "C"),
            big.clone(),
        )
        .await,
        413,
        "PAYLOAD_TOO_LARGE",
    );
    let mut conn = server.connect().await;
    assert_identity(
        &post_init(
            &mut conn,
            "/v1/session/init",
            &init_headers(&key, "C"),
            big.clone(),
        )
        .await,
        413,
    );
    let mut conn = server.connect().await;
    let purchase_headers = [
        ("x-kid", "session:S-000102030405060708090a0b0c0d0e0f"),
        ("x-idempotency-key", key.as_str()),
        ("x-clientid", "C"),
    ];
    assert_code(
        &conn
            .send(
                Method::POST,
                "/transaction/purchase",
                &purchase_headers,
                big,
            )
            .await
            .unwrap(),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    // a missing or odd Content-Type is not a framework 415: the JSON body is what counts
    let mut conn = server.connect().await;
    let body = init_body(&fresh_public_key(crypto));
    let key = idem(crypto);
    let resp = post_init(
        &mut conn,
        "/session/init",
        &[("x-idempotency-key", &key), ("x-clientid", "C")],
        body.clone(),
    )
    .await;
    assert_eq!(resp.status, 200);
    let key = idem(crypto);
    let resp = post_init(
        &mut conn,
        "/session/init",
        &[
            ("content-type", "text/plain"),
            ("x-idempotency-key", &key),
            ("x-clientid", "C"),
        ],
        body,
    )
    .await;
    assert_eq!(resp.status, 200);
}

async fn established(
    server: &Server,
    client_id: &str,
) -> (http_adapter::client::ProtocolClient, ClientSession) {
    let mut client = server.client(client_id).await;
    let (session, _) = client.init(INIT, None).await.unwrap();
    (client, session)
}

fn purchase_headers<'a>(kid: &'a str, key: &'a str, client: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("content-type", "application/octet-stream"),
        ("x-kid", kid),
        ("x-idempotency-key", key),
        ("x-clientid", client),
    ]
}

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
            sealed.envelope,
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
    let plain = session
        .open_response(
            rkey,
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
async fn full_nonce_store_fails_closed_per_family() {
    let server = Server::start(&[("MEMORY_NONCE_MAX_SIZE", "2")]);
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
async fn cors_and_unknown_routes() {
    let server = Server::start(&[]);
    let mut conn = server.connect().await;
    let pre = conn
        .send(
            Method::OPTIONS,
            "/transaction/purchase",
            &[
                ("origin", "http://spa.example"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await
        .unwrap();
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("http://spa.example")
    );
    let allowed = pre
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in ["content-type", "x-idempotency-key", "x-clientid", "x-kid"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    let (mut client, session) = established(&server, "SPA").await;
    let sealed = session.seal_request(now(), PAYLOAD).unwrap();
    let mut h = purchase_headers(session.kid(), &sealed.idempotency_key, "SPA").to_vec();
    h.push(("origin", "http://spa.example"));
    let resp = client
        .connection()
        .send(Method::POST, "/transaction/purchase", &h, sealed.envelope)
        .await
        .unwrap();
    let exposed = resp.header("access-control-expose-headers").unwrap();
    for e in ["Server-Timing", "X-Kid", "X-Idempotency-Key"] {
        assert!(exposed.contains(e), "{exposed}");
    }
    assert_code(
        &conn.send(Method::GET, "/nope", &[], "").await.unwrap(),
        404,
        "NOT_FOUND",
    );
    let r = conn
        .send(Method::GET, "/session/init", &[], "")
        .await
        .unwrap();
    assert_code(&r, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("POST"));

    let restricted = Server::start(&[("CORS_ORIGINS", "https://good.example")]);
    let mut conn = restricted.connect().await;
    let good = conn
        .send(
            Method::OPTIONS,
            "/session/init",
            &[("origin", "https://good.example")],
            "",
        )
        .await
        .unwrap();
    assert_eq!(
        good.header("access-control-allow-origin"),
        Some("https://good.example")
    );
    let bad = conn
        .send(
            Method::OPTIONS,
            "/session/init",
            &[("origin", "https://evil.example")],
            "",
        )
        .await
        .unwrap();
    assert!(bad.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn ready_reports_embedded_stores() {
    let server = Server::start(&[]);
    let mut conn = server.connect().await;
    let r = conn.send(Method::GET, "/ready", &[], "").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["status"], "ready");
}

#[test]
fn start_up_refuses_unsafe_or_impossible_settings() {
    let backend = ("CRYPTO_BACKEND", default_backend().name);
    let (code, err) = run_to_exit(&["serve"], &[backend, ("NONCE_TTL_SEC", "300")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("NONCE_TTL_SEC") && err.contains("twice"),
        "{err}"
    );
    let (code, err) = run_to_exit(&["serve"], &[("CRYPTO_BACKEND", "openssl")]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown CRYPTO_BACKEND"), "{err}");
    let (code, err) = run_to_exit(&["serve"], &[backend, ("SESSION_TTL_MIN_SEC", "4000")]);
    assert_eq!(code, 1);
    assert!(err.contains("SESSION_TTL_MIN_SEC"), "{err}");
    if backends().len() > 2 {
        // ambiguous: several backends compiled in, none chosen
        let (code, err) = run_to_exit(&["serve"], &[]);
        assert_eq!(code, 1);
        assert!(err.contains("choose one with CRYPTO_BACKEND"), "{err}");
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let server = Server::start(&[]);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_lets_in_flight_requests_finish_and_refuses_new_connections() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let server = Server::start(&[("SHUTDOWN_TIMEOUT_MS", "5000")]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let crypto = server.crypto;
    let body = init_body(&fresh_public_key(crypto));
    let head = format!(
        "POST /session/init HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         x-idempotency-key: {}\r\nx-clientid: C\r\ncontent-length: {}\r\n\r\n",
        idem(crypto),
        body.len()
    );
    // A request in flight: headers and half of the body sent.
    let mut stream = TcpStream::connect(&addr).unwrap();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.signal_term();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        TcpStream::connect(&addr).is_err(),
        "no new connections after SIGTERM"
    );
    // The rest of the body, half a second after SIGTERM: answered in full.
    stream.write_all(rest).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("\"sessionId\":\"S-"), "{answer}");
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn independent_webcrypto_client_interoperates_with_every_backend() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/interop/client.mjs");
    for crypto in backends() {
        let server = Server::start_with(crypto, &[]);
        let out = std::process::Command::new("node")
            .arg(script)
            .arg(&server.url)
            .output()
            .expect("node is installed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}\n{}",
            crypto.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("\"status\":\"SUCCESS\""), "{stdout}");
    }
}

#[test]
fn silent_and_idle_connections_are_closed_after_the_header_timeout() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;
    let server = Server::start(&[("HEADER_READ_TIMEOUT_MS", "500")]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let wait_for_close = |mut s: TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return started.elapsed(),
                Ok(_) => continue, // a response we asked for
                Err(e) => panic!("connection still open after {:?}: {e}", started.elapsed()),
            }
        }
    };
    // a client that connects and never sends a byte (slowloris)
    let silent = wait_for_close(TcpStream::connect(&addr).unwrap());
    assert!(silent < Duration::from_secs(3), "{silent:?}");
    // a keep-alive connection left idle after one request
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let idle_for = wait_for_close(idle);
    assert!(idle_for < Duration::from_secs(3), "{idle_for:?}");
}

#[tokio::test]
async fn revocation_ends_a_session_and_needs_the_key() {
    let server = Server::start(&[]);
    let (mut client, session) = established(&server, "OWNER").await;
    let kid = session.kid().to_owned();
    // a tampered revocation, or one from another client id, changes nothing
    let mut bad = session.seal_request(now(), b"{}").unwrap();
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
    let other = session.seal_request(now(), b"{}").unwrap();
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

    let ok = session.seal_request(now(), b"{}").unwrap();
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

#[tokio::test]
async fn two_thousand_idle_connections_do_not_starve_real_clients() {
    let server = Server::start(&[]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let started = std::time::Instant::now();
    let mut client = server.client("REAL").await;
    for _ in 0..5 {
        let (session, _) = client.init(INIT, None).await.unwrap();
        client.purchase(&session, PAYLOAD).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
}

#[test]
fn a_header_trickled_one_byte_at_a_time_is_cut_off() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;
    let server = Server::start(&[("HEADER_READ_TIMEOUT_MS", "1000")]);
    let mut s = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    let started = Instant::now();
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = false;
    for byte in request {
        if s.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    if !closed {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        // either closed outright or answered with an error, but never served the request
        assert!(
            n == 0 || !buf[..n].starts_with(b"HTTP/1.1 200"),
            "served after {:?}",
            started.elapsed()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "still reading after {:?}",
        started.elapsed()
    );
}

fn assert_401(result: Result<(Vec<u8>, http_adapter::client::StepTimings), FlowError>) {
    match result {
        Err(FlowError::Status { status, body, .. }) => {
            assert_eq!(status, 401);
            assert_eq!(body, r#"{"error":"SESSION_EXPIRED"}"#);
        }
        other => panic!("expected 401 SESSION_EXPIRED, got {other:?}"),
    }
}

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
async fn openapi_and_the_browser_demo_are_served() {
    let server = Server::start(&[]);
    let mut conn = server.connect().await;
    let r = conn
        .send(Method::GET, "/openapi.json", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let spec = json(&r);
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(spec["paths"]["/transaction/purchase"]["post"].is_object());
    let page = conn.send(Method::GET, "/", &[], "").await.unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = String::from_utf8_lossy(&page.body).into_owned();
    assert!(html.contains(r#"<script src="/demo.js"></script>"#));
    let script = conn.send(Method::GET, "/demo.js", &[], "").await.unwrap();
    assert_eq!(script.status, 200);
    assert!(String::from_utf8_lossy(&script.body).contains("crypto.subtle"));
    // Not on the internal listener.
    let server = Server::start(&[("INTERNAL_PORT", "0")]);
    let internal = server.internal_url.clone().unwrap();
    let mut conn = Connection::open(&Endpoint::parse(&internal).unwrap())
        .await
        .unwrap();
    let r = conn.send(Method::GET, "/", &[], "").await.unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_demo_runs_in_headless_chromium() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser"));
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (scripts/test.sh does)"
    );
    let server = Server::start(&[]);
    // The screenshot is kept as a test artefact.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-demo.png");
    let _ = std::fs::remove_file(&shot);
    let (script, url, shot_arg) = (
        dir.join("demo.mjs"),
        format!("{}/", server.url),
        shot.clone(),
    );
    // The page waits at most 30 s for the answer; the browser then exits on its own.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .arg(url)
            .arg(shot_arg)
            .env("CHROMIUM_PATH", &chromium)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(page["statusClass"], "ok", "{page}");
    assert_eq!(page["problems"], serde_json::json!([]), "{page}");
    let txn = page["transactionId"].as_str().unwrap();
    assert!(
        txn.len() == 20
            && txn.starts_with("TXN-")
            && txn[4..].bytes().all(|b| b.is_ascii_hexdigit()),
        "decrypted transaction id shown: {txn:?}"
    );
    let response: serde_json::Value =
        serde_json::from_str(page["response"].as_str().unwrap()).unwrap();
    assert_eq!(response["status"], "SUCCESS");
    assert_eq!(response["amount"], 5000);
    let steps: Vec<&str> = page["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap().trim())
        .collect();
    for step in [
        "ECDH key generation",
        "POST /session/init",
        "ecdh-compute",
        "ECDH + HKDF-SHA256",
        "AES-256-GCM encrypt",
        "POST /transaction/purchase",
        "aes-gcm-decrypt",
        "AES-256-GCM decrypt",
        "total",
    ] {
        assert!(
            steps.contains(&step),
            "timing row {step:?} missing: {steps:?}"
        );
    }
    let png = std::fs::read(&shot).expect("screenshot saved");
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
}

/// The value of the sample `name{labels}` in Prometheus text, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_on_the_admin_listener_count_requests_rejections_and_sessions() {
    let server = Server::start(&[("ADMIN_PORT", "0")]);
    let (mut client, session) = established(&server, "C").await;
    client.purchase(&session, PAYLOAD).await.unwrap();
    // A replay, a forged envelope and an unknown route.
    let sealed = session.seal_request(now(), PAYLOAD).unwrap();
    let headers = purchase_headers(session.kid(), &sealed.idempotency_key, "C");
    let conn = client.connection();
    for _ in 0..2 {
        conn.send(
            Method::POST,
            "/transaction/purchase",
            &headers,
            sealed.envelope.clone(),
        )
        .await
        .unwrap();
    }
    let mut forged = session.seal_request(now(), PAYLOAD).unwrap();
    *forged.envelope.last_mut().unwrap() ^= 1;
    let headers = purchase_headers(session.kid(), &forged.idempotency_key, "C");
    conn.send(
        Method::POST,
        "/transaction/purchase",
        &headers,
        forged.envelope,
    )
    .await
    .unwrap();
    conn.send(Method::GET, "/no/such/route", &[], "")
        .await
        .unwrap();
    // Metrics are not on the public listener.
    let r = conn.send(Method::GET, "/metrics", &[], "").await.unwrap();
    assert_eq!(r.status, 404);

    let text = server.metrics().await;
    let count =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
    assert_eq!(
        count(r#"http_requests_total{listener="public",route="/session/init",status="200"}"#),
        1.0
    );
    assert_eq!(
        count(
            r#"http_requests_total{listener="public",route="/transaction/purchase",status="200"}"#
        ),
        2.0
    );
    assert_eq!(
        count(
            r#"http_requests_total{listener="public",route="/transaction/purchase",status="400"}"#
        ),
        2.0
    );
    assert_eq!(
        count(r#"http_requests_total{listener="public",route="unmatched",status="404"}"#),
        2.0
    );
    assert_eq!(
        count(r#"session_crypto_rejections_total{route="/transaction/purchase",reason="replay"}"#),
        1.0
    );
    assert_eq!(
        count(
            r#"session_crypto_rejections_total{route="/transaction/purchase",reason="decrypt_failed"}"#
        ),
        1.0
    );
    assert_eq!(
        count(r#"session_crypto_sessions_created_total{family="unversioned"}"#),
        1.0
    );
    assert_eq!(count("session_crypto_nonce_fallback_active"), 0.0);
    // Latency histograms with buckets, per route and status.
    assert_eq!(
        count(
            r#"http_request_duration_seconds_count{listener="public",route="/session/init",status="200"}"#
        ),
        1.0
    );
    assert!(text.contains(r#"http_request_duration_seconds_bucket{listener="public",route="/session/init",status="200",le="0.005"}"#), "{text}");
    assert!(text.contains("# HELP session_crypto_rejections_total"));
}

#[tokio::test]
async fn json_logs_carry_the_request_span_and_its_id() {
    let dir = std::env::temp_dir().join(format!("sc-json-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("server.log");
    let server = Server::start_logging_to(&[("LOG_FORMAT", "json"), ("RUST_LOG", "info")], &log);
    let mut conn = server.connect().await;
    let key = idem(server.crypto);
    let mut headers = init_headers(&key, "C");
    headers.push(("x-request-id", "req-42.a_b"));
    let r = post_init(&mut conn, "/session/init", &headers, "{}").await;
    assert_code(&r, 400, "CRYPTO_ERROR");
    assert_eq!(r.header("x-request-id"), Some("req-42.a_b"));
    // Without one (or with one unsafe to log), the server makes one up.
    for headers in [&[][..], &[("x-request-id", "has space")][..]] {
        let r = conn
            .send(Method::GET, "/health", headers, "")
            .await
            .unwrap();
        let made = r.header("x-request-id").unwrap().to_owned();
        assert!(
            made.len() == 16 && made.bytes().all(|b| b.is_ascii_hexdigit()),
            "{made}"
        );
    }
    drop(server);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let rejected = lines
        .iter()
        .find(|l| l["fields"]["message"] == "rejected")
        .unwrap_or_else(|| panic!("no rejection logged:\n{text}"));
    assert_eq!(rejected["level"], "INFO");
    assert_eq!(rejected["span"]["name"], "request");
    assert_eq!(rejected["span"]["id"], "req-42.a_b");
    assert_eq!(rejected["span"]["route"], "/session/init");
    assert_eq!(rejected["span"]["method"], "POST");
    let _ = std::fs::remove_dir_all(&dir);
}

const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[test]
fn configuration_layers_file_then_environment_then_flags() {
    let dir = std::env::temp_dir().join(format!("sc-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("session-crypto.toml");
    std::fs::write(
        &file,
        format!(
            r#"
# every layer sets some of these
session_ttl_default_sec = 600
SESSION_TTL_MAX_SEC = 3000
nonce_ttl_sec = 700
cors_origins = ["https://a.example", "https://b.example"]
database_url = "postgres://app:hunter2pw@db.example/sc"
session_kek = "{KEK}"
"#
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let backend = default_backend().name;
    let ((code, out), err) = run_to_exit_with_stdout(
        &["check-config", "--config", path, "--nonce-ttl-sec", "900"],
        &[
            ("CRYPTO_BACKEND", backend),
            ("SESSION_TTL_MAX_SEC", "3500"),
            ("NONCE_TTL_SEC", "800"),
        ],
    );
    assert_eq!(code, 0, "{err}\n{out}");
    for line in [
        r#"SESSION_TTL_DEFAULT_SEC = "600"  # file"#,
        r#"SESSION_TTL_MAX_SEC = "3500"  # environment"#,
        r#"NONCE_TTL_SEC = "900"  # flag"#,
        r#"SESSION_TTL_MIN_SEC = "300"  # default"#,
        r#"CORS_ORIGINS = "https://a.example,https://b.example"  # file"#,
        r#"DATABASE_URL = "postgres://app:<redacted>@db.example/sc"  # file"#,
        "SESSION_KEK = <redacted>  # file",
        "REDIS_URL = (unset)  # unset",
        "# configuration is valid",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("hunter2pw") && !out.contains(KEK), "{out}");

    // Invalid settings are named, whichever layer they come from.
    let ((code, _), err) = run_to_exit_with_stdout(
        &["check-config", "--config", path],
        &[
            ("CRYPTO_BACKEND", backend),
            ("SESSION_TTL_DEFAULT_SEC", "4000"),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("SESSION_TTL_DEFAULT_SEC"), "{err}");
    std::fs::write(&file, "port = 3000\nno_such_setting = 1\n").unwrap();
    let ((code, _), err) = run_to_exit_with_stdout(
        &["check-config", "--config", path],
        &[("CRYPTO_BACKEND", backend)],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown setting `no_such_setting`") && err.contains(path),
        "{err}"
    );
    std::fs::write(&file, "port = [\n").unwrap();
    let ((code, _), err) = run_to_exit_with_stdout(&["check-config", "--config", path], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("not valid TOML"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn serve_reads_its_settings_from_the_config_file() {
    let dir = std::env::temp_dir().join(format!("sc-config-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        "session_ttl_default_sec = 420\nsession_ttl_min_sec = 60\n",
    )
    .unwrap();
    let server = Server::start(&[("SESSION_CRYPTO_CONFIG", file.to_str().unwrap())]);
    let mut conn = server.connect().await;
    let key = idem(server.crypto);
    let body = format!(
        r#"{{"clientPublicKey":"{}"}}"#,
        b64(&fresh_public_key(server.crypto))
    );
    let r = post_init(&mut conn, "/session/init", &init_headers(&key, "C"), body).await;
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["expiresInSec"], 420);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn https_serves_every_backend_to_the_client_and_the_load_generator() {
    let pki = TestPki::new("https");
    let (cert, key, ca) = (
        pki.cert.to_str().unwrap(),
        pki.key.to_str().unwrap(),
        pki.ca.to_str().unwrap(),
    );
    for crypto in backends() {
        let server = Server::start_with(crypto, &[("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key)]);
        assert!(server.url.starts_with("https://"), "{}", server.banner);
        // aws-lc-rs and ring use their own rustls provider; RustCrypto borrows one.
        let provider = if crypto.name == "rustcrypto" {
            "aws-lc-rs"
        } else {
            crypto.name
        };
        assert!(
            server
                .banner
                .ends_with(&format!("TLS provider {provider})")),
            "{}",
            server.banner
        );
        let env = [("CRYPTO_BACKEND", crypto.name)];
        let ((code, out), err) =
            run_to_exit_with_stdout(&["client", "--url", &server.url, "--ca-file", ca], &env);
        assert_eq!(code, 0, "{}: {err}", crypto.name);
        assert!(out.contains(r#""transactionId":"TXN-"#), "{out}");
        // By name too (the certificate is for localhost and 127.0.0.1).
        let by_name = server.url.replace("127.0.0.1", "localhost");
        let ((code, _), err) =
            run_to_exit_with_stdout(&["client", "--url", &by_name, "--ca-file", ca], &env);
        assert_eq!(code, 0, "{err}");
    }

    let server = Server::start(&[("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key)]);
    let env = [("CRYPTO_BACKEND", server.crypto.name)];
    let ((code, out), err) = run_to_exit_with_stdout(
        &[
            "bench",
            "--url",
            &server.url,
            "--ca-file",
            ca,
            "-n",
            "60",
            "-c",
            "4",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("Flows: 60 ok, 0 errors"), "{out}");
    // The server's own step timings, averaged per endpoint.
    let steps: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("Server-Timing (mean ms): "))
        .collect();
    assert_eq!(steps.len(), 2, "{out}");
    assert!(
        steps[0].contains("ecdh-compute ") && steps[0].contains("total "),
        "{out}"
    );
    assert!(
        steps[1].contains("aes-gcm-decrypt ") && steps[1].contains("total "),
        "{out}"
    );
    // A client that does not trust the CA refuses the server.
    let ((code, _), err) = run_to_exit_with_stdout(&["client", "--url", &server.url], &env);
    assert_eq!(code, 1);
    assert!(err.contains("TLS") && err.contains("certificate"), "{err}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = server.url.replace("https://", "http://");
    let ((code, _), err) = run_to_exit_with_stdout(&["client", "--url", &plain], &env);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn a_stalled_tls_handshake_is_cut_off_and_bad_tls_settings_stop_start_up() {
    use std::io::{Read, Write};
    let pki = TestPki::new("handshake");
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let server = Server::start(&[
        ("TLS_CERT_FILE", cert),
        ("TLS_KEY_FILE", key),
        ("TLS_HANDSHAKE_TIMEOUT_MS", "300"),
    ]);
    let addr = server.url.trim_start_matches("https://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    // The first byte of a TLS record, then nothing.
    stream.write_all(&[0x16]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "closed by the 300 ms handshake timeout, not the 10 s header timeout ({waited:?})"
    );

    let backend = default_backend().name;
    for (envs, expected) in [
        (
            vec![("TLS_CERT_FILE", cert)],
            "set both TLS_CERT_FILE and TLS_KEY_FILE",
        ),
        (
            vec![("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", cert)],
            "TLS_KEY_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", "/nonexistent/cert.pem"),
                ("TLS_KEY_FILE", key),
            ],
            "TLS_CERT_FILE /nonexistent/cert.pem",
        ),
    ] {
        let mut envs = envs;
        envs.push(("CRYPTO_BACKEND", backend));
        let (code, err) = run_to_exit(&["serve"], &envs);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
}

#[tokio::test]
async fn https_offers_http2_by_alpn() {
    use http_body_util::{BodyExt, Empty};
    let pki = TestPki::new("alpn");
    let server = Server::start(&[
        ("TLS_CERT_FILE", pki.cert.to_str().unwrap()),
        ("TLS_KEY_FILE", pki.key.to_str().unwrap()),
    ]);
    let (provider, _) = session_crypto::backend::tls_provider(server.crypto).unwrap();
    let mut config = (*http_adapter::tls::client_config(provider, Some(&pki.ca)).unwrap()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let addr = server.url.trim_start_matches("https://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("https://{addr}/health"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["cryptoBackend"], server.crypto.name);
}
