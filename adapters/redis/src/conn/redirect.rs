//! Following a Redis Cluster's redirections by hand, for the commands a claim sends
//! while its slot is on the move ([`Conn::query_following`]).

use std::time::Duration;

use redis::{Cmd, RedisResult, Value};

use super::Conn;

/// How many times a command follows a cluster's redirections itself
/// ([`Conn::query_following`]).
const REDIRECTIONS: u32 = 3;

impl Conn {
    /// Runs `cmd`, following a cluster's `ASK` redirection with `ASKING` sent in the
    /// same write as the command, and retrying after `TRYAGAIN`/`MOVED` (a slot on the
    /// move), up to [`REDIRECTIONS`] times; then the error stands. redis-rs follows
    /// `ASK` by sending `ASKING` on the shared connection first, where another request
    /// can come between the two and take the flag (the command then gets `MOVED` back
    /// to the node it left, and fails).
    pub(crate) async fn query_following<T: redis::FromRedisValue>(
        &mut self,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        use redis::{ErrorKind, ServerErrorKind as S};
        let mut ask: Option<String> = None;
        let mut attempt = 0;
        loop {
            let answer = match (&ask, &*self) {
                (Some(addr), Self::Cluster(lazy)) => {
                    let (host, port) = addr
                        .rsplit_once(':')
                        .and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)))
                        .ok_or_else(|| {
                            redis::RedisError::from((ErrorKind::Client, "bad ASK address"))
                        })?;
                    let mut pipe = redis::pipe();
                    pipe.cmd("ASKING").add_command(cmd.clone());
                    let mut c = lazy.get().await?;
                    c.route_pipeline(
                        pipe,
                        1,
                        1,
                        redis::cluster_routing::SingleNodeRoutingInfo::ByAddress { host, port },
                    )
                    .await
                    .and_then(|mut v| {
                        v.pop()
                            .ok_or_else(|| (ErrorKind::Client, "no answer").into())
                    })
                    .and_then(Value::extract_error)
                    .and_then(|v| redis::from_redis_value(v).map_err(Into::into))
                }
                _ => cmd.query_async(self).await,
            };
            let e = match answer {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            attempt += 1;
            if attempt >= REDIRECTIONS {
                return Err(e);
            }
            match e.kind() {
                ErrorKind::Server(S::Ask) => {
                    ask = e.redirect_node().map(|(addr, _)| addr.to_owned());
                }
                ErrorKind::Server(S::TryAgain | S::Moved) => {
                    ask = None;
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                _ => return Err(e),
            }
        }
    }
}
