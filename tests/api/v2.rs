//! Protocol v2 end to end: the real server and the Rust client library
//! (`session-crypto-client`), on both init routes and every backend; negotiation; the
//! well-known document; a tampered init response and a wrong pinned key, caught by the
//! library; re-init on expiry. What v2 binds on the wire is in `v2_bindings.rs`.

use std::sync::Arc;

use bytes::Bytes;
use ports::Protocol;
use session_crypto_client::{Error, InitRoute, Session};

use crate::helpers::{is_signature_refusal, pinned_connect_error, signing_key, well_known};
use crate::support::mitm::{forward, mitm};
use crate::support::*;

const BUY: &[u8] = br#"{"schemeCode":"AEF","amount":5000}"#;

#[tokio::test]
async fn the_library_runs_v2_on_both_init_routes_and_every_backend_with_a_pinned_key() {
    let key = signing_key("flows");
    let file = key.private.to_str().unwrap();
    for crypto in backends() {
        let server = Server::start_with(crypto, &[("SERVER_SIGNING_KEY_FILE", file)]);
        for route in [InitRoute::Unversioned, InitRoute::V1] {
            let session = Session::builder(&server.url, "RUST_LIB")
                .crypto(crypto)
                .init_route(route)
                .pinned_key(key.public)
                .connect()
                .await
                .unwrap_or_else(|e| panic!("{} {route:?}: {e}", crypto.name));
            assert_eq!(session.protocol(), Protocol::V2);
            let answer = session
                .send("POST", "/transaction/purchase", BUY)
                .await
                .unwrap();
            assert_eq!(
                answer.json::<serde_json::Value>().unwrap()["status"],
                "SUCCESS",
                "{}",
                crypto.name
            );
            session.revoke().await.unwrap();
        }
        // And v1 through the same library, for older servers.
        let v1 = Session::builder(&server.url, "RUST_LIB")
            .crypto(crypto)
            .protocol(Protocol::V1)
            .connect()
            .await
            .unwrap();
        assert_eq!(v1.protocol(), Protocol::V1);
        assert_eq!(
            v1.send("POST", "/transaction/purchase", BUY)
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .unwrap()["schemeCode"],
            "AEF"
        );
    }
}

