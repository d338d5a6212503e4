//! `GET /health` (liveness, with the state of each dependency) and `GET /ready`
//! (readiness: 503 while the source of truth is down).

use domain::encoding::iso_timestamp;
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::health_check::{Dependency, HealthCheck};
use crate::wire::{Body, json};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Health<'a> {
    status: &'a str,
    timestamp: String,
    redis: &'a str,
    postgres: &'a str,
    session_store: &'a str,
    nonce_store: &'a str,
    sessions: &'a str,
    crypto_backend: &'a str,
}

#[derive(Serialize)]
struct Ready<'a> {
    status: &'a str,
    database: &'a str,
    cache: &'a str,
    #[serde(rename = "nonceStore")]
    nonce_store: &'a str,
    timestamp: String,
}

/// `GET /health`: always 200; `degraded` while a configured dependency is down.
pub(crate) async fn health<H: HealthCheck>(
    probe: &H,
    now_ms: u64,
    crypto_backend: &str,
) -> Response<Body> {
    let report = probe.report().await;
    let ok = report.postgres != Dependency::Down
        && report.redis != Dependency::Down
        && !report.nonces_full
        && !report.sessions_full;
    json(
        StatusCode::OK,
        &Health {
            status: if ok { "ok" } else { "degraded" },
            timestamp: iso_timestamp(now_ms),
            redis: report.redis.health_word(),
            postgres: report.postgres.health_word(),
            session_store: report.session_store,
            nonce_store: if report.nonces_full { "full" } else { "ok" },
            sessions: if report.sessions_full { "full" } else { "ok" },
            crypto_backend,
        },
    )
}

/// `GET /ready`: 503 while PostgreSQL is down or the nonce store is full (it refuses
/// every encrypted request); a Redis outage only degrades the cache.
pub(crate) async fn ready<H: HealthCheck>(probe: &H, now_ms: u64) -> Response<Body> {
    let report = probe.report().await;
    let cache = match report.redis {
        Dependency::Up => "up",
        Dependency::Down => "degraded",
        Dependency::Disabled => "disabled",
    };
    let timestamp = iso_timestamp(now_ms);
    let nonce_store = if report.nonces_full { "full" } else { "ok" };
    if report.postgres == Dependency::Down || report.nonces_full {
        let cache = if cache == "degraded" { "down" } else { cache };
        let database = if report.postgres == Dependency::Down {
            "down"
        } else {
            "up"
        };
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &Ready {
                status: "unhealthy",
                database,
                cache,
                nonce_store,
                timestamp,
            },
        )
    } else {
        json(
            StatusCode::OK,
            &Ready {
                status: "ready",
                database: "up",
                cache,
                nonce_store,
                timestamp,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health_check::HealthReport;
    use crate::routes::test_support::body_json;

    struct Fixed(HealthReport);
    impl HealthCheck for Fixed {
        async fn report(&self) -> HealthReport {
            self.0
        }
    }

    #[tokio::test]
    async fn a_redis_outage_degrades_health_but_not_readiness() {
        let probe = Fixed(HealthReport {
            session_store: "postgres",
            postgres: Dependency::Up,
            redis: Dependency::Down,
            nonces_full: false,
            sessions_full: false,
        });
        let h = body_json(health(&probe, 0, "ring").await).await;
        assert_eq!(h["status"], "degraded");
        assert_eq!(h["redis"], "disconnected");
        assert_eq!(h["cryptoBackend"], "ring");
        let r = ready(&probe, 0).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body_json(r).await["cache"], "degraded");
    }

    #[tokio::test]
    async fn a_postgres_outage_makes_the_server_unready() {
        let probe = Fixed(HealthReport {
            session_store: "postgres",
            postgres: Dependency::Down,
            redis: Dependency::Disabled,
            nonces_full: false,
            sessions_full: false,
        });
        let r = ready(&probe, 0).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_json(r).await["status"], "unhealthy");
    }
}
