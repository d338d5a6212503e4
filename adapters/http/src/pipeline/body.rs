//! Reading request bodies within a size limit and a deadline.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domain::Family;
use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;
use hyper::header::{self, HeaderMap};
use hyper::{Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::info;

use crate::metrics;
use crate::wire::{Body, code_error, identity_error};

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyFailure {
    TooLarge,
    Timeout,
    Broken,
    /// The bytes buffered across all requests reached the budget.
    OverBudget,
}

/// A bound on the request bytes buffered at once across every connection (HTTP/2 lets
/// one client open many streams, each with a body up to the limit). Cheap to clone.
#[derive(Debug, Clone)]
pub struct BodyBudget(Arc<Semaphore>);

/// Bytes of the budget held by one buffered body, given back when dropped.
#[derive(Debug)]
pub(crate) struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    /// Nothing held yet.
    pub(crate) fn none() -> Self {
        Self(None)
    }
}

impl BodyBudget {
    /// A budget of `bytes` (0 = no bound).
    pub fn new(bytes: usize) -> Self {
        let bytes = if bytes == 0 {
            Semaphore::MAX_PERMITS
        } else {
            bytes.min(Semaphore::MAX_PERMITS)
        };
        Self(Arc::new(Semaphore::new(bytes)))
    }

    /// Takes `n` more bytes into `held`, or fails at once when they are not free.
    pub(crate) fn take(&self, held: &mut Held, n: usize) -> Result<(), BodyFailure> {
        let Ok(n) = u32::try_from(n) else {
            return Err(BodyFailure::OverBudget);
        };
        let more = Arc::clone(&self.0)
            .try_acquire_many_owned(n)
            .map_err(|_| BodyFailure::OverBudget)?;
        match &mut held.0 {
            Some(permit) => permit.merge(more),
            None => held.0 = Some(more),
        }
        Ok(())
    }
}

/// A request body the server can read: hyper's incoming body (or a test's), yielding
/// `Bytes`, with an error that boxes.
pub trait RequestBody:
    HttpBody<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send
{
}

impl<B> RequestBody for B where
    B: HttpBody<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send
{
}

/// Reads the whole body, at most `limit` bytes, within `timeout`.
///
/// An oversized body is still read and discarded — up to 8 × the limit, within the
/// same deadline — before the 413 goes out ("lingering close"): a server that closes
/// on unread data makes the kernel reset the connection, and the client would see a
/// write error instead of the 413. Larger bodies are refused without reading them.
pub(crate) async fn read_body<B>(
    limit: usize,
    timeout: Duration,
    budget: &BodyBudget,
    headers: &HeaderMap,
    body: B,
) -> Result<(Bytes, Held), BodyFailure>
where
    B: RequestBody,
{
    let drain_limit = limit.saturating_mul(8);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > drain_limit as u64) {
        return Err(BodyFailure::TooLarge);
    }
    let mut held = Held(None);
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut buf = bytes::BytesMut::new();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| BodyFailure::Broken)?.into_data() else {
                continue; // trailers
            };
            seen = seen.saturating_add(data.len());
            if seen > drain_limit {
                return Ok(None);
            }
            if seen <= limit {
                // Only what is kept counts; what is drained is dropped at once.
                budget.take(&mut held, data.len())?;
                buf.extend_from_slice(&data);
            }
        }
        Ok::<_, BodyFailure>((seen <= limit).then(|| buf.freeze()))
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(BodyFailure::Timeout),
        Ok(Ok(Some(bytes))) => Ok((bytes, held)),
        Ok(Ok(None)) => Err(BodyFailure::TooLarge),
        Ok(Err(failure)) => Err(failure),
    }
}

/// The family's answer to a body that could not be read.
pub(crate) fn body_failure(
    family: Family,
    route: &'static str,
    failure: BodyFailure,
) -> Response<Body> {
    let (status, code, message) = match failure {
        BodyFailure::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "request body too large",
        ),
        BodyFailure::Timeout => (
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            "request body not received in time",
        ),
        BodyFailure::Broken => (
            StatusCode::BAD_REQUEST,
            "CRYPTO_ERROR",
            "request body could not be read",
        ),
        BodyFailure::OverBudget => (
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "too many request bodies in flight, retry later",
        ),
    };
    info!(status = status.as_u16(), reason = message, "rejected");
    metrics::rejection(
        route,
        match failure {
            BodyFailure::TooLarge => "body_too_large",
            BodyFailure::Timeout => "body_timeout",
            BodyFailure::Broken => "body_unreadable",
            BodyFailure::OverBudget => "body_budget",
        },
    );
    match family {
        Family::V1Paths => identity_error(status, message),
        Family::Unversioned => code_error(status, code),
    }
}
