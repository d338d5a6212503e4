//! CORS, unknown routes, and the documents served (OpenAPI, the demo page).

use hyper::Method;
use session_crypto_client::{Connection, Endpoint};

use crate::helpers::*;
use crate::support::*;

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
    // What the reference SPAs and the client library send (X-Request-Id and traceparent
    // were refused before, although the server honours X-Request-Id).
    for h in [
        "content-type",
        "x-idempotency-key",
        "x-clientid",
        "x-kid",
        "x-request-id",
        "traceparent",
        "x-inner-content-type",
    ] {
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
    for e in ["Server-Timing", "X-Kid", "X-Idempotency-Key", "Date"] {
        assert!(exposed.contains(e), "{exposed}");
    }
    assert_eq!(
        resp.header("timing-allow-origin"),
        Some("http://spa.example"),
        "Server-Timing readable cross-origin"
    );
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
    assert!(html.contains(r#"<script type="module" src="/demo.js"></script>"#));
    let script = conn.send(Method::GET, "/demo.js", &[], "").await.unwrap();
    assert_eq!(script.status, 200);
    assert!(
        String::from_utf8_lossy(&script.body)
            .contains("import { SessionCrypto } from '/session-crypto-client.js'")
    );
    let library = conn
        .send(Method::GET, "/session-crypto-client.js", &[], "")
        .await
        .unwrap();
    assert_eq!(library.status, 200);
    assert!(
        library
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(String::from_utf8_lossy(&library.body).contains("crypto.subtle"));
    // Not on the internal listener.
    let server = Server::start(&[("INTERNAL_PORT", "0")]);
    let internal = server.internal_url.clone().unwrap();
    let mut conn = Connection::open(&Endpoint::parse(&internal).unwrap())
        .await
        .unwrap();
    let r = conn.send(Method::GET, "/", &[], "").await.unwrap();
    assert_eq!(r.status, 404);
}
