//! Replication. Owns: versions and the clock (clock.rs).

pub mod clock;
