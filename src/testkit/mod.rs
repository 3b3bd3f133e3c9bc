//! Test and benchmark kit: real databases on this machine, private to one process.

pub mod flaky;
pub mod pg;
pub mod proxy;
