//! # http-adapter — the driving side: raw hyper 1.x
//!
//! No web framework: routing by method and path, bodies read through a size limit,
//! header-read and body timeouts, CORS, `Server-Timing`, graceful shutdown, and the
//! JSON wire shapes of both route families. (The matching client is the
//! `session-crypto-client` crate, in `clients/rust`.)
//!
//! May depend on: `ports`, `domain`, hyper and friends, serde_json. Must not depend on
//! any other adapter.

pub mod config;
mod deadline;
pub mod gateway;
pub mod health_check;
pub mod metrics;
pub mod metrics_listener;
mod pipeline;
pub mod router;
pub mod routes;
pub mod server;
pub mod tls;
mod wire;

pub use config::{ApiConfig, DEFAULT_RATE_LIMIT_EXEMPT};
pub use gateway::{Gateway, RouteSpec};
pub use health_check::{Dependency, HealthCheck, HealthReport};
pub use metrics_listener::serve_admin;
pub use pipeline::body::BodyBudget;
pub use pipeline::body::RequestBody;
pub use pipeline::cors::Cors;
pub use router::Api;
pub use routes::well_known::MAX_AGE_SEC as WELL_KNOWN_MAX_AGE_SEC;
pub use server::{ServerConfig, serve};
pub use wire::Listener;
