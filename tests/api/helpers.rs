//! Requests and checks that several areas share.

use domain::client::ClientSession;
use http_adapter::client::FlowError;

use crate::support::*;

pub(crate) fn init_headers<'a>(key: &'a str, client: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("content-type", "application/json"),
        ("x-idempotency-key", key),
        ("x-clientid", client),
    ]
}

pub(crate) fn init_body(pk: &[u8]) -> String {
    format!(r#"{{"clientPublicKey":"{}","ttlSec":1800}}"#, b64(pk))
}

/// A valid public key written in the URL-safe alphabet (one whose standard base64 has a
/// `+` or `/` to replace, so the text really differs).
pub(crate) fn url_safe_key_text(crypto: ports::CryptoProvider) -> String {
    loop {
        let text = b64(&fresh_public_key(crypto));
        if text.contains(['+', '/']) {
            return text.replace('+', "-").replace('/', "_");
        }
    }
}

pub(crate) async fn established(
    server: &Server,
    client_id: &str,
) -> (http_adapter::client::ProtocolClient, ClientSession) {
    let mut client = server.client(client_id).await;
    let (session, _) = client.init(INIT, None).await.unwrap();
    (client, session)
}

pub(crate) fn purchase_headers<'a>(
    kid: &'a str,
    key: &'a str,
    client: &'a str,
) -> [(&'a str, &'a str); 4] {
    [
        ("content-type", "application/octet-stream"),
        ("x-kid", kid),
        ("x-idempotency-key", key),
        ("x-clientid", client),
    ]
}

pub(crate) fn assert_401(result: Result<(Vec<u8>, http_adapter::client::StepTimings), FlowError>) {
    match result {
        Err(FlowError::Status { status, body, .. }) => {
            assert_eq!(status, 401);
            assert_eq!(body, r#"{"error":"SESSION_EXPIRED"}"#);
        }
        other => panic!("expected 401 SESSION_EXPIRED, got {other:?}"),
    }
}

/// The value of the sample `name{labels}` in Prometheus text, if present.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub(crate) const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
