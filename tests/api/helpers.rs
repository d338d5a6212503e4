//! Requests and checks that several areas share.

use domain::client::ClientSession;
use session_crypto_client::FlowError;

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
) -> (session_crypto_client::ProtocolClient, ClientSession) {
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

pub(crate) fn assert_401(result: Result<(Vec<u8>, session_crypto_client::StepTimings), FlowError>) {
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

/// A signing key pair in a temporary directory, made by `keygen --signing`.
pub(crate) struct SigningKey {
    _dir: tempfile_dir::Dir,
    pub(crate) private: std::path::PathBuf,
    pub(crate) public: ports::P256PublicKey,
}

mod tempfile_dir {
    /// A directory removed on drop.
    pub(super) struct Dir(pub(super) std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub(crate) fn signing_key(name: &str) -> SigningKey {
    let ((code, out), err) = run_to_exit_with_stdout(&["keygen", "--signing"], &[]);
    assert_eq!(code, 0, "{err}");
    let dir = std::env::temp_dir().join(format!("sc-v2-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("signing.pem");
    let end = out.find("-----END PRIVATE KEY-----").unwrap() + "-----END PRIVATE KEY-----\n".len();
    std::fs::write(&private, &out[..end]).unwrap();
    let public = domain::signing_key::parse_public_key(&out[end..]).expect("a public key");
    SigningKey {
        _dir: tempfile_dir::Dir(dir),
        private,
        public,
    }
}

/// The error of a v2 session set-up on `server` by a client pinning `pins` (panics if
/// it succeeds).
pub(crate) async fn pinned_connect_error(
    server: &Server,
    pins: &[ports::P256PublicKey],
) -> session_crypto_client::Error {
    session_crypto_client::Session::builder(&server.url, "PIN")
        .crypto(server.crypto)
        .pinned_keys(pins.iter().copied())
        .connect()
        .await
        .expect_err("the set-up is refused")
}

/// Whether `err` is the refusal of an init not signed by a pinned key.
pub(crate) fn is_signature_refusal(err: &session_crypto_client::Error) -> bool {
    matches!(
        err,
        session_crypto_client::Error::Handshake(domain::client::ClientError::Signature)
    )
}

/// `GET /.well-known/session-crypto` (must be 200): the document and its `Cache-Control`.
pub(crate) async fn well_known(server: &Server) -> (serde_json::Value, String) {
    let mut conn = server.connect().await;
    let resp = conn
        .send(hyper::Method::GET, "/.well-known/session-crypto", &[], "")
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let cache = resp.header("cache-control").unwrap_or_default().to_owned();
    (json(&resp), cache)
}

/// One purchase through the library's session.
pub(crate) async fn buy(
    session: &mut session_crypto_client::Session,
) -> Result<session_crypto_client::Response, session_crypto_client::Error> {
    session
        .send(
            "POST",
            "/transaction/purchase",
            br#"{"schemeCode":"AEF","amount":1}"#,
        )
        .await
}
