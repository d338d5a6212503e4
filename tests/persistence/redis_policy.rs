//! Redis must not evict nonce keys (issue 12 item 4).

use crate::support::services::RedisServer;
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_may_evict_keys_stops_start_up_unless_allowed() {
    let redis = RedisServer::start();
    let url = redis.url();
    for policy in ["allkeys-lru", "volatile-ttl"] {
        redis.cli(&["CONFIG", "SET", "maxmemory-policy", policy]);
        let (code, err) = run_to_exit(
            &["serve"],
            &[
                ("REDIS_URL", &url),
                ("CRYPTO_BACKEND", default_backend().name),
            ],
        );
        assert_ne!(code, 0, "started on {policy}: {err}");
        assert!(
            err.contains(&format!("Redis maxmemory-policy is \"{policy}\""))
                && err.contains("REDIS_ALLOW_EVICTION=true"),
            "{err}"
        );
    }
    // Allowed explicitly: it starts, warns and says so in the metrics.
    let dir = std::env::temp_dir().join(format!("sc-evict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("server.log");
    let server = Server::start_logging_to(
        &[
            ("REDIS_URL", &url),
            ("REDIS_ALLOW_EVICTION", "true"),
            ("ADMIN_PORT", "0"),
        ],
        &log,
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("session_crypto_redis_eviction_unsafe 1"),
        "{metrics}"
    );
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Redis may evict nonce keys"), "{text}");
    // noeviction: no warning, gauge 0.
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let server = Server::start(&[("REDIS_URL", &url), ("ADMIN_PORT", "0")]);
    assert!(
        server
            .metrics()
            .await
            .contains("session_crypto_redis_eviction_unsafe 0")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Managed Redis services often disable `CONFIG`: the policy is then read from `INFO
/// memory`, and the refused `CONFIG GET` neither bypasses Redis for a retry interval
/// nor counts as an interruption of the connection (each would begin an episode of the
/// nonce fence, from the check every minute).
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_without_config_is_read_through_info_and_never_bypassed() {
    use redis_adapter::{Redis, RedisConfig, Topology};
    let port = services::free_port();
    let server = RedisServer::start_with(port, &["--rename-command", "CONFIG", ""]);
    assert!(
        server
            .cli(&["CONFIG", "GET", "maxmemory-policy"])
            .contains("unknown command"),
        "CONFIG is disabled"
    );
    let redis = Redis::new(&RedisConfig {
        topology: Topology::Standalone(server.url()),
        ca_pem: None,
        command_timeout: std::time::Duration::from_secs(2),
        retry_interval: std::time::Duration::from_secs(60),
    })
    .unwrap();
    for _ in 0..2 {
        assert_eq!(redis.eviction_policy().await.unwrap(), "noeviction");
    }
    assert!(!redis.is_down());
    assert_eq!(redis.interruptions(), 0);
}
