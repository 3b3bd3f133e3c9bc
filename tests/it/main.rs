//! The integration tests: one binary, real servers over loopback, real SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod auth;
mod bad_input;
mod browser;
mod cli;
mod feed_hold;
mod foreign_writers;
#[allow(dead_code, reason = "shared helpers; each test module uses a part")]
mod helpers;
mod home;
mod import_lww;
mod layers;
mod linear;
mod local_write;
mod monitor;
mod monitor_rounds;
mod openapi;
mod pages;
mod pg_indexes;
mod props;
mod push;
mod quarantine;
mod restore;
mod sync;
mod sync_api;
mod sync_cases;
mod sync_request;
mod tls;
