//! Gateway answers count against the buffer budget: a client that asks for large
//! answers over HTTP/2 and never opens its receive window cannot make the server hold
//! more than `BODY_BUFFER_BUDGET_BYTES` of them (issue: 4 connections × 32 streams of
//! 1 MiB answers took the server from 12 to 205 MiB against a 64 MiB budget).

use std::time::Duration;

use domain::RequestLine;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use session_crypto_client::{Protocol, now_ms};

use crate::gateway::{gateway_server, session};
use crate::support::b64;
use crate::support::upstream::Upstream;

const MIB: u64 = 1024 * 1024;

/// The server's resident memory (bytes), from /proc.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn answers_a_client_does_not_read_stay_within_the_budget() {
    let upstream = Upstream::start();
    let server = gateway_server(
        &upstream,
        &[
            ("BODY_BUFFER_BUDGET_BYTES", "16777216"),
            ("GATEWAY_BODY_LIMIT_BYTES", "2097152"),
            ("CONNECTION_IDLE_TIMEOUT_MS", "60000"),
        ],
    );
    let mut s = session(&server, Protocol::V2).await;
    // Warm up: one answer read whole.
    s.send("GET", "/api/big/1048576", b"").await.unwrap();
    let before = rss(server.pid());

    let (statuses, held) = hold_streams(&server, &mut s, 4, 32, "/api/big/1048576").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss(server.pid());
    let grew = during.saturating_sub(before);
    let ok = statuses.iter().filter(|&&st| st == 200).count();
    // 503 before the upstream is called; 502 when the budget ran out while the answer
    // was arriving.
    let refused = statuses
        .iter()
        .filter(|&&st| st == 503 || st == 502)
        .count();
    eprintln!(
        "RSS {} -> {} MiB: {ok} answers held, {refused} refused",
        before / MIB,
        during / MIB
    );
    assert!(
        grew < 48 * MIB,
        "RSS grew by {} MiB with {ok} answers held (statuses {statuses:?})",
        grew / MIB
    );
    assert!(ok >= 1, "no answer at all: {statuses:?}");
    assert!(refused >= 1, "nothing was refused: {statuses:?}");
    assert_eq!(ok + refused, statuses.len(), "{statuses:?}");
    drop(held);
}

/// Opens `connections` HTTP/2 connections with a zero receive window and sends
/// `streams` sealed GETs of `target` on each; returns the answers' statuses, and the
/// answers and connections, kept open (their bodies unread) until dropped.
async fn hold_streams(
    server: &crate::support::Server,
    s: &mut session_crypto_client::Session,
    connections: usize,
    streams: usize,
    target: &'static str,
) -> (Vec<u16>, Held) {
    let addr = server.url.trim_start_matches("http://").to_owned();
    let held = s.current();
    let cs = &*held;
    let (mut held, mut senders) = (Vec::new(), Vec::new());
    let mut statuses = Vec::new();
    for _ in 0..connections {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut pending = Vec::new();
        for _ in 0..streams {
            let line = RequestLine {
                method: "GET",
                target,
                content_type: "",
            };
            let sealed = cs.seal(now_ms(), line, b"").unwrap();
            let req = hyper::Request::get(format!("http://{addr}{target}"))
                .header("x-kid", cs.kid())
                .header("x-idempotency-key", &sealed.idempotency_key)
                .header("x-clientid", cs.client_id())
                .header("x-envelope", b64(&sealed.envelope))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let mut sender = sender.clone();
            sender.ready().await.unwrap();
            pending.push(tokio::spawn(async move { sender.send_request(req).await }));
        }
        for p in pending {
            // The head arrives; the body never can (a zero window). Keep the stream.
            let resp = tokio::time::timeout(Duration::from_secs(20), p)
                .await
                .expect("an answer's head")
                .unwrap()
                .unwrap();
            statuses.push(resp.status().as_u16());
            held.push(resp);
        }
        senders.push(sender);
    }
    let held = Held {
        _answers: held,
        _senders: senders,
    };
    (statuses, held)
}

/// Answers whose bodies are not read, and their connections.
struct Held {
    _answers: Vec<hyper::Response<hyper::body::Incoming>>,
    _senders: Vec<hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>>,
}

#[tokio::test]
async fn one_connection_holds_at_most_its_share_of_gateway_answers() {
    let upstream = Upstream::start();
    let server = gateway_server(&upstream, &[("GATEWAY_MAX_ANSWERS_PER_CONNECTION", "8")]);
    let mut s = session(&server, Protocol::V2).await;
    let (statuses, held) = hold_streams(&server, &mut s, 1, 32, "/api/big/100000").await;
    let ok = statuses.iter().filter(|&&st| st == 200).count();
    assert_eq!(ok, 8, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|&&st| st == 503).count(),
        24,
        "{statuses:?}"
    );
    // Another connection has its own slots, and the refused requests used up nothing:
    // the session goes on.
    s.send("GET", "/api/big/10", b"").await.unwrap();
    drop(held);
    // Once the answers are gone, the slots are free again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (statuses, _held) = hold_streams(&server, &mut s, 1, 8, "/api/big/10").await;
    assert!(statuses.iter().all(|&st| st == 200), "{statuses:?}");
}
