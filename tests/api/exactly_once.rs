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
/// (after the server and the upstream ran them) with a forged `SESSION_EXPIRED`.
fn forge_expiry_on_first(n: usize) -> Arc<Tamper> {
    let forged = AtomicUsize::new(0);
    Arc::new(move |parts, _body, answer| {
        if parts.uri.path().starts_with("/api/") && forged.fetch_add(1, Ordering::SeqCst) < n {
            return forged_expiry();
        }
        forward(answer)
    })
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
    let mut session = through(&proxy, &server, Retry::Idempotent).await;
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

/// Forwards everything, but replaces the answer of the first gateway request with
/// `forged` (after the upstream ran it).
fn forge_on_first(forged: fn() -> Response<Full<Bytes>>) -> Arc<Tamper> {
    let done = std::sync::atomic::AtomicBool::new(false);
    Arc::new(move |parts, _body, answer| {
        if parts.uri.path().starts_with("/api/") && !done.swap(true, Ordering::SeqCst) {
            return forged();
        }
        forward(answer)
    })
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
        let (proxy, _task) = mitm(&server.url, forge_on_first(forged)).await;
        let mut s = through(&proxy, &server, Retry::Idempotent).await;
        let err = s
            .fetch("POST", "/api/orders", None, b"{}")
            .await
            .unwrap_err();
        // Unsealed: reported as the refusal it claims to be, not proven.
        assert!(
            matches!(&err, Error::Refused { status: s, .. } if *s == status),
            "{err}"
        );
        assert_eq!(upstream.count(), before + 1, "the POST ran once, {status}");
    }
}

/// An HTTP date (RFC 9110 IMF-fixdate) of `t`.
fn httpdate(t: std::time::SystemTime) -> String {
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
    let mut session = through(&proxy, &server, Retry::Idempotent).await;
    let answer = session.fetch("GET", "/api/orders?id=7", None, b"").await;
    assert_eq!(answer.unwrap().status(), 200);
    assert_eq!(upstream.count(), 2);
    // Retry::Never: not even a GET.
    let (proxy, _task) = mitm(&server.url, forge_expiry_on_first(1)).await;
    let mut session = through(&proxy, &server, Retry::Never).await;
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
    assert_eq!(answer.json().unwrap()["status"], "SUCCESS");
}

/// Sends `sealed` (a purchase of `session`) with `X-Sealed-Refusals: 1` on `conn`.
async fn post_asking_sealed(
    conn: &mut session_crypto_client::Connection,
    session: &domain::client::ClientSession,
    sealed: &domain::client::SealedRequest,
    client_id: &str,
) -> session_crypto_client::HttpResponse {
    let headers = [
        ("x-kid", session.kid()),
        ("x-idempotency-key", sealed.idempotency_key.as_str()),
        ("x-clientid", client_id),
        ("x-sealed-refusals", "1"),
    ];
    conn.send(
        hyper::Method::POST,
        "/transaction/purchase",
        &headers,
        sealed.envelope.clone(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn v2_refusals_come_sealed_to_a_client_that_asks_and_say_whether_the_request_ran() {
    let server = Server::start(&[]);
    let mut client = server.client("SEALED").await.with_protocol(Protocol::V2);
    let (session, _) = client.init(INIT, None).await.unwrap();
    let mut conn = server.connect().await;
    let open = |resp: &session_crypto_client::HttpResponse,
                sealed: &domain::client::SealedRequest| {
        assert_eq!(resp.header("x-sealed-refusal"), Some("1"), "{resp:?}");
        session
            .open_refusal(
                sealed,
                resp.status.as_u16(),
                resp.header("x-idempotency-key").unwrap(),
                resp.body.to_vec(),
            )
            .unwrap()
    };
    // A replayed copy: refused, and it says a copy ran.
    let first = session.seal_request(now(), PAYLOAD).unwrap();
    assert_eq!(
        post_asking_sealed(&mut conn, &session, &first, "SEALED")
            .await
            .status,
        200
    );
    let replay = post_asking_sealed(&mut conn, &session, &first, "SEALED").await;
    let refusal = open(&replay, &first);
    assert_eq!(
        (refusal.status, refusal.code.as_str(), refusal.executed),
        (400, "CRYPTO_ERROR", None)
    );
    // Stamped ten minutes ago: refused before anything ran, with the server's clock.
    let late = session.seal_request(now() - 600_000, PAYLOAD).unwrap();
    let resp = post_asking_sealed(&mut conn, &session, &late, "SEALED").await;
    let refusal = open(&resp, &late);
    assert_eq!(refusal.executed, Some(false));
    assert!(refusal.server_time_ms.abs_diff(now()) < 5_000);
    // The refusal is bound to its request: it does not open for another.
    let other = session.seal_request(now(), PAYLOAD).unwrap();
    assert!(
        session
            .open_refusal(
                &other,
                400,
                resp.header("x-idempotency-key").unwrap(),
                resp.body.to_vec()
            )
            .is_err()
    );
    // Without asking, or asking for another client's session: the plain refusal.
    let mut plain = server.connect().await;
    assert_code(
        &post_sealed(&mut plain, &session, &late).await.unwrap(),
        400,
        "CRYPTO_ERROR",
    );
    let stranger = post_asking_sealed(&mut conn, &session, &late, "STRANGER").await;
    assert!(stranger.header("x-sealed-refusal").is_none());
    assert_code(&stranger, 400, "CRYPTO_ERROR");
    // The library: a gateway whose upstream cannot be reached answers a sealed 502, so
    // "may have run" comes from the server itself.
    let gateway = Server::start(&[("GATEWAY_UPSTREAM", "http://127.0.0.1:9")]);
    let mut s = Session::builder(&gateway.url, "SEALED")
        .crypto(gateway.crypto)
        .connect()
        .await
        .unwrap();
    let err = s.fetch("POST", "/api/x", None, b"{}").await.unwrap_err();
    assert!(
        matches!(&err, Error::OutcomeUnknown { status: 502, code, .. } if code == "BAD_GATEWAY"),
        "{err}"
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
    let mut s = through(&proxy, &server, Retry::Idempotent).await;
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
    let mut direct = Session::builder(&server.url, "EXACTLY_ONCE")
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
    let (_, session) = direct.parts();
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

#[tokio::test]
async fn a_rust_client_ten_minutes_slow_corrects_its_clock_from_the_sealed_refusal_and_runs_once() {
    let upstream = Upstream::start();
    let server = Server::start(&[("GATEWAY_UPSTREAM", &upstream.url)]);
    let mut session = Session::builder(&server.url, "SLOW_CLOCK")
        .crypto(server.crypto)
        .connect()
        .await
        .unwrap();
    // This machine's clock, ten minutes slow (as the library sees it).
    session.parts().0.set_clock_offset_ms(-600_000);
    let answer = session
        .fetch("POST", "/api/orders", None, b"{}")
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        upstream.count(),
        1,
        "refused (sealed: not run), then run once"
    );
    assert!(
        session.clock_offset_ms().abs() < 5_000,
        "{}",
        session.clock_offset_ms()
    );
    // An unsealed refusal (a v1 session, which cannot be sealed) moves nothing.
    let mut v1 = Session::builder(&server.url, "SLOW_CLOCK")
        .crypto(server.crypto)
        .protocol(Protocol::V1)
        .connect()
        .await
        .unwrap();
    v1.parts().0.set_clock_offset_ms(-600_000);
    let err = buy(&mut v1).await.unwrap_err();
    assert!(matches!(err, Error::Refused { status: 400, .. }), "{err}");
    assert_eq!(v1.clock_offset_ms(), -600_000);
}
