//! The command line. Every command has `--help`; exit 0 on success, 1 on error, 2 on a partial result.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{self, App};
use crate::config::{self, Config, ConfigSource};

/// Gestion des ventes multi-régions (Dakar, Thies, Saint-Louis…) avec réplication multi-maître.
#[derive(Debug, Parser)]
#[command(name = "dsms", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: ./dsms.toml if present, else the embedded SQLite regions).
    #[arg(long, global = true, env = "DSMS_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server and API (the default command).
    Serve,
    /// Run one sync round between all regions and print a per-region report
    /// (exit 0 all synced, 2 partial: some regions unreachable, 1 failed).
    Sync,
    /// Compare all regions row by row (streaming, in id order) and list divergent ids (exit 1 if any).
    Verify {
        /// List at most this many ids (the count is always exact).
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Create or upgrade every region's tables (idempotent; also done by `serve`).
    Migrate,
    /// Insert realistic demo sales, spread over the regions.
    Seed {
        /// How many sales.
        #[arg(long, default_value_t = 100)]
        count: u64,
    },
    /// Write sales as CSV (id,produit,montant,date_vente,region,updated_at,deleted).
    Export {
        /// Output file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Region to read from (default: the first reachable one).
        #[arg(long)]
        region: Option<String>,
        /// Include deleted sales (tombstones).
        #[arg(long)]
        include_deleted: bool,
    },
    /// Read sales from CSV (same columns as export; id, updated_at and deleted are optional) and
    /// apply each line in its region as a write dated by its updated_at (now when it has none):
    /// a line older than what the region holds (an edit or a deletion made since) is skipped and
    /// counted, so re-importing an old export never reverts newer work. Invalid lines are reported
    /// and skipped (exit 1).
    Import {
        /// Input file (default: standard input).
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// The file wins: every line is written as a new version, reverting newer edits and
        /// reviving deleted sales.
        #[arg(long)]
        replace: bool,
    },
    /// Users, roles and API tokens (authentication is on as soon as one user exists).
    #[command(subcommand)]
    User(crate::users_cli::UserCommand),
    /// Benchmarks; each prints one JSON object per line.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

/// Runs a command and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let config = match cli.config.as_deref() {
        Some(path) => config::load(ConfigSource::Explicit(path)),
        None => config::load(ConfigSource::Default),
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dsms: {e}");
            return ExitCode::from(1);
        }
    };
    let log_json = cli.log_json || config.log_json;
    init_logging(log_json);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => migrate(&config).await,
        Command::Sync => sync(&config).await,
        Command::Verify { max } => verify(&config, max).await,
        Command::Seed { count } => crate::seed::run(&config, count).await,
        Command::Export { output, region, include_deleted } => crate::csvio::export_cmd(&config, output, region, include_deleted).await,
        Command::Import { input, replace } => crate::csvio::import_cmd(&config, input, replace).await,
        Command::Bench(bench) => crate::bench::run(bench).await,
        Command::User(command) => crate::users_cli::run(&config, command).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Reported once: in the JSON log when logs are for machines, else as one line for people.
            if log_json {
                tracing::error!("{e:#}");
            } else {
                eprintln!("dsms: {e:#}");
            }
            ExitCode::from(1)
        }
    }
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let regions: Vec<String> = config.regions.iter().map(|r| format!("{} ({:?})", r.name, r.url)).collect();
    let config_https = config.edge.tls.is_some();
    let app = App::build(config).await?;
    tracing::info!(adresse = %format!("{}://{}", if config_https { "https" } else { "http" }, app.local_addr()), regions = %regions.join(", "), "dsms démarré");
    app.run_until(app::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn migrate(config: &Config) -> anyhow::Result<ExitCode> {
    let stores = app::open_stores(config).await?;
    let pending = app::migrate_all(&stores).await?;
    for store in &stores {
        let done = !pending.iter().any(|p| p.region() == store.region());
        println!("{:<16} {}", store.region().as_str(), if done { "à jour" } else { "INJOIGNABLE" });
    }
    Ok(if pending.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

async fn sync(config: &Config) -> anyhow::Result<ExitCode> {
    use crate::monitor::{Monitor, drill};
    use crate::sync::engine::{Engine, EngineOptions};
    let gates = drill::gate_all(app::open_stores(config).await?);
    let stores = drill::as_stores(&gates);
    app::migrate_all(&stores).await?;
    let report = Engine::new(stores, EngineOptions::default()).round().await;
    // The round counts in the statistics the server shows (same state database).
    let monitor = Monitor::open(app::monitor_config(config), gates, crate::domain::version::system_clock()).await?;
    monitor.record_round(&report);
    monitor.flush().await;
    let status = match report.status {
        crate::sync::report::RoundStatus::Success => "réussie",
        crate::sync::report::RoundStatus::Partial => "partielle",
        crate::sync::report::RoundStatus::Failed => "échouée",
    };
    println!("synchronisation {status} en {} ms, {} conflit(s)", report.duration.as_millis(), report.conflicts);
    for region in &report.regions {
        match &region.error {
            None => println!("  {:<16} OK       {:>8} ligne(s) appliquée(s)", region.region.as_str(), region.rows_applied),
            Some(error) => println!("  {:<16} ÉCHEC    {error}", region.region.as_str()),
        }
    }
    Ok(ExitCode::from(report.exit_code()))
}

async fn verify(config: &Config, max: usize) -> anyhow::Result<ExitCode> {
    let stores = app::open_stores(config).await?;
    let (report, divergent) = crate::sync::verify::verify(&stores, max).await?;
    for id in &report.divergent {
        println!("{id}");
    }
    eprintln!("{} identifiant(s) comparé(s) sur {} régions, {divergent} divergent(s)", report.ids, stores.len());
    Ok(if divergent == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
