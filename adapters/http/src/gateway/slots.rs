//! How many gateway answers one connection may hold at once.

/// Default of `GATEWAY_MAX_ANSWERS_PER_CONNECTION`.
pub const DEFAULT_ANSWERS_PER_CONNECTION: usize = 8;

/// The gateway answers one connection may hold at once — from the request to the last
/// byte of its answer written — shared by the connection's requests (an HTTP/2 client
/// can open many streams and read none of them).
#[derive(Debug, Clone)]
pub struct ConnectionSlots(std::sync::Arc<tokio::sync::Semaphore>);

impl ConnectionSlots {
    /// `n` slots; 0 = no cap.
    pub fn new(n: usize) -> Self {
        let n = if n == 0 {
            tokio::sync::Semaphore::MAX_PERMITS
        } else {
            n
        };
        Self(std::sync::Arc::new(tokio::sync::Semaphore::new(n)))
    }

    /// A slot, or `None` when all are taken.
    pub(crate) fn try_take(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        std::sync::Arc::clone(&self.0).try_acquire_owned().ok()
    }
}
