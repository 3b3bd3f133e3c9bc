//! The integration tests: one binary, real servers over loopback, real SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
#[allow(dead_code, reason = "shared helpers; each test module uses a part")]
mod helpers;
mod monitor;
