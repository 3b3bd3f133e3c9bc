//! Replication. Owns: versions and the clock (clock.rs), the LWW and conflict rule (merge.rs),
//! one round (engine.rs), when rounds run (scheduler.rs), round reports (report.rs).

pub mod clock;
pub mod engine;
pub mod merge;
pub mod report;
pub mod scheduler;
pub mod verify;
