//! Persistence and fault tolerance against real PostgreSQL and Redis servers started by
//! the harness (tests/support/services.rs), one module per area.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod chaos;
mod claim_interleavings;
mod cold_start;
mod durability;
mod fences;
mod helpers;
mod init_writes;
mod instances;
mod load;
mod logs;
mod outages;
mod reconnects;
mod redis_policy;
mod replica;
mod rotation;
mod schema;
mod slot_migration;
mod topologies;
