//! HTTPS with rustls: every backend, handshake deadline, ALPN.

use std::time::Duration;

use crate::support::*;

#[test]
fn https_serves_every_backend_to_the_client_and_the_load_generator() {
    let pki = TestPki::new("https");
    let (cert, key, ca) = (
        pki.cert.to_str().unwrap(),
        pki.key.to_str().unwrap(),
        pki.ca.to_str().unwrap(),
    );
    for crypto in backends() {
        let server = Server::start_with(crypto, &[("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key)]);
        assert!(server.url.starts_with("https://"), "{}", server.banner);
        // The provider the backend list gives the backend (its own, or a borrowed one).
        let (_, provider) = crypto_backends::tls_provider(crypto.name).unwrap();
        assert!(
            server
                .banner
                .ends_with(&format!("TLS provider {provider})")),
            "{}",
            server.banner
        );
        let env = [("CRYPTO_BACKEND", crypto.name)];
        let ((code, out), err) =
            run_to_exit_with_stdout(&["client", "--url", &server.url, "--ca-file", ca], &env);
        assert_eq!(code, 0, "{}: {err}", crypto.name);
        assert!(out.contains(r#""transactionId":"TXN-"#), "{out}");
        // By name too (the certificate is for localhost and 127.0.0.1).
        let by_name = server.url.replace("127.0.0.1", "localhost");
        let ((code, _), err) =
            run_to_exit_with_stdout(&["client", "--url", &by_name, "--ca-file", ca], &env);
        assert_eq!(code, 0, "{err}");
    }

    let server = Server::start(&[("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", key)]);
    let env = [("CRYPTO_BACKEND", server.crypto.name)];
    let ((code, out), err) = run_to_exit_with_stdout(
        &[
            "bench",
            "--url",
            &server.url,
            "--ca-file",
            ca,
            "-n",
            "60",
            "-c",
            "4",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("Flows: 60 ok, 0 errors"), "{out}");
    // The server's own step timings, averaged per endpoint.
    let steps: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("Server-Timing (mean ms): "))
        .collect();
    assert_eq!(steps.len(), 2, "{out}");
    assert!(
        steps[0].contains("ecdh-compute ") && steps[0].contains("total "),
        "{out}"
    );
    assert!(
        steps[1].contains("aes-gcm-decrypt ") && steps[1].contains("total "),
        "{out}"
    );
    // A client that does not trust the CA refuses the server.
    let ((code, _), err) = run_to_exit_with_stdout(&["client", "--url", &server.url], &env);
    assert_eq!(code, 1);
    assert!(err.contains("TLS") && err.contains("certificate"), "{err}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = server.url.replace("https://", "http://");
    let ((code, _), err) = run_to_exit_with_stdout(&["client", "--url", &plain], &env);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn a_stalled_tls_handshake_is_cut_off_and_bad_tls_settings_stop_start_up() {
    use std::io::{Read, Write};
    let pki = TestPki::new("handshake");
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let server = Server::start(&[
        ("TLS_CERT_FILE", cert),
        ("TLS_KEY_FILE", key),
        ("TLS_HANDSHAKE_TIMEOUT_MS", "300"),
    ]);
    let addr = server.url.trim_start_matches("https://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    // The first byte of a TLS record, then nothing.
    stream.write_all(&[0x16]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "closed by the 300 ms handshake timeout, not the 10 s header timeout ({waited:?})"
    );

    let backend = default_backend().name;
    for (envs, expected) in [
        (
            vec![("TLS_CERT_FILE", cert)],
            "set both TLS_CERT_FILE and TLS_KEY_FILE",
        ),
        (
            vec![("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", cert)],
            "TLS_KEY_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", "/nonexistent/cert.pem"),
                ("TLS_KEY_FILE", key),
            ],
            "TLS_CERT_FILE /nonexistent/cert.pem",
        ),
    ] {
        let mut envs = envs;
        envs.push(("CRYPTO_BACKEND", backend));
        let (code, err) = run_to_exit(&["serve"], &envs);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
}

#[tokio::test]
async fn https_offers_http2_by_alpn() {
    use http_body_util::{BodyExt, Empty};
    let pki = TestPki::new("alpn");
    let server = Server::start(&[
        ("TLS_CERT_FILE", pki.cert.to_str().unwrap()),
        ("TLS_KEY_FILE", pki.key.to_str().unwrap()),
    ]);
    let (provider, _) = session_crypto::backend::tls_provider(server.crypto).unwrap();
    let mut config =
        (*session_crypto_client::tls::client_config(provider, Some(&pki.ca)).unwrap()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let addr = server.url.trim_start_matches("https://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("https://{addr}/health"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["cryptoBackend"], server.crypto.name);
}
