//! Replication. Owns: versions and the clock (clock.rs), round reports (report.rs).

pub mod clock;
pub mod report;
