//! Start-up checks, graceful shutdown, readiness, and connection deadlines.

use hyper::Method;
use std::time::Duration;

use crate::helpers::*;
use crate::support::*;

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
async fn two_thousand_idle_connections_do_not_starve_real_clients() {
    let server = Server::start(&[("MAX_CONNECTIONS_PER_IP", "2000")]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    // From another address than the real client's: one address may hold only
    // MAX_CONNECTIONS_PER_IP connections, which is raised here to hold them all.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        idle.push(
            socket
                .connect(addr.parse().unwrap())
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

/// The soft open-file limit of a running process.
fn soft_open_file_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn a_low_soft_open_file_limit_is_raised_and_only_a_low_hard_one_warns() {
    let dir = std::env::temp_dir().join(format!("sc-nofile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 500 connections on one listener can use 564 descriptors.
    let envs = [("MAX_CONNECTIONS", "500")];

    let log = dir.join("raised.log");
    let server = Server::start_with_open_file_limits(256, 1024, &envs, &log);
    assert_eq!(
        soft_open_file_limit(server.pid()),
        564,
        "raised to what is needed"
    );
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("open-file limit"),
        "no warning when it could be raised: {text}"
    );

    let log = dir.join("capped.log");
    let server = Server::start_with_open_file_limits(256, 300, &envs, &log);
    assert_eq!(
        soft_open_file_limit(server.pid()),
        300,
        "raised as far as the hard limit"
    );
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("open-file limit is below what the settings can use"),
        "{text}"
    );
    assert!(
        text.contains("needed=564") && text.contains("open_file_limit=300"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
