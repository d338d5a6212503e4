//! [`ProtocolClient::init`]: steps 1–5 — the key pair, the init request, and the
//! session's keys from the answer (v1, or v2 with its confirmation and signature).

use domain::headers::name;
use std::time::Instant;

use domain::client::{ClientSession, Handshake, V2Answer};
use domain::encoding::{base64_decode, base64_encode};
use hyper::{Method, StatusCode};
use ports::Protocol;

use super::{ProtocolClient, StepTimings, exchange};
use crate::{FlowError, fresh_idempotency_key};

/// The route an init goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitRoute {
    /// `POST /session/init`.
    Unversioned,
    /// `POST /v1/session/init`.
    V1,
}

/// The init answer's fields.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitAnswer {
    session_id: String,
    server_public_key: String,
    #[serde(default)]
    expires_in_sec: u64,
    #[serde(default)]
    protocol: Option<u64>,
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

fn b64(field: &str, text: &str) -> Result<Vec<u8>, FlowError> {
    base64_decode(text).ok_or_else(|| FlowError::Protocol(format!("{field} is not base64")))
}

impl ProtocolClient {
    /// Steps 1–5: key pair, init request, key derivation.
    ///
    /// # Errors
    /// [`FlowError`].
    pub async fn init(
        &mut self,
        route: InitRoute,
        ttl_sec: Option<u64>,
    ) -> Result<(ClientSession, StepTimings), FlowError> {
        let mut timings = StepTimings::default();
        let t = Instant::now();
        let handshake = Handshake::start(self.crypto)?;
        timings.crypto.push(("ecdh-keygen", t.elapsed()));
        let mut body = format!(
            r#"{{"clientPublicKey":"{}""#,
            base64_encode(&handshake.public_key().0)
        );
        if let Some(ttl) = ttl_sec {
            body.push_str(&format!(r#","ttlSec":{ttl}"#));
        }
        if self.protocol != Protocol::V1 {
            body.push_str(&format!(r#","protocol":{}"#, self.protocol.number()));
        }
        body.push('}');
        let key = fresh_idempotency_key(self.crypto)?;
        let path = match route {
            InitRoute::Unversioned => "/session/init",
            InitRoute::V1 => "/v1/session/init",
        };
        let headers = [
            ("content-type", "application/json"),
            (name::IDEMPOTENCY_KEY, key.as_str()),
            (name::CLIENT_ID, &self.client_id),
        ];
        let resp = exchange(
            &mut self.conn,
            Method::POST,
            path,
            &headers,
            body,
            StatusCode::OK,
            &mut timings,
        )
        .await?;
        let answer: InitAnswer = serde_json::from_slice(&resp.body)
            .map_err(|e| FlowError::Protocol(format!("init answer: {e}")))?;
        let server_key = b64("serverPublicKey", &answer.server_public_key)?;
        let t = Instant::now();
        let session = match self.protocol {
            Protocol::V1 => {
                if answer.protocol.is_some_and(|v| v != 1) {
                    return Err(FlowError::Protocol(
                        "the server answered another version".into(),
                    ));
                }
                let mut session =
                    handshake.finish(&answer.session_id, &server_key, &self.client_id)?;
                if self.unmarked_v1_answers {
                    session.accept_unmarked_v1_answers();
                }
                session
            }
            Protocol::V2 => {
                // No silent downgrade: a server that answers v1 (or nothing) to a v2
                // init is refused.
                if answer.protocol != Some(2) {
                    return Err(FlowError::Protocol(
                        "the server did not answer with protocol 2".into(),
                    ));
                }
                let confirm = b64("confirm", answer.confirm.as_deref().unwrap_or_default())?;
                let signature = answer
                    .signature
                    .as_deref()
                    .map(|s| b64("signature", s))
                    .transpose()?;
                let fields = V2Answer {
                    session_id: &answer.session_id,
                    server_public_key: &server_key,
                    expires_in_sec: answer.expires_in_sec,
                    confirm: &confirm,
                    signature: signature.as_deref(),
                };
                handshake.finish_v2(&fields, &self.client_id, &self.pinned)?
            }
        };
        timings.crypto.push(("ecdh-compute+hkdf", t.elapsed()));
        Ok((session, timings))
    }
}