#[tokio::test]
async fn negotiation_echoes_the_version_refuses_unknown_ones_and_leaves_v1_untouched() {
    let server = Server::start(&[]);
    let mut conn = server.connect().await;
    let pk = b64(&fresh_public_key(server.crypto));
    for path in ["/session/init", "/v1/session/init"] {
        // One init with `extra` members after the key, under a fresh nonce.
        let mut init = async |extra: &str| {
            let key = idem(server.crypto);
            let headers = crate::helpers::init_headers(&key, "NEGOTIATE");
            let body = format!(r#"{{"clientPublicKey":"{pk}"{extra}}}"#);
            post_init(&mut conn, path, &headers, body).await
        };
        // No `protocol`: the v1 answer, field for field as before.
        let v = json(&init("").await);
        let mut fields: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["encAlg", "expiresInSec", "serverPublicKey", "sessionId"],
            "{path}"
        );
        // `protocol: 2`: echoed with the suite and a confirmation; no signature
        // without a signing key.
        let v = json(&init(r#","protocol":2"#).await);
        assert_eq!(v["protocol"], 2, "{path}");
        assert_eq!(v["suite"], "P256-HKDF-SHA256-A256GCM");
        assert_eq!(base64_len(&v["confirm"]), 32);
        assert!(v.get("signature").is_none());
        // `protocol: 1` is v1, echoed.
        let v = json(&init(r#","protocol":1"#).await);
        assert_eq!(v["protocol"], 1);
        assert!(v.get("confirm").is_none());
        // Unknown versions: a clear 400 that lists the supported ones.
        for bad in ["3", "0", "\"2\"", "2.5", "null", "-1"] {
            let resp = init(&format!(r#","protocol":{bad}"#)).await;
            assert_eq!(resp.status, 400, "{path} {bad}");
            let v = json(&resp);
            assert_eq!(v["supported"], serde_json::json!([1, 2]), "{path} {bad}");
            assert_eq!(v["message"], "unsupported protocol version");
        }
    }
}

fn base64_len(v: &serde_json::Value) -> usize {
    domain::encoding::base64_decode(v.as_str().unwrap())
        .unwrap()
        .len()
}

#[tokio::test]
async fn the_well_known_document_publishes_the_signing_key_for_pinning() {
    let key = signing_key("well-known");
    let server = Server::start(&[("SERVER_SIGNING_KEY_FILE", key.private.to_str().unwrap())]);
    let (v, cache) = well_known(&server).await;
    assert_eq!(cache, "public, max-age=300");
    assert_eq!(v["protocols"], serde_json::json!([1, 2]));
    let published = &v["keys"][0];
    assert_eq!(published["alg"], "ES256");
    let point = domain::encoding::base64_decode(published["publicKey"].as_str().unwrap()).unwrap();
    assert_eq!(point, key.public.0.to_vec(), "the key keygen printed");
    assert_eq!(published["jwk"]["kty"], "EC");
    // What the document says is what signs: pinning the published key works.
    let pinned =
        domain::signing_key::parse_public_key(published["publicKey"].as_str().unwrap()).unwrap();
    Session::builder(&server.url, "PIN")
        .crypto(server.crypto)
        .pinned_key(pinned)
        .connect()
        .await
        .unwrap();

    let unsigned = Server::start(&[]);
    let (v, _) = well_known(&unsigned).await;
    assert_eq!(v["keys"], serde_json::json!([]));
}

#[tokio::test]
async fn a_wrong_pinned_key_or_an_unsigned_server_is_refused_before_any_request() {
    let key = signing_key("pinned");
    let other = signing_key("other");
    let server = Server::start(&[("SERVER_SIGNING_KEY_FILE", key.private.to_str().unwrap())]);
    let err = pinned_connect_error(&server, &[other.public]).await;
    assert!(is_signature_refusal(&err), "{err}");
    let unsigned = Server::start(&[]);
    let err = pinned_connect_error(&unsigned, &[key.public]).await;
    assert!(is_signature_refusal(&err), "{err}");
    // The CLI client too.
    let dir = std::env::temp_dir().join(format!("sc-v2-pub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let client_pinned_to = |public: &ports::P256PublicKey, name: &str| {
        let pem = dir.join(name);
        std::fs::write(&pem, domain::signing_key::public_key_pem(public)).unwrap();
        let pem = pem.to_str().unwrap().to_owned();
        let args = ["client", "--url", &server.url, "--server-key-file", &pem];
        run_to_exit_with_stdout(&args, &[("CRYPTO_BACKEND", server.crypto.name)])
    };
    let ((code, _), err) = client_pinned_to(&other.public, "other.pub.pem");
    assert_ne!(code, 0);
    assert!(err.contains("server signature missing or invalid"), "{err}");
    let ((code, out), err) = client_pinned_to(&key.public, "right.pub.pem");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("protocol 2, server key pinned"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A man in the middle for `POST /session/init`: forwards everything to `upstream`
/// and passes init answers through `tamper` first.
async fn tampering_proxy(
    upstream: String,
    tamper: fn(&mut serde_json::Value),
) -> (String, tokio::task::JoinHandle<()>) {
    mitm(
        &upstream,
        Arc::new(move |parts, _body, mut answer| {
            if parts.uri.path().ends_with("/session/init") && answer.status == 200 {
                let mut v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
                tamper(&mut v);
                answer.body = Bytes::from(serde_json::to_vec(&v).unwrap());
            }
            forward(answer)
        }),
    )
    .await
}

#[tokio::test]
async fn a_tampered_init_response_is_refused_by_the_library_at_once() {
    let server = Server::start(&[]);
    // The attacker swaps in its own public key (to read the session), or stretches the
    // lifetime: key confirmation fails either way, before anything is sent under the
    // session.
    fn swap_key(v: &mut serde_json::Value) {
        let attacker = crypto_backends_key();
        v["serverPublicKey"] = serde_json::Value::String(b64(&attacker));
    }
    fn stretch(v: &mut serde_json::Value) {
        v["expiresInSec"] = serde_json::json!(86_400);
    }
    fn downgrade(v: &mut serde_json::Value) {
        let o = v.as_object_mut().unwrap();
        for field in ["protocol", "suite", "confirm"] {
            o.remove(field);
        }
    }
    for (name, tamper) in [
        ("swapped key", swap_key as fn(&mut serde_json::Value)),
        ("stretched lifetime", stretch),
        ("downgrade to v1", downgrade),
    ] {
        let (url, proxy) = tampering_proxy(server.url.clone(), tamper).await;
        let err = Session::builder(&url, "MITM")
            .crypto(server.crypto)
            .connect()
            .await
            .unwrap_err();
        match (name, &err) {
            ("downgrade to v1", Error::Protocol(m)) => assert!(m.contains("protocol 2"), "{m}"),
            (_, Error::Handshake(domain::client::ClientError::Confirmation)) => {}
            _ => panic!("{name}: {err}"),
        }
        proxy.abort();
    }
    // Untouched, the same proxy path works.
    fn nothing(_: &mut serde_json::Value) {}
    let (url, proxy) = tampering_proxy(server.url.clone(), nothing).await;
    let session = Session::builder(&url, "MITM")
        .crypto(server.crypto)
        .connect()
        .await
        .unwrap();
    session
        .send("POST", "/transaction/purchase", BUY)
        .await
        .unwrap();
    proxy.abort();
}

fn crypto_backends_key() -> Vec<u8> {
    fresh_public_key(default_backend())
}

#[tokio::test]
async fn the_library_sets_up_a_new_session_once_when_the_server_says_expired() {
    let server = Server::start(&[]);
    let session = Session::builder(&server.url, "REINIT")
        .crypto(server.crypto)
        .connect()
        .await
        .unwrap();
    let first_kid = session.kid();
    // End the session behind the library's back.
    {
        let (mut client, current) = (session.protocol_client().await.unwrap(), session.current());
        client.revoke(&current).await.unwrap();
    }
    // The POST is not sent again (the 401 is not authenticated: it may have run), but
    // a new session is ready for the next call.
    let err = session
        .send("POST", "/transaction/purchase", BUY)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::OutcomeUnknown { status: 401, code, .. } if code == "SESSION_EXPIRED"),
        "{err}"
    );
    assert_ne!(session.kid(), first_kid, "a new session");
    let answer = session
        .send("POST", "/transaction/purchase", BUY)
        .await
        .unwrap();
    assert_eq!(
        answer.json::<serde_json::Value>().unwrap()["status"],
        "SUCCESS"
    );
}
