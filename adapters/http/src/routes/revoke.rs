//! `POST /session/revoke`: the client ends its own session.

use domain::{PayloadError, SessionService};
use hyper::Response;
use ports::Ports;
use tracing::info;

use super::Incoming;
use super::exchange::{self, EncryptedHeaders};
use crate::config::ApiConfig;
use crate::metrics;
use crate::pipeline::body::RequestBody;
use crate::pipeline::timing::server_timing;
use crate::wire::{Body, SERVER_TIMING, is_json_object, no_content};

#[derive(serde::Deserialize)]
struct RevokeJson<'a> {
    #[serde(borrow)]
    action: std::borrow::Cow<'a, str>,
}

/// The plaintext of a revocation must say so: a JSON object with `"action":"revoke"`.
/// Any other plaintext — another route's request, a response — is refused before its
/// nonce is used up.
fn check(plain: &[u8]) -> Result<(), PayloadError> {
    let parsed = is_json_object(plain)
        .then(|| serde_json::from_slice::<RevokeJson<'_>>(plain).ok())
        .flatten();
    match parsed {
        Some(r) if r.action == "revoke" => Ok(()),
        _ => Err(PayloadError::Shape(
            r#"revocation plaintext is not {"action":"revoke"}"#,
        )),
    }
}

/// Serves one revocation: 204 once the session is gone from the store and the cache.
pub(crate) async fn serve<P, B>(
    service: &SessionService<P>,
    config: &ApiConfig,
    req: Incoming<'_, B>,
) -> Response<Body>
where
    P: Ports,
    B: RequestBody,
{
    let Incoming {
        parts,
        body,
        template,
        started,
        ..
    } = req;
    let headers = EncryptedHeaders::of(&parts);
    let mut body =
        match exchange::read_envelope(service, config, &headers, &parts, body, template).await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
    let req = headers.request(&mut body);
    match service.revoke(req, check).await {
        Ok(timings) => {
            info!(route = "/session/revoke", "session revoked");
            metrics::session_revoked();
            let mut r = no_content();
            r.headers_mut()
                .insert(SERVER_TIMING, server_timing(timings.entries(), started));
            r
        }
        Err(e) => exchange::refuse(service, &headers, "/session/revoke", &e).await,
    }
}

#[cfg(test)]
mod tests {
    use hyper::StatusCode;

    use crate::routes::test_support::{App, body_json};

    #[tokio::test]
    async fn a_revoked_session_can_no_longer_be_used() {
        let app = App::new();
        let session = app.session("1").await;
        let revoke = app.seal(&session, br#"{"action":"revoke"}"#);
        assert_eq!(
            app.post("/session/revoke", &revoke).await.0,
            StatusCode::NO_CONTENT
        );
        let buy = app.seal(&session, br#"{"schemeCode":"AEF","amount":1}"#);
        let (status, resp) = app.post("/transaction/purchase", &buy).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body_json(resp).await["error"], "SESSION_EXPIRED");
    }
}
