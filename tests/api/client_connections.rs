//! The Rust library's session outlives its TCP connections: after the server's idle
//! close, a call dropped half-way (a timeout) or a server restart, the next call opens
//! a new connection — only when the old one is found closed before anything is sent on
//! it, so nothing runs twice.

use std::time::Duration;

use session_crypto_client::{Error, Session};

use crate::helpers::buy;
use crate::support::*;

async fn connected(server: &Server) -> Session {
    Session::builder(&server.url, "RECONNECT")
        .crypto(server.crypto)
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_outlives_the_servers_idle_close_and_a_dropped_call() {
    let server = Server::start(&[("CONNECTION_IDLE_TIMEOUT_MS", "300")]);
    let mut session = connected(&server).await;
    buy(&mut session).await.unwrap();
    // The server closes the idle connection; the next call opens another.
    tokio::time::sleep(Duration::from_millis(800)).await;
    buy(&mut session).await.unwrap();
    // A call dropped (a timeout, a cancelled task) after its first step, before its
    // answer came, leaves the connection unusable; the next call does not die with it.
    {
        let mut call = Box::pin(buy(&mut session));
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "the call was cut off half-way");
    }
    buy(&mut session).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_reaches_a_restarted_server_on_the_same_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let first = Server::start(&[("PORT", &port)]);
    let mut session = connected(&first).await;
    buy(&mut session).await.unwrap();
    assert!(first.terminate().success());
    let _second = Server::start(&[("PORT", &port)]);
    // The new process holds no session (sessions live in its memory): the answer is
    // the server's, over a new connection — not a dead channel.
    let err = buy(&mut session).await.unwrap_err();
    assert!(
        matches!(&err, Error::OutcomeUnknown { status: 401, .. }),
        "{err}"
    );
    buy(&mut session).await.unwrap();
}
