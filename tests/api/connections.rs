//! Every connection state has a deadline, and one address cannot hold every slot
//! (issue 12 item 2). Each test fails on a server without the matching deadline.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

fn addr(server: &Server) -> std::net::SocketAddr {
    server.url.trim_start_matches("http://").parse().unwrap()
}

/// `GET /health` on a fresh connection, within `limit`.
async fn health_within(server: &Server, limit: Duration) -> Duration {
    let started = Instant::now();
    let answered = tokio::time::timeout(limit, async {
        let mut conn = server.connect().await;
        conn.send(hyper::Method::GET, "/health", &[], "")
            .await
            .unwrap()
    })
    .await
    .unwrap_or_else(|_| panic!("GET /health got no answer within {limit:?}"));
    assert_eq!(answered.status, 200);
    started.elapsed()
}

/// Waits until the server closes `stream` (read returns 0 or fails).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still open after {limit:?}"));
    started.elapsed()
}

#[tokio::test]
async fn one_byte_then_silence_does_not_hold_a_slot() {
    let server = Server::start(&[("MAX_CONNECTIONS", "20"), ("HEADER_READ_TIMEOUT_MS", "500")]);
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr(&server)).await.unwrap();
        s.write_all(b"P").await.unwrap(); // the first byte of the HTTP/2 preface: the sniffer waits
        held.push(s);
    }
    // Every slot is taken by a one-byte connection; they must be let go.
    health_within(&server, Duration::from_secs(5)).await;
    for s in &mut held {
        closed_within(s, Duration::from_secs(3)).await;
    }
}

#[tokio::test]
async fn half_an_http2_preface_does_not_hold_a_slot() {
    let server = Server::start(&[("MAX_CONNECTIONS", "4"), ("HEADER_READ_TIMEOUT_MS", "500")]);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr(&server)).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        held.push(s);
    }
    health_within(&server, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    use http_body_util::Empty;
    let server = Server::start(&[("CONNECTION_IDLE_TIMEOUT_MS", "1000")]);
    let tcp = TcpStream::connect(addr(&server)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(format!("{}/health", server.url))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    // Now nothing happens on it: the server must close it.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .expect("the idle HTTP/2 connection is still open after 5 s")
        .unwrap()
        .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_is_cut_off() {
    let server = Server::start(&[("MAX_CONNECTIONS", "1"), ("WRITE_TIMEOUT_MS", "1000")]);
    let mut hog = TcpStream::connect(addr(&server)).await.unwrap();
    // Pipelined requests for a large document, never read: the server's writes block.
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    let many: Vec<u8> = request
        .iter()
        .copied()
        .cycle()
        .take(request.len() * 2000)
        .collect();
    let _ = tokio::time::timeout(Duration::from_secs(2), hog.write_all(&many)).await;
    // The only slot is the hog's until its write deadline lets it go.
    let waited = health_within(&server, Duration::from_secs(10)).await;
    assert!(waited < Duration::from_secs(8), "{waited:?}");
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let server = Server::start(&[("MAX_CONNECTIONS_PER_IP", "5")]);
    let from = |ip: &str| {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        socket.connect(addr(&server))
    };
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(from("127.0.0.2").await.unwrap());
    }
    // The sixth from the same address is closed at once...
    let mut sixth = from("127.0.0.2").await.unwrap();
    let _ = sixth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    closed_within(&mut sixth, Duration::from_secs(2)).await;
    // ...while another address is served.
    health_within(&server, Duration::from_secs(3)).await;
    // And a slot comes back when a connection ends.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = from("127.0.0.2").await.unwrap();
    again
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    again.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
