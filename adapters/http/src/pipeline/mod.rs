//! What every request goes through around its route: the request id, CORS, the body
//! limits, and `Server-Timing`.

pub(crate) mod body;
pub(crate) mod cors;
pub(crate) mod request_id;
pub(crate) mod timing;
