//! The session's keep-alive connections: each call borrows one (or opens one), and
//! gives it back only when its exchange completed.

use std::sync::PoisonError;

use super::{IDLE_CONNECTIONS, Session};
use crate::{Connection, Error, ProtocolClient};

impl Session {
    /// A protocol client over a pooled (or new) connection, with this session's
    /// settings and clock: for hand-made requests, and for every call.
    ///
    /// # Errors
    /// [`Error::Connect`].
    pub async fn protocol_client(&self) -> Result<ProtocolClient, Error> {
        self.client_stamping(true).await
    }

    pub(super) async fn client_stamping(&self, corrected: bool) -> Result<ProtocolClient, Error> {
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(c) => c,
            None => Connection::open(&self.inner.endpoint).await?,
        };
        let mut client = ProtocolClient::over(conn, self.inner.crypto, &self.inner.client_id)
            .with_protocol(self.inner.protocol)
            .with_pinned_keys(self.inner.pinned.clone());
        client.set_clock_offset_ms(self.stamp_offset(corrected));
        Ok(client)
    }

    /// Takes back a client whose call completed: its clock, and its connection for the
    /// next call.
    pub(super) fn give_back(&self, client: ProtocolClient, lent_offset: i64) {
        // The client moves its clock only on an authenticated server time.
        if client.clock_offset_ms() != lent_offset {
            self.set_clock_offset_ms(client.clock_offset_ms());
        }
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(client.into_connection());
        }
    }
}
