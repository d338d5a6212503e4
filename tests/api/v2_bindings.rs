//! What protocol v2 binds, on the wire against the real server: a request cannot be
//! re-targeted (and keeps its nonce), a response is neither a request nor the answer to
//! another request, and the internal key release hands out both directional keys.

use domain::client::ResponseHead;
use hyper::Method;
use ports::Protocol;
use session_crypto_client::{InitRoute, ProtocolClient};

use crate::support::*;

const BUY: &[u8] = PAYLOAD;

async fn v2_client(
    server: &Server,
    client_id: &str,
) -> (ProtocolClient, domain::client::ClientSession) {
    let mut client = server.client(client_id).await.with_protocol(Protocol::V2);
    let (session, _) = client.init(InitRoute::Unversioned, None).await.unwrap();
    assert_eq!(session.protocol(), Protocol::V2);
    (client, session)
}

#[tokio::test]
async fn a_v2_request_replayed_to_another_route_or_target_is_refused_and_keeps_its_nonce() {
    let server = Server::start(&[]);
    let (_, session) = v2_client(&server, "RETARGET").await;
    let mut conn = server.connect().await;
    let send = |path: &'static str, sealed: &domain::client::SealedRequest| {
        let headers = vec![
            ("x-kid".to_owned(), session.kid().to_owned()),
            (
                "x-idempotency-key".to_owned(),
                sealed.idempotency_key.clone(),
            ),
            ("x-clientid".to_owned(), session.client_id().to_owned()),
        ];
        (path, headers, sealed.envelope.clone())
    };
    async fn post(
        conn: &mut session_crypto_client::Connection,
        (path, headers, body): (&str, Vec<(String, String)>, Vec<u8>),
    ) -> session_crypto_client::HttpResponse {
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        conn.send(Method::POST, path, &refs, body).await.unwrap()
    }
    // A purchase, captured and sent to another route or with a query added: refused.
    let buy = session.seal_request(now(), BUY).unwrap();
    for path in ["/session/revoke", "/transaction/purchase?amount=1"] {
        assert_code(
            &post(&mut conn, send(path, &buy)).await,
            400,
            "CRYPTO_ERROR",
        );
    }
    // Its nonce was not used up: it goes through where it was sent — once.
    assert_eq!(
        post(&mut conn, send("/transaction/purchase", &buy))
            .await
            .status,
        200
    );
    assert_code(
        &post(&mut conn, send("/transaction/purchase", &buy)).await,
        400,
        "CRYPTO_ERROR",
    );
    // A revocation plaintext sealed for the purchase route does not revoke: v2 binds
    // the route, where v1 (below) accepts it on /session/revoke.
    let revoke_for_purchase = session
        .seal_request(now(), br#"{"action":"revoke"}"#)
        .unwrap();
    assert_code(
        &post(&mut conn, send("/session/revoke", &revoke_for_purchase)).await,
        400,
        "CRYPTO_ERROR",
    );
    let still = session.seal_request(now(), BUY).unwrap();
    assert_eq!(
        post(&mut conn, send("/transaction/purchase", &still))
            .await
            .status,
        200
    );

    let mut v1 = server.client("RETARGET_V1").await;
    let (v1_session, _) = v1.init(InitRoute::Unversioned, None).await.unwrap();
    let revoke = v1_session
        .seal_request(now(), br#"{"action":"revoke"}"#)
        .unwrap();
    let headers = [
        ("x-kid", v1_session.kid()),
        ("x-idempotency-key", revoke.idempotency_key.as_str()),
        ("x-clientid", v1_session.client_id()),
    ];
    let resp = conn
        .send(
            Method::POST,
            "/session/revoke",
            &headers,
            revoke.envelope.clone(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 204, "v1 does not bind the route");
}

#[tokio::test]
async fn a_response_sent_back_as_a_request_is_refused_on_both_versions() {
    let server = Server::start(&[]);
    for protocol in Protocol::ALL {
        let mut client = server.client("REFLECT").await.with_protocol(protocol);
        let (session, _) = client.init(InitRoute::Unversioned, None).await.unwrap();
        let mut conn = server.connect().await;
        let sealed = session.seal_request(now(), BUY).unwrap();
        let resp = post_sealed(&mut conn, &session, &sealed).await.unwrap();
        assert_eq!(resp.status, 200);
        let reflected = domain::client::SealedRequest {
            idempotency_key: resp.header("x-idempotency-key").unwrap().to_owned(),
            envelope: resp.body.to_vec(),
            ..sealed.clone()
        };
        let back = post_sealed(&mut conn, &session, &reflected).await.unwrap();
        assert_code(&back, 400, "CRYPTO_ERROR");
        // With the response's nonce replaced by a fresh one: still refused.
        let fresh = domain::client::SealedRequest {
            idempotency_key: format!("{}.{}", now(), uuid_like()),
            ..reflected
        };
        let back = post_sealed(&mut conn, &session, &fresh).await.unwrap();
        assert_code(&back, 400, "CRYPTO_ERROR");
        // And the genuine answer opens for the request it answers only.
        let head = ResponseHead {
            status: 200,
            idempotency_key: resp.header("x-idempotency-key").unwrap(),
            content_type: "",
        };
        let window = domain::ReplayPolicy::DEFAULT;
        assert!(
            session
                .open_response(&sealed, head, resp.body.to_vec(), now(), &window)
                .is_ok()
        );
        if protocol == Protocol::V2 {
            let other = session.seal_request(now(), BUY).unwrap();
            assert!(
                session
                    .open_response(&other, head, resp.body.to_vec(), now(), &window)
                    .is_err(),
                "a v2 answer opens only for its own request"
            );
            let as_created = ResponseHead {
                status: 201,
                ..head
            };
            assert!(
                session
                    .open_response(&sealed, as_created, resp.body.to_vec(), now(), &window)
                    .is_err(),
                "the status is bound"
            );
        }
    }
}

#[tokio::test]
async fn the_internal_key_release_hands_out_both_directional_keys_of_a_v2_session() {
    let server = Server::start(&[("INTERNAL_PORT", "0")]);
    let (_, session) = v2_client(&server, "RELEASE").await;
    let internal = server.internal_url.clone().unwrap();
    let mut conn = session_crypto_client::Connection::open(
        &session_crypto_client::Endpoint::parse(&internal).unwrap(),
    )
    .await
    .unwrap();
    let path = format!("/v1/session/{}", &session.kid()[8..]);
    let resp = conn
        .send(Method::GET, &path, &[("x-clientid", "RELEASE")], "")
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let v = json(&resp);
    assert_eq!(v["protocol"], 2);
    assert!(v.get("sessionKey").is_none(), "a v1 consumer fails closed");
    let decode = |f: &str| domain::encoding::base64_decode(v[f].as_str().unwrap()).unwrap();
    assert_eq!(
        decode("requestKey"),
        session.keys().request().expose().to_vec()
    );
    assert_eq!(
        decode("responseKey"),
        session.keys().response().expose().to_vec()
    );
}
