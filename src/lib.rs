//! dsms: multi-region sales management with multi-master, per-row Last-Write-Wins replication.

/// Wiring: builds the regions, the services and the HTTP server from a `Config`.
pub mod app;
/// Users, roles, API tokens, web sessions and the throttling of password guesses.
pub mod auth;
/// Benchmarks printing JSON lines.
pub mod bench;
/// The command line: `serve`, `migrate`, `seed`, `import`, `export`, `bench`.
pub mod cli;
/// Configuration: defaults, `dsms.toml`, `DSMS_*` variables, validation.
pub mod config;
/// CSV import and export, streaming.
pub mod csvio;
/// Values that cannot be invalid: sales, amounts, products, regions.
pub mod domain;
/// Self-monitoring: statistics (persisted), region health and probes, outage drill, analytics
/// cache, Prometheus metrics.
pub mod monitor;
/// Demo data.
pub mod seed;
/// One region's database behind one trait: PostgreSQL and SQLite.
pub mod store;
/// Versions and the hybrid logical clock (the sync engine grows here).
pub mod sync;
/// Real databases for tests and benchmarks: private PostgreSQL clusters.
pub mod testkit;
/// `dsms user …`: users, passwords and API tokens from the command line.
pub mod users_cli;
/// The sales service: where reads and writes go.
pub mod ventes;
/// HTTP: router, handlers, errors, OpenAPI.
pub mod web;
