//! An `https://` upstream: the gateway speaks TLS to it with the backend's rustls
//! provider, trusting the route's CA file (or the system's bundle).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use session_crypto_client::Protocol;

use crate::gateway::session;
use crate::support::{Server, TestPki, run_to_exit};

/// A TLS upstream (a certificate for `localhost` and 127.0.0.1 from `pki`) answering
/// every request with `tls:<path>`.
async fn tls_upstream(pki: &TestPki) -> u16 {
    let (provider, _) = crypto_backends::tls_provider("aws-lc-rs")
        .or_else(|| crypto_backends::tls_provider("ring"))
        .unwrap();
    let config = http_adapter::tls::server_config(provider, &pki.cert, &pki.key).unwrap();
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = format!("tls:{}", req.uri().path());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    port
}

#[tokio::test]
async fn an_https_upstream_is_reached_over_tls_with_the_routes_ca() {
    let pki = TestPki::new("gateway-upstream");
    let port = tls_upstream(&pki).await;
    let upstream = format!("https://localhost:{port}/v1");
    let ca = pki.ca.to_str().unwrap();
    let server = Server::start(&[("GATEWAY_UPSTREAM", &upstream), ("GATEWAY_CA_FILE", ca)]);
    let s = session(&server, Protocol::V2).await;
    let answer = s.send("POST", "/api/orders", b"{}").await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.bytes(), b"tls:/v1/orders");

    // Without the private CA the upstream's certificate is not trusted: 502.
    let untrusting = Server::start(&[("GATEWAY_UPSTREAM", &upstream)]);
    let s = session(&untrusting, Protocol::V2).await;
    let err = s.send("POST", "/api/orders", b"{}").await.unwrap_err();
    assert!(err.to_string().contains("BAD_GATEWAY"), "{err}");
}

#[test]
fn https_upstream_settings_are_checked_at_start_up() {
    let pki = TestPki::new("gateway-upstream-settings");
    let ca = pki.ca.to_str().unwrap();
    let with_backend = |envs: &[(&str, &str)]| {
        let mut all = vec![("CRYPTO_BACKEND", "rustcrypto")];
        all.extend_from_slice(envs);
        all.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    let check = |envs: &[(&str, &str)]| {
        let all = with_backend(envs);
        let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_to_exit(&["check-config"], &refs)
    };
    let refused = |envs: &[(&str, &str)], needle: &str| {
        let (code, err) = check(envs);
        assert_ne!(code, 0, "{envs:?} was accepted");
        assert!(err.contains(needle), "{envs:?}: {err}");
    };
    refused(
        &[
            ("GATEWAY_UPSTREAM", "https://localhost:8443"),
            ("GATEWAY_HTTP2", "true"),
        ],
        "only supported to http:// upstreams",
    );
    refused(
        &[
            ("GATEWAY_UPSTREAM", "http://localhost:8080"),
            ("GATEWAY_CA_FILE", ca),
        ],
        "ca_file only applies",
    );
    refused(
        &[
            ("GATEWAY_UPSTREAM", "https://localhost:8443"),
            ("GATEWAY_CA_FILE", "/nonexistent/ca.pem"),
        ],
        "ca_file",
    );
    // RustCrypto borrows the first rustls provider of the backend list.
    let (code, out) = check(&[
        ("GATEWAY_UPSTREAM", "https://localhost:8443"),
        ("GATEWAY_CA_FILE", ca),
    ]);
    assert_eq!(code, 0, "{out}");
}
