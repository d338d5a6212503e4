//! `GET /v1/session/{id}` (internal listener only): the raw session key for a trusted
//! service on the private network (docs/PROTOCOL.md §8.5).

use domain::encoding::base64_encode;
use domain::{KeyRelease, ReleaseError, SessionService};
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use ports::{Ports, Protocol};
use serde::Serialize;
use tracing::info;

use crate::metrics;
use crate::wire::{Body, X_CLIENT_ID, header, identity_error, json};

/// v1: `sessionKey`, as the identity service answers. v2: `protocol` and the two
/// directional keys instead (a v1 consumer finds no `sessionKey` and fails closed).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Released<'a> {
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_key: Option<&'a str>,
    expires_at: u64,
}

/// Releases the key of the session named in `path` to its owner.
pub(crate) async fn handle<P: Ports>(
    service: &SessionService<P>,
    headers: &HeaderMap,
    path: &str,
) -> Response<Body> {
    let id = path.trim_start_matches("/v1/session/");
    match service.release_key(id, header(headers, &X_CLIENT_ID)).await {
        Ok(KeyRelease { record }) => {
            let encode = |k: &ports::SessionKey| zeroize::Zeroizing::new(base64_encode(k.expose()));
            let (request, response) = (
                encode(record.keys.request()),
                encode(record.keys.response()),
            );
            let v1 = record.keys.protocol() == Protocol::V1;
            info!(session = %&record.id[..10], "session key released on the internal listener");
            json(
                StatusCode::OK,
                &Released {
                    session_id: &record.id,
                    session_key: v1.then_some(request.as_str()),
                    protocol: (!v1).then(|| record.keys.protocol().number()),
                    request_key: (!v1).then_some(request.as_str()),
                    response_key: (!v1).then_some(response.as_str()),
                    expires_at: record.expires_at_ms,
                },
            )
        }
        Err(e) => {
            let status = match e {
                ReleaseError::MissingClientId | ReleaseError::MalformedId => {
                    StatusCode::BAD_REQUEST
                }
                ReleaseError::NotFound => StatusCode::NOT_FOUND,
                ReleaseError::Forbidden => StatusCode::FORBIDDEN,
                ReleaseError::Expired => StatusCode::GONE,
                ReleaseError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            info!(route = "GET /v1/session/{id}", status = status.as_u16(), reason = %e, "rejected");
            metrics::rejection(
                "/v1/session/{id}",
                match e {
                    ReleaseError::MissingClientId | ReleaseError::MalformedId => "bad_header",
                    ReleaseError::NotFound => "unknown_session",
                    ReleaseError::Forbidden => "client_mismatch",
                    ReleaseError::Expired => "expired_session",
                    ReleaseError::Store(_) => "store_unavailable",
                },
            );
            identity_error(status, &e.to_string())
        }
    }
}
