//! Watches the identity (`run_id`) of every Redis primary. A primary that restarted
//! or was replaced by a replica in a failover may lack the last writes before it,
//! even with persistence (an `appendfsync everysec` restart, a replica that lagged):
//! a change counts as a loss ([`crate::Redis::losses`]), as a missing marker does.

use std::collections::BTreeSet;
use std::time::Duration;

use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use tracing::debug;

use crate::{Redis, RedisError};

/// `run_id:<hex>` from the text of `INFO server`.
pub(crate) fn run_id(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|v| v.trim().to_owned())
}

/// The `run_id`s of every primary, from every `INFO server` text in `value`.
fn run_ids(value: redis::Value) -> BTreeSet<String> {
    match value {
        redis::Value::BulkString(b) => run_id(&String::from_utf8_lossy(&b)).into_iter().collect(),
        redis::Value::VerbatimString { text, .. } | redis::Value::SimpleString(text) => {
            run_id(&text).into_iter().collect()
        }
        redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(_, v)| run_ids(v)).collect(),
        redis::Value::Array(items) => items.into_iter().flat_map(run_ids).collect(),
        _ => BTreeSet::new(),
    }
}

impl Redis {
    /// The `run_id` of every primary (one outside a cluster).
    ///
    /// # Errors
    /// [`RedisError`].
    pub async fn primaries(&self) -> Result<BTreeSet<String>, RedisError> {
        let mut info = redis::cmd("INFO");
        info.arg("server");
        if let Some(cluster) = self.conn.cluster().await {
            let mut c = cluster.map_err(|e| RedisError::Command {
                what: "INFO server",
                reason: e.to_string(),
            })?;
            let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            let value = self
                .run("INFO server (all primaries)", |_| async move {
                    c.route_command(info, all).await
                })
                .await?;
            return Ok(run_ids(value));
        }
        let value = self
            .run("INFO server", |mut c| async move {
                info.query_async::<redis::Value>(&mut c).await
            })
            .await?;
        Ok(run_ids(value))
    }

    /// Checks the primaries' identities at once and then every `every`, counting a
    /// loss whenever one that was seen before is gone. The first answer is the
    /// baseline: taken at start-up, not a period later, so that a primary replaced in
    /// that period is not taken for the first one.
    pub fn spawn_watch(&self, every: Duration) {
        let redis = self.clone();
        tokio::spawn(async move {
            let mut known: Option<BTreeSet<String>> = None;
            loop {
                match redis.primaries().await {
                    Ok(now) if now.is_empty() => {}
                    Ok(now) => {
                        if let Some(before) = &known
                            && !before.is_superset(&now)
                        {
                            redis.lost("a primary's run_id changed");
                        }
                        known = Some(now);
                    }
                    Err(e) => debug!(error = %e, "redis identity check failed"),
                }
                tokio::time::sleep(every).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_read_from_one_or_many_info_texts() {
        let one = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:1\r\n";
        assert_eq!(run_id(one).as_deref(), Some("abc123"));
        let many = redis::Value::Map(vec![
            (
                redis::Value::SimpleString("n1".into()),
                redis::Value::BulkString(one.as_bytes().to_vec()),
            ),
            (
                redis::Value::SimpleString("n2".into()),
                redis::Value::BulkString(b"run_id:def\r\n".to_vec()),
            ),
        ]);
        assert_eq!(
            run_ids(many).into_iter().collect::<Vec<_>>(),
            ["abc123", "def"]
        );
    }
}
