//! At most once, end to end, with the Rust library and an attacker on the path that
//! holds no key: a forged `SESSION_EXPIRED` after the upstream ran a request must not
//! make the library run it again (issue: a forged error ran POSTs twice); an idempotent
//! request may be sent again; a v1 request sent back as its own answer is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use ports::Protocol;
use session_crypto_client::{Error, Retry, Session};

use crate::helpers::buy;
use crate::support::mitm::{Tamper, forward, mitm};
use crate::support::upstream::Upstream;
use crate::support::*;

/// A forged `401 {"error":"SESSION_EXPIRED"}`, as the server words it.
fn forged_expiry() -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(Bytes::from_static(
        br#"{"error":"SESSION_EXPIRED"}"#,
    )));
    *out.status_mut() = hyper::StatusCode::UNAUTHORIZED;
    out.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    out
}

/// Forwards everything, but replaces the answer of the first `n` gateway requests
/// (after the server and the upstream ran them) with `forged`.
fn forge_first(n: usize, forged: fn() -> Response<Full<Bytes>>) -> Arc<Tamper> {
    let count = AtomicUsize::new(0);
    Arc::new(move |parts, _body, answer| {
        if parts.uri.path().starts_with("/api/") && count.fetch_add(1, Ordering::SeqCst) < n {
            return forged();
        }
        forward(answer)
    })
}

/// [`forge_first`] with a forged `SESSION_EXPIRED`.
fn forge_expiry_on_first(n: usize) -> Arc<Tamper> {
    forge_first(n, forged_expiry)
}

