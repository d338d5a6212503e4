//! Interoperability: every backend on both init routes, and the independent WebCrypto client.

use hyper::Method;
use session_crypto_client::InitRoute;

use crate::support::*;

#[tokio::test]
async fn every_backend_serves_both_init_routes_and_purchase() {
    for crypto in backends() {
        let server = Server::start_with(crypto, &[]);
        let mut client = server.client("RUST_CLIENT").await;
        for route in [InitRoute::Unversioned, InitRoute::V1] {
            let (session, init) = client.init(route, None).await.unwrap();
            assert!(
                init.server_timing
                    .as_deref()
                    .is_some_and(|t| t.contains("ecdh-keygen;dur=") && t.contains("total;dur="))
            );
            let (plain, purchase) = client.purchase(&session, PAYLOAD).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
            assert_eq!(v["status"], "SUCCESS", "{}", crypto.name);
            assert_eq!(v["schemeCode"], "AEF");
            assert_eq!(v["amount"], 5000);
            let txn = v["transactionId"].as_str().unwrap();
            assert!(
                txn.len() == 20
                    && txn.starts_with("TXN-")
                    && txn[4..]
                        .bytes()
                        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            );
            // field order on the wire is the §9 order
            let text = String::from_utf8_lossy(&plain);
            let positions: Vec<usize> = [
                "status",
                "transactionId",
                "schemeCode",
                "amount",
                "timestamp",
                "message",
            ]
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
            assert!(
                purchase
                    .server_timing
                    .unwrap()
                    .contains("aes-gcm-decrypt;dur=")
            );
        }
        let mut conn = server.connect().await;
        let health = conn.send(Method::GET, "/health", &[], "").await.unwrap();
        assert_eq!(health.status, 200);
        let h = json(&health);
        assert_eq!(h["cryptoBackend"], crypto.name);
        assert_eq!(h["status"], "ok");
        assert_eq!(h["redis"], "disabled");
    }
}

#[tokio::test]
async fn independent_webcrypto_client_interoperates_with_every_backend() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/interop/client.mjs");
    for crypto in backends() {
        let server = Server::start_with(crypto, &[]);
        let out = std::process::Command::new("node")
            .arg(script)
            .arg(&server.url)
            .output()
            .expect("node is installed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}\n{}",
            crypto.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("\"status\":\"SUCCESS\""), "{stdout}");
    }
}
