//! What an encrypted route adds to the exchange: a pure [`check`] of the plaintext and an
//! async [`handle`] that does the route's work — the gateway's shape, for every route.
//!
//! [`check`]: EncryptedRoute::check
//! [`handle`]: EncryptedRoute::handle

use std::convert::Infallible;
use std::future::Future;

use super::ResponseContext;

/// Why a route refused an authentic plaintext (wire: 400 `CRYPTO_ERROR`, like every
/// refusal the client cannot act on). Its nonce stays unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The plaintext is not of the route's shape (not JSON, missing or mistyped fields).
    #[error("payload is not of the route's shape: {0}")]
    Shape(&'static str),
    /// `schemeCode` empty, longer than 64 characters, or holding a control character.
    #[error("schemeCode must be 1-64 characters, none of them a control character")]
    SchemeCode,
    /// `amount` not finite, not positive, or above [`crate::purchase::MAX_AMOUNT`].
    #[error("amount must be a number > 0 and <= 1e15")]
    Amount,
}

/// An encrypted route's own part of [`SessionService::exchange`], in two steps.
///
/// # Contract
/// - [`check`](Self::check) MUST be pure: no I/O, no side effect. It runs once the
///   envelope has opened and *before* the nonce is claimed, so a plaintext the route
///   refuses keeps its nonce; and it may run for both of two racing copies of one
///   request.
/// - [`handle`](Self::handle) runs only after the nonce has been claimed and the use
///   counted, so of two racing copies of one request (or a replay) at most one ever gets
///   here. It is the only place for side effects, and it may await ports (a store, an
///   upstream). Its error is the route's own: the exchange answers it unsealed, and the
///   nonce stays used (the request was authentic and fresh; the client must send a new
///   one).
///
/// A route with no side effect can be a plain function
/// `Fn(&[u8], &ResponseContext) -> Result<Vec<u8>, PayloadError>`: it is all check,
/// and its answer is what the check returns.
///
/// [`SessionService::exchange`]: crate::SessionService::exchange
pub trait EncryptedRoute: Sync {
    /// What the check makes of the plaintext, for the handler (it may borrow the
    /// plaintext, which lives until the answer is sealed).
    type Checked<'p>: Send;
    /// The handler's own failure.
    type Error: std::error::Error + Send;

    /// Checks the plaintext against the route's rules.
    ///
    /// # Errors
    /// [`PayloadError`]: the request does not fit the route (its nonce stays unused).
    fn check<'p>(
        &self,
        plaintext: &'p [u8],
        context: &ResponseContext,
    ) -> Result<Self::Checked<'p>, PayloadError>;

    /// Does the route's work and returns the answer's plaintext.
    ///
    /// # Errors
    /// The route's own error.
    fn handle<'p>(
        &'p self,
        checked: Self::Checked<'p>,
        context: ResponseContext,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send + 'p;
}

impl<F> EncryptedRoute for F
where
    F: Fn(&[u8], &ResponseContext) -> Result<Vec<u8>, PayloadError> + Sync,
{
    type Checked<'p> = Vec<u8>;
    type Error = Infallible;

    fn check(&self, plaintext: &[u8], context: &ResponseContext) -> Result<Vec<u8>, PayloadError> {
        self(plaintext, context)
    }

    fn handle<'p>(
        &'p self,
        checked: Vec<u8>,
        _context: ResponseContext,
    ) -> impl Future<Output = Result<Vec<u8>, Infallible>> + Send + 'p {
        std::future::ready(Ok(checked))
    }
}

/// Why an exchange on a route produced no answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError<E> {
    /// The exchange refused the request (nothing of the route ran but, perhaps, its
    /// check).
    #[error(transparent)]
    Exchange(#[from] super::ExchangeError),
    /// The route's handler failed, after the nonce was claimed.
    #[error("route handler: {0}")]
    Handler(E),
}

/// A route that cannot fail in its handler fails only in the exchange.
impl From<RouteError<Infallible>> for super::ExchangeError {
    fn from(e: RouteError<Infallible>) -> Self {
        match e {
            RouteError::Exchange(e) => e,
            RouteError::Handler(never) => match never {},
        }
    }
}
