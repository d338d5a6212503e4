//! Sealed refusals (docs/PROTOCOL.md §9.1) against the real server: a v2 client that
//! asks gets refusals bound to its request, saying whether the request ran and
//! carrying the server's clock — on the purchase, revocation and gateway routes — and
//! the Rust library corrects its clock from them, running the refused call once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ports::Protocol;
use session_crypto_client::{Error, Session};

use crate::helpers::buy;
use crate::support::mitm::{Tamper, forward, mitm};
use crate::support::upstream::Upstream;
use crate::support::*;

/// Sends `sealed` (a request of `session`) to `path` with `X-Sealed-Refusals: 1` on
/// `conn`, as `client_id`.
async fn post_to_asking_sealed(
    conn: &mut session_crypto_client::Connection,
    path: &str,
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
    conn.send(hyper::Method::POST, path, &headers, sealed.envelope.clone())
        .await
        .unwrap()
}

/// [`post_to_asking_sealed`] on the purchase route.
async fn post_asking_sealed(
    conn: &mut session_crypto_client::Connection,
    session: &domain::client::ClientSession,
    sealed: &domain::client::SealedRequest,
    client_id: &str,
) -> session_crypto_client::HttpResponse {
    post_to_asking_sealed(conn, "/transaction/purchase", session, sealed, client_id).await
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
    // The revocation route too: a purchase sent there is refused by the route's check,
    // before anything ran (and the session lives on).
    let misrouted = session.seal_request(now(), PAYLOAD).unwrap();
    let resp =
        post_to_asking_sealed(&mut conn, "/session/revoke", &session, &misrouted, "SEALED").await;
    assert_eq!(resp.status, 400);
    // The refusal binds the request as the server received it: at /session/revoke.
    let as_sent = domain::client::SealedRequest {
        target: "/session/revoke".into(),
        ..misrouted
    };
    assert_eq!(open(&resp, &as_sent).executed, Some(false));
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
    let s = Session::builder(&gateway.url, "SEALED")
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
async fn a_rust_client_ten_minutes_slow_corrects_its_clock_from_the_sealed_refusal_and_runs_once() {
    let upstream = Upstream::start();
    let server = Server::start(&[("GATEWAY_UPSTREAM", &upstream.url)]);
    let session = Session::builder(&server.url, "SLOW_CLOCK")
        .crypto(server.crypto)
        .connect()
        .await
        .unwrap();
    // This machine's clock, ten minutes slow (as the library sees it).
    session.set_clock_offset_ms(-600_000);
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
    // An unsealed refusal (a v1 session, which cannot be sealed) moves nothing: the POST
    // is not sent again, and the error says the clocks disagree by the answer's Date.
    let mut v1 = Session::builder(&server.url, "SLOW_CLOCK")
        .crypto(server.crypto)
        .protocol(Protocol::V1)
        .connect()
        .await
        .unwrap();
    v1.set_clock_offset_ms(-600_000);
    let err = buy(&mut v1).await.unwrap_err();
    assert!(
        matches!(err, Error::ClockSkew { skew_ms, status: 400, .. } if (skew_ms - 600_000).abs() < 5_000),
        "{err}"
    );
    assert_eq!(v1.clock_offset_ms(), -600_000);
}

/// Before any authenticated time, an unsealed refusal's `Date` corrects the clock of what
/// may safely run twice — an init, an idempotent call — as in the TypeScript and Python
/// libraries; a POST is never sent again on it.
#[tokio::test]
async fn a_refusals_date_corrects_the_clock_of_inits_and_idempotent_calls_only() {
    let upstream = Upstream::start();
    let server = Server::start(&[("GATEWAY_UPSTREAM", &upstream.url)]);
    let inits = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&inits);
    // The first init answer is replaced with a 400 whose Date is 40 s ahead.
    let tamper: Arc<Tamper> = Arc::new(move |parts, _body, answer| {
        if parts.uri.path() == "/session/init" && count.fetch_add(1, Ordering::SeqCst) == 0 {
            return skewed_refusal(40);
        }
        forward(answer)
    });
    let (session, _proxy) = through_mitm(&server, tamper).await;
    assert_eq!(inits.load(Ordering::SeqCst), 2, "the init, sent once more");
    assert!(
        (session.clock_offset_ms() - 40_500).abs() < 2_000,
        "{}",
        session.clock_offset_ms()
    );
    assert_eq!(
        session.get("/api/orders").send().await.unwrap().status(),
        200
    );

    // A forged 400 with a skewed Date to a POST: not sent again, the clock unmoved.
    let before = upstream.count();
    let tamper: Arc<Tamper> = Arc::new(|parts, _body, answer| {
        if parts.method == hyper::Method::POST && parts.uri.path() == "/api/orders" {
            return skewed_refusal(40);
        }
        forward(answer)
    });
    let (session, _proxy) = through_mitm(&server, tamper).await;
    let err = session
        .post("/api/orders")
        .body("{}")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ClockSkew { .. }), "{err}");
    assert_eq!(upstream.count(), before + 1, "the POST ran once");
    assert_eq!(session.clock_offset_ms(), 0);
}

/// A session with `server` through a man in the middle that shapes answers with
/// `tamper` (returned with the proxy's task, which lives as long as it is held).
async fn through_mitm(
    server: &Server,
    tamper: Arc<Tamper>,
) -> (Session, tokio::task::JoinHandle<()>) {
    let (proxy, task) = mitm(&server.url, tamper).await;
    let session = Session::builder(&proxy, "DATE_CLOCK")
        .crypto(server.crypto)
        .connect()
        .await
        .unwrap();
    (session, task)
}

/// A plain `400 CRYPTO_ERROR` (unsealed) whose `Date` is `ahead_s` seconds ahead.
fn skewed_refusal(ahead_s: u64) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let date = std::time::SystemTime::now() + std::time::Duration::from_secs(ahead_s);
    let mut out = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
        br#"{"error":"CRYPTO_ERROR"}"#,
    )));
    *out.status_mut() = hyper::StatusCode::BAD_REQUEST;
    out.headers_mut().insert(
        hyper::header::DATE,
        crate::exactly_once::httpdate(date).parse().unwrap(),
    );
    out
}
