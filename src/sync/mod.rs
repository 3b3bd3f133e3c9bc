//! Replication. Owns: one round (engine.rs; bulk loads of empty regions, bulk.rs), when rounds run
//! (scheduler.rs), round reports (report.rs), comparing regions (verify.rs), restored regions found
//! and healed (restore.rs). Leaves: versions, the clock and the LWW rule
//! (`domain::version`, `domain::lww`), every SQL statement (store/).

mod bulk;
pub mod engine;
pub mod report;
mod restore;
pub mod scheduler;
pub mod verify;
