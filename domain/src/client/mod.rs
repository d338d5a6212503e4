//! The client side of the protocol (docs/PROTOCOL.md §12), shared by the CLI client, the
//! load generator and the tests, on the same crypto providers as the server.

use crate::envelope::EnvelopeError;
use crate::headers::HeaderError;
use crate::p256::PublicKeyError;
use crate::v2::RequestLine;

mod handshake;
mod session;

pub use handshake::{Handshake, V2Answer};
pub use session::{ClientSession, Refusal, ResponseHead, SealedRequest};

/// The request line [`ClientSession::seal_request`] assumes: the demo purchase.
pub const PURCHASE: RequestLine<'static> = RequestLine {
    method: "POST",
    target: "/transaction/purchase",
    content_type: "",
};

/// Client-side failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Our own client id is not acceptable to the protocol.
    #[error("client id: {0}")]
    ClientId(HeaderError),
    /// The server's session id is malformed.
    #[error("server returned a malformed session id")]
    SessionId,
    /// The server's public key is invalid.
    #[error("server public key: {0}")]
    ServerKey(PublicKeyError),
    /// A response header is missing or malformed.
    #[error("response X-Idempotency-Key: {0}")]
    ResponseKey(HeaderError),
    /// The response timestamp is outside the window.
    #[error("response timestamp outside the window")]
    ResponseWindow,
    /// A v1 answer whose nonce lacks the `rsp_` mark of the server's answers, or
    /// repeats the request's: v1 seals both directions under one key, so this could be
    /// the request itself sent back. Servers that do not mark their answers (the
    /// reference server) need [`ClientSession::accept_unmarked_v1_answers`].
    #[error("v1 answer without the rsp_ mark of a server answer (a reflected request?)")]
    UnmarkedResponse,
    /// A sealed refusal whose plaintext is not the `{"error", "outcome"}` object.
    #[error("a sealed refusal that is not the expected JSON")]
    RefusalFormat,
    /// The response did not authenticate.
    #[error("response envelope: {0}")]
    Envelope(EnvelopeError),
    /// The v2 init response's `confirm` is missing or wrong: the init response (or
    /// the request) was changed on the way, or the server derived other keys.
    #[error("key confirmation failed: the init exchange was tampered with")]
    Confirmation,
    /// Server keys were pinned but the init response is unsigned, signed by a key not
    /// pinned, or the signature does not verify.
    #[error("server signature missing or invalid for every pinned server key")]
    Signature,
    /// A field too long for the v2 AAD.
    #[error("request target or content type longer than 65535 bytes")]
    TooLong,
    /// Backend failure.
    #[error("crypto backend failure")]
    Crypto,
}
