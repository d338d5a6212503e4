//! [`Response`]: a decrypted answer of a [`crate::Session`] call.

use zeroize::Zeroizing;

use crate::Error;

/// A decrypted answer.
#[derive(Debug)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

impl Response {
    /// The answer's status: 200 from the built-in routes; on a gateway route the
    /// upstream's (sealed answers of every status are responses, not errors).
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The answer's headers (`X-Request-Id`, `Server-Timing`, an upstream's headers on
    /// a gateway route, …), with `Content-Type` the decrypted body's.
    pub fn headers(&self) -> &hyper::HeaderMap {
        &self.headers
    }
    /// One header as text (`None` when absent or not text).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The answer's content type (`X-Inner-Content-Type`; empty when it has none).
    pub fn content_type(&self) -> &str {
        &self.content_type
    }
    /// The decrypted body (wiped when the response is dropped).
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }
    /// The decrypted body as UTF-8.
    ///
    /// # Errors
    /// [`Error::Body`] if it is not UTF-8.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(|_| Error::Body("not UTF-8".into()))
    }
    /// The decrypted body as JSON of type `T` (`serde_json::Value` for any JSON).
    ///
    /// # Errors
    /// [`Error::Body`] if it is not JSON of that shape.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Body(e.to_string()))
    }
}
