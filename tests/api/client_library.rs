//! The Rust library shaped like reqwest: one session cloned across many tasks, request
//! and response headers, typed JSON, methods in any case, time limits that leave the
//! session usable, and errors that say a timeout from a refused connection.

use std::time::{Duration, Instant};

use session_crypto_client::{Error, Session};

use crate::gateway::gateway_server;
use crate::support::upstream::Upstream;
use crate::support::*;

async fn session(server: &Server) -> Session {
    Session::builder(&server.url, "RUST_SHAPE")
        .crypto(server.crypto)
        .connect()
        .await
        .unwrap()
}

#[derive(serde::Deserialize)]
struct Echo {
    echo: u64,
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_tasks_share_one_cloned_session() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let s = session(&server).await;
    let kid = s.kid();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.post(&format!("/api/orders/{i}"))
                    .json(&serde_json::json!({ "n": i }))
                    .send()
                    .await
            })
        })
        .collect();
    for t in tasks {
        let answer = t.await.unwrap().unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.json::<Echo>().unwrap().echo >= 1);
    }
    assert_eq!(upstream.count(), 50, "each call ran once");
    assert_eq!(s.kid(), kid, "one session for all");
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_both_ways_typed_json_and_methods_in_any_case() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let s = session(&server).await;
    let before = upstream.count();
    let answer = s
        .request("put", "/api/notes/1")
        .header("X-Request-Id", "rust-shape-1")
        .header("X-Kid", "forged")
        .header("Content-Type", "text/csv")
        .body("a,b")
        .send()
        .await
        .unwrap();
    let got = upstream.last_since(before);
    assert_eq!(got.method, "PUT");
    assert_eq!(got.header("x-request-id"), Some("rust-shape-1"));
    assert_eq!(got.header("content-type"), Some("text/csv"));
    assert_eq!(got.body, b"a,b");
    // The answer's headers, Content-Type being the decrypted body's.
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("x-request-id"), Some("rust-shape-1"));
    assert!(answer.headers().contains_key("x-idempotency-key"));
    // Typed JSON; a body of another shape is Error::Body, not a protocol error.
    assert!(answer.json::<Echo>().is_ok());
    let err = answer.json::<Vec<u8>>().unwrap_err();
    assert!(matches!(err, Error::Body(_)), "{err}");
    // Mistakes are refused before anything is sent.
    let before = upstream.count();
    for bad in [
        s.request("HEAD", "/api/x").send().await,
        s.request("BAD METHOD", "/api/x").send().await,
        s.get("api/x").send().await,
        s.get("/api/x").header("bad header", "v").send().await,
        s.get("/api/x").idempotency_key("has space").send().await,
    ] {
        assert!(matches!(bad, Err(Error::Invalid(_))), "{bad:?}");
    }
    assert_eq!(upstream.count(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_time_limit_ends_one_call_and_the_session_goes_on() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let s = Session::builder(&server.url, "RUST_SHAPE")
        .crypto(server.crypto)
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    let err = s
        .get("/api/slow/3000")
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout() && !err.is_connect(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The connection the cut-off call used is not reused; the next call opens another.
    assert_eq!(s.get("/api/fast").send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn connecting_to_nothing_is_a_connect_error_and_revoke_is_final() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Session::builder(&format!("http://127.0.0.1:{closed}"), "RUST_SHAPE")
        .crypto(backends()[0])
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert!(err.is_connect() && !err.is_timeout(), "{err}");

    let server = Server::start(&[]);
    let s = session(&server).await;
    let other = s.clone();
    s.revoke().await.unwrap();
    s.revoke().await.unwrap();
    let err = other
        .post("/transaction/purchase")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Revoked), "{err}");
}

/// Both libraries send a path as a URL parser does (dot segments resolved, spaces
/// encoded): the gateway's upstream gets the same target from either.
#[tokio::test(flavor = "multi_thread")]
async fn paths_go_out_as_a_url_parser_sends_them() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let s = session(&server).await;
    let before = upstream.count();
    s.get("/api/a b/./c/../d?q=x y").send().await.unwrap();
    assert_eq!(upstream.last_since(before).target, "/a%20b/d?q=x%20y");
    // `%2e%2e` is a dot segment: `/api/%2e%2e/x` is `/x`, no gateway route (404), as
    // from the TypeScript library — never sent for the gateway to refuse.
    let err = s.get("/api/%2e%2e/x").send().await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    assert!(s.session_id().starts_with("S-") && s.kid() == format!("session:{}", s.session_id()));
}

/// A base URL with a path: the server mounted behind a proxy that strips it. Requests
/// go to `<mount><path>`; v2 binds `<path>`, what the server receives.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_mounted_under_a_path_behind_a_stripping_proxy() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[]);
    let (mount, _proxy) = mitm::mounted(&server.url, "/sc").await;
    let s = Session::builder(&format!("{mount}/"), "RUST_MOUNT")
        .crypto(server.crypto)
        .connect()
        .await
        .unwrap();
    let answer = s
        .post("/transaction/purchase")
        .body(br#"{"schemeCode":"AEF","amount":1}"#.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.json::<serde_json::Value>().unwrap()["status"],
        "SUCCESS"
    );
    let before = upstream.count();
    s.get("/api/orders?id=1").send().await.unwrap();
    assert_eq!(upstream.last_since(before).target, "/orders?id=1");
    s.revoke().await.unwrap();
}
