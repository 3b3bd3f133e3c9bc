//! The `dsms` binary: parses the command line and hands over to `cli::run`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    dsms::cli::run(dsms::cli::Cli::parse()).await
}
