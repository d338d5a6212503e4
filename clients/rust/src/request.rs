//! [`RequestBuilder`]: one call, filled in as with reqwest — headers, body or JSON,
//! content type, `Idempotency-Key`, time limit — then sent.

use std::time::Duration;

use crate::session::Session;
use crate::{Error, Response, is_protocol_header};

/// A call being built; [`Self::send`] sends it. Mistakes (an invalid method or header,
/// a body that does not serialize) are kept and returned by `send` as
/// [`Error::Invalid`], before anything is sent.
///
/// ```no_run
/// # async fn run(session: &session_crypto_client::Session) -> Result<(), session_crypto_client::Error> {
/// use std::time::Duration;
///
/// #[derive(serde::Deserialize)]
/// struct Order {
///     id: String,
/// }
///
/// let order: Order = session
///     .post("/api/orders")
///     .header("X-Request-Id", "req-1")
///     .json(&serde_json::json!({ "item": "book", "qty": 2 }))
///     .idempotency_key("order-book-1")
///     .timeout(Duration::from_secs(5))
///     .send()
///     .await?
///     .json()?;
/// println!("{}", order.id);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder<'s> {
    session: &'s Session,
    call: Result<Prepared, Error>,
}

/// A call ready to go: what every attempt of it sends.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
    /// Quoted.
    pub(crate) call_key: String,
    pub(crate) timeout: Option<Duration>,
}

/// An HTTP method token (RFC 9110 §9.1).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl<'s> RequestBuilder<'s> {
    pub(crate) fn new(session: &'s Session, method: &str, path: &str) -> Self {
        let method = method.to_ascii_uppercase();
        let call = if !is_token(&method) {
            Err(Error::Invalid(format!("not an HTTP method: {method:?}")))
        } else if method == "HEAD" {
            Err(Error::Invalid(
                "HEAD is not offered: its answer cannot carry a sealed body; use GET".into(),
            ))
        } else if ["CONNECT", "TRACE", "TRACK"].contains(&method.as_str()) {
            Err(Error::Invalid(format!("{method} cannot be sent")))
        } else if !path.starts_with('/') {
            Err(Error::Invalid(format!(
                "the path must start with /: {path:?}"
            )))
        } else {
            session.fresh_call_key().map(|call_key| Prepared {
                method,
                // As a URL parser sends it: what the TypeScript library sends for the
                // same path, and what v2 binds.
                path: crate::target::wire_target(path),
                headers: Vec::new(),
                content_type: None,
                body: Vec::new(),
                call_key,
                timeout: None,
            })
        };
        Self { session, call }
    }

    fn with(mut self, change: impl FnOnce(&mut Prepared) -> Result<(), Error>) -> Self {
        if let Ok(call) = &mut self.call
            && let Err(e) = change(call)
        {
            self.call = Err(e);
        }
        self
    }

    /// Adds a request header (`X-Request-Id`, `traceparent`, …). The protocol's own
    /// headers are the library's and are left out; a `Content-Type` becomes the
    /// sealed body's type (as [`Self::content_type`]).
    pub fn header(self, name: &str, value: &str) -> Self {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.with(move |c| {
            hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::Invalid(format!("not a header name: {name:?}")))?;
            hyper::header::HeaderValue::from_str(&value)
                .map_err(|_| Error::Invalid(format!("not a valid value for {name}")))?;
            if name.eq_ignore_ascii_case("content-type") {
                c.content_type = Some(value);
            } else if !is_protocol_header(&name) {
                c.headers.push((name, value));
            }
            Ok(())
        })
    }

    /// The plaintext to seal.
    pub fn body(self, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        self.with(move |c| {
            c.body = body;
            Ok(())
        })
    }

    /// `value` as JSON, with the content type `application/json` unless one was set.
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).map_err(|e| Error::Invalid(format!("JSON: {e}")));
        self.with(move |c| {
            c.body = body?;
            c.content_type
                .get_or_insert_with(|| "application/json".into());
            Ok(())
        })
    }

    /// The sealed body's media type (`X-Inner-Content-Type`, bound by v2). Leave it out
    /// for the built-in routes.
    pub fn content_type(self, content_type: &str) -> Self {
        let ct = content_type.to_owned();
        self.with(move |c| {
            c.content_type = Some(ct);
            Ok(())
        })
    }

    /// The call's `Idempotency-Key` (unquoted, e.g. `order-1234`: 1–255 visible ASCII
    /// characters without `"` or `\`) instead of a fresh one: keep it across the
    /// application's own retries so that an upstream that deduplicates runs the call
    /// once.
    pub fn idempotency_key(self, key: &str) -> Self {
        let quoted = format!("\"{key}\"");
        self.quoted_idempotency_key(&quoted)
    }

    pub(crate) fn quoted_idempotency_key(self, quoted: &str) -> Self {
        let quoted = quoted.to_owned();
        self.with(move |c| {
            domain::CallKey::parse(&quoted)
                .map_err(|_| Error::Invalid(format!("invalid Idempotency-Key {quoted}")))?;
            c.call_key = quoted;
            Ok(())
        })
    }

    /// This call's time limit, instead of the session's ([`crate::Builder::timeout`]).
    pub fn timeout(self, limit: Duration) -> Self {
        self.with(move |c| {
            c.timeout = Some(limit);
            Ok(())
        })
    }

    /// Seals, sends, checks and opens the answer (see [`Session::fetch`] for what
    /// happens on `SESSION_EXPIRED`).
    ///
    /// # Errors
    /// [`Error`].
    pub async fn send(self) -> Result<Response, Error> {
        self.session.execute(self.call?).await
    }
}

impl Session {
    /// A request to `path` (path and optional query; v2 binds both) with `method` (any
    /// case), to fill in and [`RequestBuilder::send`] — as with reqwest.
    pub fn request(&self, method: &str, path: &str) -> RequestBuilder<'_> {
        RequestBuilder::new(self, method, path)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> RequestBuilder<'_> {
        self.request("GET", path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> RequestBuilder<'_> {
        self.request("POST", path)
    }

    /// `PUT path`.
    pub fn put(&self, path: &str) -> RequestBuilder<'_> {
        self.request("PUT", path)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> RequestBuilder<'_> {
        self.request("DELETE", path)
    }

    /// A fresh quoted `Idempotency-Key` (a UUID v4).
    pub(crate) fn fresh_call_key(&self) -> Result<String, Error> {
        let mut random = [0u8; 16];
        self.crypto()
            .random
            .fill(&mut random)
            .map_err(|_| Error::Protocol("the random number generator failed".into()))?;
        Ok(format!("\"{}\"", domain::encoding::uuid_v4(random)))
    }
}