/// A v2 session with `server`, reached through `proxy`.
async fn through(proxy: &str, server: &Server, retry: Retry) -> Session {
    Session::builder(proxy, "EXACTLY_ONCE")
        .crypto(server.crypto)
        .retry(retry)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_forged_session_expired_never_makes_the_library_run_a_post_twice() {
    let upstream = Upstream::start();
    let server = Server::start(&[("GATEWAY_UPSTREAM", &upstream.url)]);
    let (proxy, _task) = mitm(&server.url, forge_expiry_on_first(1)).await;
    let session = through(&proxy, &server, Retry::Idempotent).await;
    let err = session
        .fetch(
            "POST",
            "/api/orders",
            Some("application/json"),
            br#"{"qty":1}"#,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::OutcomeUnknown { status: 401, code, .. } if code == "SESSION_EXPIRED"),
        "{err}"
    );
    assert_eq!(
        upstream.count(),
        1,
        "the POST ran once, and was not sent again"
    );
    // The library set up a new session meanwhile: the next call works.
    let answer = session
        .fetch(
            "POST",
            "/api/orders",
            Some("application/json"),
            br#"{"qty":2}"#,
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn forged_refusals_and_dates_never_make_the_library_send_a_post_again() {
    let upstream = Upstream::start();
    let server = Server::start(&[("GATEWAY_UPSTREAM", &upstream.url)]);
    let skewed_400 = || {
        let mut out = Response::new(Full::new(Bytes::from_static(
            br#"{"error":"CRYPTO_ERROR"}"#,
        )));
        *out.status_mut() = hyper::StatusCode::BAD_REQUEST;
        let ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(40);
        out.headers_mut().insert(
            hyper::header::DATE,
            hyper::header::HeaderValue::from_str(&httpdate(ahead)).unwrap(),
        );
        out
    };
    let bad_gateway = || {
        let mut out = Response::new(Full::new(Bytes::from_static(br#"{"error":"BAD_GATEWAY"}"#)));
        *out.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        out
    };
    for (forged, status) in [
        (skewed_400 as fn() -> Response<Full<Bytes>>, 400),
        (bad_gateway, 502),
    ] {
        let before = upstream.count();
        let (proxy, _task) = mitm(&server.url, forge_first(1, forged)).await;
        let s = through(&proxy, &server, Retry::Idempotent).await;
        let err = s
            .fetch("POST", "/api/orders", None, b"{}")
            .await
            .unwrap_err();
        // Unsealed: reported as the refusal it claims to be (the 400 with a Date 40 s
        // ahead as a clock skew), not proven, and not sent again.
        assert_eq!(err.status(), Some(status), "{err}");
        assert!(
            matches!(&err, Error::Refused { .. } | Error::ClockSkew { .. }),
            "{err}"
        );
        assert_eq!(upstream.count(), before + 1, "the POST ran once, {status}");
    }
}

/// An HTTP date (RFC 9110 IMF-fixdate) of `t`.
pub(crate) fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let iso = domain::encoding::utc_timestamp(secs);
    let days = secs / 86_400;
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months[iso[5..7].parse::<usize>().unwrap() - 1];
    format!(
        "{weekday}, {} {month} {} {} GMT",
        &iso[8..10],
        &iso[0..4],
        &iso[11..19]
    )
}

#[tokio::test]
async fn an_idempotent_request_is_sent_again_unless_the_application_said_never() {
    let upstream = Upstream::start();
    let server = Server::start(&[("GATEWAY_UPSTREAM", &upstream.url)]);
    // The default policy: a GET after a forged expiry runs again and succeeds (running
    // it twice is harmless by HTTP's definition).
    let (proxy, _task) = mitm(&server.url, forge_expiry_on_first(1)).await;
    let session = through(&proxy, &server, Retry::Idempotent).await;
    let answer = session.fetch("GET", "/api/orders?id=7", None, b"").await;
    assert_eq!(answer.unwrap().status(), 200);
    assert_eq!(upstream.count(), 2);
    // Retry::Never: not even a GET.
    let (proxy, _task) = mitm(&server.url, forge_expiry_on_first(1)).await;
    let session = through(&proxy, &server, Retry::Never).await;
    let err = session
        .fetch("GET", "/api/orders?id=8", None, b"")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err}");
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn a_v1_request_sent_back_as_its_answer_is_refused() {
    let server = Server::start(&[]);
    let reflections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&reflections);
    // The attacker answers a purchase with the request itself: in v1 both directions
    // share one key, so only the answer's rsp_ mark tells them apart.
    let reflect: Arc<Tamper> = Arc::new(move |parts, body, answer| {
        if parts.uri.path() != "/transaction/purchase" {
            return forward(answer);
        }
        seen.fetch_add(1, Ordering::SeqCst);
        let mut out = Response::new(Full::new(body.clone()));
        for name in ["x-kid", "x-idempotency-key"] {
            out.headers_mut().insert(name, parts.headers[name].clone());
        }
        out
    });
    let (proxy, _task) = mitm(&server.url, reflect).await;
    let mut session = Session::builder(&proxy, "V1_REFLECT")
        .crypto(server.crypto)
        .protocol(Protocol::V1)
        .connect()
        .await
        .unwrap();
    let err = buy(&mut session).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Response(domain::client::ClientError::UnmarkedResponse)
        ),
        "{err}"
    );
    assert_eq!(reflections.load(Ordering::SeqCst), 1);
    // The server's own answers carry the mark and open.
    let mut direct = Session::builder(&server.url, "V1_REFLECT")
        .crypto(server.crypto)
        .protocol(Protocol::V1)
        .connect()
        .await
        .unwrap();
    let answer = buy(&mut direct).await.unwrap();
    assert_eq!(
        answer.json::<serde_json::Value>().unwrap()["status"],
        "SUCCESS"
    );
}

#[tokio::test]
async fn each_call_carries_an_idempotency_key_the_gateway_forwards_and_nobody_can_change() {
    let upstream = Upstream::start();
    let server = Server::start(&[("GATEWAY_UPSTREAM", &upstream.url)]);
    // A GET whose first answer is replaced by a forged expiry is sent again: both
    // copies reach the upstream with the same key, so it can tell them apart from
    // two calls.
    let (proxy, _task) = mitm(&server.url, forge_expiry_on_first(1)).await;
    let s = through(&proxy, &server, Retry::Idempotent).await;
    s.fetch("GET", "/api/orders?id=1", None, b"").await.unwrap();
    let seen = upstream.received();
    let keys: Vec<&str> = seen
        .iter()
        .map(|r| r.header("idempotency-key").unwrap())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "one call, one key");
    assert!(domain::CallKey::parse(keys[0]).is_ok(), "{}", keys[0]);
    // The application's own key, kept across its own retries.
    let direct = Session::builder(&server.url, "EXACTLY_ONCE")
        .crypto(server.crypto)
        .connect()
        .await
        .unwrap();
    for _ in 0..2 {
        direct
            .fetch_keyed("POST", "/api/orders", None, r#""order-1234""#, b"{}")
            .await
            .unwrap();
        assert_eq!(
            upstream
                .received()
                .last()
                .unwrap()
                .header("idempotency-key"),
            Some(r#""order-1234""#)
        );
    }
    // On the way it cannot be changed, removed or added: the v2 AAD binds it. Refused
    // (sealed: the request did not run), and the upstream saw nothing.
    let before = upstream.count();
    let held = direct.current();
    let session = &*held;
    let (key, other) = (Some(r#""order-5678""#), Some(r#""other-key""#));
    // (bound by the client, sent on the wire): changed, removed, added.
    for (bound, value) in [(key, other), (key, None), (None, key)] {
        let mut conn = server.connect().await;
        let sealed = session
            .seal_call(
                now(),
                domain::RequestLine {
                    method: "POST",
                    target: "/api/orders",
                    content_type: "",
                },
                bound,
                b"{}",
            )
            .unwrap();
        let mut headers = vec![
            ("x-kid", session.kid()),
            ("x-idempotency-key", sealed.idempotency_key.as_str()),
            ("x-clientid", session.client_id()),
            ("x-sealed-refusals", "1"),
        ];
        if let Some(v) = value {
            headers.push(("idempotency-key", v));
        }
        let resp = conn
            .send(
                hyper::Method::POST,
                "/api/orders",
                &headers,
                sealed.envelope.clone(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status, 400, "{value:?}");
        let refusal = session
            .open_refusal(
                &sealed,
                400,
                resp.header("x-idempotency-key").unwrap(),
                resp.body.to_vec(),
            )
            .unwrap();
        assert_eq!(refusal.executed, Some(false));
    }
    assert_eq!(upstream.count(), before, "nothing reached the upstream");
}
