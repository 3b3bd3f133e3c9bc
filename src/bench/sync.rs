//! `dsms bench sync <scenario>`: the replication benchmarks of issue 4, over three PostgreSQL
//! regions on three private clusters, with the library's real stores and engine. Each scenario
//! prints JSON lines: the figure, the target, the peers' figures, and what was not timed.
//! Owns: the throughput scenarios (insert, bulk, update, round). Leaves: databases and chores
//! (`fixture.rs`), the HTTP latency scenario (`latency.rs`).

mod cpu;
mod fixture;
mod latency;
mod pgstats;
mod regions;
mod server;
mod timed;
mod wan;

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::json;

use self::fixture::{Fixture, REGIONS, RssSampler, mb, new_content, new_sales, percentile, rounds_until, settle, status_kb, write_rows};
use crate::domain::{Vente, VenteId};
use crate::sync::engine::DEFAULT_BATCH;

#[derive(Debug, Subcommand)]
pub enum SyncScenario {
    /// N new rows written into Dakar, then the round(s) carrying them to Thies and Saint-Louis;
    /// against COPY of the same rows into two empty `vente` tables at once.
    Insert {
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        /// How Dakar's rows are written: `writes` (one transaction each through the write path,
        /// `Store::write`, 8 writers at once, as real sales arrive), `bulk` (write_many, 10,000 per
        /// transaction), or `both` (one run each).
        #[arg(long, default_value = "both")]
        seed: SeedMode,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// N rows in Dakar, two empty regions: time until both hold every row, and peak memory.
    Bulk {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// N rows in every region; N updates spread over the three regions; time the round.
    Update {
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Single sales through the HTTP API, then written directly by another connection: time until
    /// visible in both other regions.
    Latency {
        /// Writes in each of the two parts.
        #[arg(long, default_value_t = 200)]
        writes: u32,
        /// Writes per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Time arrivals by polling each region's `Store::get`, pausing this many microseconds
        /// between polls (0: a tight loop), instead of reading the regions' commit times of the
        /// row once it is there (the default, which adds no load while the write travels).
        #[arg(long)]
        poll_us: Option<u64>,
        /// As for the other scenarios.
        #[arg(long)]
        pg_stats: bool,
    },
    /// N regions in service, new sales written into Dakar while no round runs: rows read,
    /// skipped and applied, and time, of the catch-up round, the round after it and an idle one.
    Regions {
        /// Region counts to run, one after the other (2 to 16).
        #[arg(long, value_delimiter = ',', default_value = "3,6,12")]
        regions: Vec<usize>,
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// SQLite files instead of PostgreSQL databases.
        #[arg(long)]
        sqlite: bool,
        #[arg(long, default_value_t = DEFAULT_BATCH)]
        batch_size: u32,
    },
    /// One dsms in Dakar with Dakar's database local and Thies's and Saint-Louis's behind a delaying
    /// proxy (the WAN): POST latency and time until visible in both others, with `home` and in the
    /// central shape; idle rounds over the WAN.
    Wan {
        /// Round trip added between Dakar and each other site, in milliseconds.
        #[arg(long, default_value_t = 50)]
        rtt_ms: u64,
        /// Single-sale POSTs timed in each shape.
        #[arg(long, default_value_t = 100)]
        writes: u32,
        /// Writes per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
    },
    /// N rows in every region, in sync; C changes in Dakar: the incremental round, then idle rounds
    /// and idle memory.
    Round {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 1_000)]
        changes: u64,
        /// Idle rounds timed after the incremental one.
        #[arg(long, default_value_t = 20)]
        idle: usize,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

/// How the `insert` scenario writes its rows into Dakar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SeedMode {
    Writes,
    Bulk,
    Both,
}

#[derive(Clone, Copy, Debug, Args)]
pub struct EngineArgs {
    /// Rows per batch read from a feed and applied in one transaction (`EngineOptions.batch_size`).
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    batch_size: u32,
    /// Load pg_stat_statements in the clusters and print each region's costliest statements of
    /// the timed part (one more JSON line; costs a cluster restart at start-up).
    #[arg(long)]
    pg_stats: bool,
}

pub async fn run(scenario: SyncScenario) -> anyhow::Result<()> {
    match scenario {
        SyncScenario::Insert { rows, seed, engine } => {
            for bulk in [true, false] {
                if seed == SeedMode::Both || (seed == SeedMode::Bulk) == bulk {
                    insert(rows, bulk, engine).await?;
                }
            }
            Ok(())
        }
        SyncScenario::Bulk { rows, engine } => bulk(rows, engine).await,
        SyncScenario::Update { rows, engine } => update(rows, engine).await,
        SyncScenario::Latency { writes, rate, poll_us, pg_stats } => {
            latency::run(writes, rate, poll_us.map(Duration::from_micros), pg_stats).await
        }
        SyncScenario::Round { rows, changes, idle, engine } => round(rows, changes, idle, engine).await,
        SyncScenario::Regions { regions: counts, rows, sqlite, batch_size } => regions::run(&counts, rows, batch_size, !sqlite).await,
        SyncScenario::Wan { rtt_ms, writes, rate } => wan::run(rtt_ms, writes, rate).await,
    }
}

/// One result line on stdout, with the machine's load average (other work on the machine
/// skews every figure).
fn emit(mut line: serde_json::Value) {
    if let Some(fields) = line.as_object_mut() {
        let load = std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok());
        fields.insert("load_1m".into(), json!(load));
    }
    println!("{line}");
}

const TARGETS: [usize; 2] = [1, 2];

/// Sales every region holds before the `insert` scenario writes its own.
const IN_SERVICE: u64 = 1_000;

/// What a throughput scenario reports besides its timed rounds, read in the order that keeps each
/// figure clean: the timed part's own (last write, phases, statements) first, then the round after
/// it, when every region already holds every row. That round carries only the copies the timed
/// rounds applied, coming back through the targets' feeds to regions that hold them already.
struct Aftermath {
    replicated_s: Option<f64>,
    phases: serde_json::Value,
    statements: Option<serde_json::Value>,
    next_round: serde_json::Value,
    /// The round after, in seconds: part of the scenario's verdict (a catch-up is not done while
    /// its next round still has work to do).
    next_round_s: f64,
}

impl Aftermath {
    async fn read(fx: &Fixture, engine: &crate::sync::engine::Engine, targets: &[usize], started: Instant) -> anyhow::Result<Self> {
        let replicated_s = fx.last_write_s(targets, started);
        let phases = fx.phases(started);
        let statements = fx.pg_stats().await?;
        let report = engine.round().await;
        let next_round_s = report.duration.as_secs_f64();
        let next_round = json!({
            "seconds": next_round_s,
            "rows_read": report.pairs.iter().map(|p| p.rows_read).sum::<u64>(),
            "rows_skipped": report.pairs.iter().map(|p| p.rows_skipped).sum::<u64>(),
            "rows_applied": report.rows_applied(),
        });
        Ok(Self { replicated_s, phases, statements, next_round, next_round_s })
    }

    /// Prints the scenario's line with these figures in it, then its statements line.
    fn emit(self, mut line: serde_json::Value) {
        let bench = line["bench"].as_str().unwrap_or_default().to_owned();
        if let Some(fields) = line.as_object_mut() {
            fields.insert("replicated_s".into(), json!(self.replicated_s));
            fields.insert("phases".into(), self.phases);
            fields.insert("next_round".into(), self.next_round);
        }
        emit(line);
        fixture::emit_statements(&bench, self.statements);
    }
}

async fn insert(rows: u64, bulk_seed: bool, args: EngineArgs) -> anyhow::Result<()> {
    let fx = Fixture::start(args.pg_stats).await?;
    let copies = [fx.extra_database(1, "copy_thies").await?, fx.extra_database(2, "copy_saint_louis").await?];
    // Regions in service, not empty: an empty one would be filled by a bulk load (the `bulk`
    // scenario), and this one measures the regular path.
    write_rows(&fx.urls[0], REGIONS[0], new_sales(IN_SERVICE), |_| {}).await?;
    let engine = fx.engine(args.batch_size);
    rounds_until(&engine, 20, async |_| fx.hold(&TARGETS, IN_SERVICE).await).await?;
    settle(&engine).await?;
    let mut seeded: Vec<Vente> = Vec::with_capacity(usize::try_from(rows)?);
    let seed_s = if bulk_seed {
        write_rows(&fx.urls[0], REGIONS[0], new_sales(rows), |batch| seeded.extend_from_slice(batch)).await?
    } else {
        fixture::write_each(&fx.urls[0], REGIONS[0], new_sales(rows), 8, |v| seeded.push(v)).await?
    };
    let csv = fixture::csv_of(&seeded)?;
    drop(seeded);

    fx.checkpoint().await?;
    let copy_cpu = fx.cpu();
    let (copy, copied) = fixture::copy_into(&copies, &csv).await?;
    let copy_cpu = fx.cpu_since(&copy_cpu);
    anyhow::ensure!(copied == 2 * rows, "COPY wrote {copied} rows, expected {}", 2 * rows);
    drop(csv);

    fx.checkpoint().await?;
    fx.reset_times().await?;
    let cpu = fx.cpu();
    let mut cpu_s = None;
    let started = Instant::now();
    let rounds = rounds_until(&engine, 20, async |_| {
        cpu_s.get_or_insert_with(|| fx.cpu_since(&cpu));
        fx.hold(&TARGETS, IN_SERVICE + rows).await
    })
    .await?;
    let ratio = rounds.seconds() / copy.as_secs_f64();
    let after = Aftermath::read(&fx, &engine, &TARGETS, started).await?;
    after.emit(json!({
        "bench": "sync.insert", "seed": if bulk_seed { "bulk" } else { "writes" }, "rows": rows, "batch_size": args.batch_size,
        "seconds": rounds.seconds(), "rounds": rounds.reports.len(), "round_ms": rounds.durations_ms(),
        "copy_seconds": copy.as_secs_f64(), "copy_cpu_s": copy_cpu, "ratio_to_copy": ratio,
        "target": "≤ 1.5 × COPY", "target_met": ratio <= 1.5,
        "peers": {"bucardo_s": 4.0, "pglogical_s": 4.0, "at_rows": 100_000},
        "rows_read": rounds.rows_read(), "rows_applied": rounds.rows_applied(),
        "cpu_s": cpu_s, "cpu_note": "CPU seconds used during the first round",
        "untimed": format!("{IN_SERVICE} sales written into Dakar and replicated first (regions in service), seeding Dakar ({}, {seed_s:.1} s), the CSV, CHECKPOINTs, row counts between rounds",
            if bulk_seed { "write_many in batches of 10,000" } else { "one Store::write transaction per sale, 8 writers at once" }),
        "copy": "COPY (FORMAT csv) of the same rows into two fresh, empty dsms-migrated databases on the Thies and Saint-Louis clusters, two connections at once",
    }));
    Ok(())
}

async fn bulk(rows: u64, args: EngineArgs) -> anyhow::Result<()> {
    let fx = Fixture::start(args.pg_stats).await?;
    let seed_s = write_rows(&fx.urls[0], REGIONS[0], new_sales(rows), |_| {}).await?;
    fx.checkpoint().await?;
    fx.reset_times().await?;
    let engine = fx.engine(args.batch_size);
    let rss_before = status_kb(None, "VmRSS");
    let sampler = RssSampler::start(Duration::from_millis(50));
    let cpu = fx.cpu();
    let mut cpu_s = None;
    let started = Instant::now();
    let rounds = rounds_until(&engine, 20, async |_| {
        cpu_s.get_or_insert_with(|| fx.cpu_since(&cpu));
        fx.hold(&TARGETS, rows).await
    })
    .await?;
    let rss_max = sampler.finish();
    let seconds = rounds.seconds();
    let after = Aftermath::read(&fx, &engine, &TARGETS, started).await?;
    let with_next = seconds + after.next_round_s;
    after.emit(json!({
        "bench": "sync.bulk", "rows": rows, "batch_size": args.batch_size,
        "seconds": seconds, "rounds": rounds.reports.len(), "round_ms": rounds.durations_ms(),
        "seconds_with_next_round": with_next, "rows_per_s": rows as f64 / seconds,
        "target": "≤ 12 s, next round counted", "target_met": with_next <= 12.0,
        "peers": {"pglogical_s": 39.0, "bucardo_s": 67.0, "at_rows": 1_000_000},
        "rss_max_mb": mb(Some(rss_max)), "rss_before_mb": mb(rss_before), "rss_growth_mb": mb(rss_before.map(|b| rss_max.saturating_sub(b))),
        "vm_hwm_mb": mb(status_kb(None, "VmHWM")),
        "rss_target": "≤ 100 MB", "rss_target_met": rss_max <= 100 * 1024,
        "rows_read": rounds.rows_read(), "rows_applied": rounds.rows_applied(),
        "cpu_s": cpu_s, "cpu_note": "CPU seconds used during the first round",
        "untimed": format!("seeding Dakar with write_many in batches of 10,000 through a separate, closed pool ({seed_s:.1} s), CHECKPOINT, row counts between rounds (counts run while RSS is sampled)"),
        "rss": "VmRSS of this process sampled every 50 ms during the rounds; vm_hwm_mb includes seeding",
    }));
    Ok(())
}

async fn update(rows: u64, args: EngineArgs) -> anyhow::Result<()> {
    let fx = Fixture::start(args.pg_stats).await?;
    let mut ids: Vec<VenteId> = Vec::with_capacity(usize::try_from(rows)?);
    let seed_s = write_rows(&fx.urls[0], REGIONS[0], new_sales(rows), |batch| ids.extend(batch.iter().map(|v| v.id))).await?;
    let engine = fx.engine(args.batch_size);
    let initial = rounds_until(&engine, 20, async |_| fx.hold(&TARGETS, rows).await).await?;
    settle(&engine).await?;
    for store in &fx.stores {
        store.analyze().await?;
    }

    // A third of the rows updated in each region, interleaved.
    let mut update_s = 0.0;
    for (i, region) in REGIONS.iter().enumerate() {
        let mine: Vec<VenteId> = ids.iter().skip(i).step_by(REGIONS.len()).copied().collect();
        update_s += write_rows(&fx.urls[i], region, new_content(&mine), |_| {}).await?;
    }
    fx.checkpoint().await?;
    fx.reset_times().await?;
    let cpu = fx.cpu();
    let mut cpu_s = None;
    let started = Instant::now();
    let rounds = rounds_until(&engine, 20, async |_| {
        cpu_s.get_or_insert_with(|| fx.cpu_since(&cpu));
        let (_, divergent) = crate::sync::verify::verify(&fx.stores, 0).await?;
        Ok(divergent == 0)
    })
    .await?;
    let seconds = rounds.seconds();
    let after = Aftermath::read(&fx, &engine, &[0, 1, 2], started).await?;
    let with_next = seconds + after.next_round_s;
    after.emit(json!({
        "bench": "sync.update", "rows": rows, "updates": rows, "batch_size": args.batch_size,
        "seconds": seconds, "rounds": rounds.reports.len(), "round_ms": rounds.durations_ms(),
        "seconds_with_next_round": with_next,
        "target": "≤ 3 s, next round counted", "target_met": with_next <= 3.0,
        "peers": {"pglogical_s": 6.7, "bucardo_s": 4.3, "at_rows": 100_000},
        "rows_read": rounds.rows_read(), "rows_applied": rounds.rows_applied(),
        "cpu_s": cpu_s, "cpu_note": "CPU seconds used during the first round",
        "untimed": format!(
            "seeding Dakar ({seed_s:.1} s), initial replication ({:.1} s), settling rounds, VACUUM ANALYZE, the updates (write_many, a third per region, {update_s:.1} s), CHECKPOINT, verify between rounds",
            initial.seconds()
        ),
    }));
    Ok(())
}

async fn round(rows: u64, changes: u64, idle: usize, args: EngineArgs) -> anyhow::Result<()> {
    let fx = Fixture::start(args.pg_stats).await?;
    // A uniform sample of the seeded ids (reservoir), to change later.
    let mut sample: Vec<VenteId> = Vec::new();
    let (mut seen, mut rng) = (0_u64, <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(4));
    let seed_s = write_rows(&fx.urls[0], REGIONS[0], new_sales(rows), |batch| {
        for v in batch {
            seen += 1;
            if (sample.len() as u64) < changes {
                sample.push(v.id);
            } else if let Ok(slot) = usize::try_from(rand::Rng::random_range(&mut rng, 0..seen)) {
                if let Some(id) = sample.get_mut(slot) {
                    *id = v.id;
                }
            }
        }
    })
    .await?;
    let engine = fx.engine(args.batch_size);
    let initial = rounds_until(&engine, 20, async |_| fx.hold(&TARGETS, rows).await).await?;
    settle(&engine).await?;
    for store in &fx.stores {
        store.analyze().await?;
    }
    fx.checkpoint().await?;
    emit(json!({
        "bench": "sync.round.setup", "rows": rows, "seed_s": seed_s, "initial_replication_s": initial.seconds(),
        "initial_rounds": initial.reports.len(), "note": "untimed set-up: write_many into Dakar, rounds until every region holds every row, settling rounds, VACUUM ANALYZE, CHECKPOINT",
    }));

    let mut changed: Vec<Vente> = Vec::new();
    write_rows(&fx.urls[0], REGIONS[0], new_content(&sample), |batch| changed.extend_from_slice(batch)).await?;
    fx.reset_times().await?;
    let cpu = fx.cpu();
    let mut cpu_s = None;
    let started = Instant::now();
    let incremental = rounds_until(&engine, 5, async |_| {
        cpu_s.get_or_insert_with(|| fx.cpu_since(&cpu));
        for v in &changed {
            for &t in &TARGETS {
                if fx.stores[t].get(v.id).await?.map(|held| held.version) != Some(v.version.clone()) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    })
    .await?;
    let ms = incremental.seconds() * 1000.0;
    emit(json!({
        "bench": "sync.round.incremental", "rows": rows, "changes": changes, "batch_size": args.batch_size,
        "ms": ms, "rounds": incremental.reports.len(), "round_ms": incremental.durations_ms(),
        "target": "≤ 100 ms", "target_met": ms <= 100.0, "peers": null,
        "rows_read": incremental.rows_read(), "rows_applied": incremental.rows_applied(),
        "phases": fx.phases(started), "cpu_s": cpu_s, "cpu_note": "CPU seconds used during the first round",
        "untimed": "the changes (one write_many of updates to sampled existing rows in Dakar, separate pool), the check that Thies and Saint-Louis hold each changed version",
    }));
    fx.emit_pg_stats("sync.round.incremental").await?;

    // The next round reads the changes back as the other regions' own feed entries (echoes).
    fx.reset_times().await?;
    let started = Instant::now();
    let echo = rounds_until(&engine, 1, async |_| Ok(true)).await?;
    emit(json!({
        "bench": "sync.round.echo", "rows": rows, "ms": echo.seconds() * 1000.0, "rows_read": echo.rows_read(),
        "rows_applied": echo.rows_applied(), "phases": fx.phases(started),
        "note": "the round after the incremental one: targets' copies of the changes come back through their feeds (skipped or no-ops)",
    }));

    fx.reset_times().await?;
    let cpu = fx.cpu();
    let mut durations = Vec::with_capacity(idle);
    let mut read = 0;
    for _ in 0..idle {
        let begun = Instant::now();
        let report = engine.round().await;
        durations.push(begun.elapsed().as_secs_f64() * 1000.0);
        read += report.pairs.iter().map(|p| p.rows_read).sum::<u64>();
    }
    durations.sort_by(f64::total_cmp);
    let p50 = percentile(&durations, 0.5);
    let rss = status_kb(None, "VmRSS");
    emit(json!({
        "bench": "sync.round.idle", "rows": rows, "rounds": idle, "p50_ms": p50, "max_ms": durations.last(),
        "min_ms": durations.first(), "rows_read": read, "cpu_s": fx.cpu_since(&cpu),
        "target": "≤ 10 ms", "target_met": p50 <= 10.0, "peers": null,
    }));
    fx.emit_pg_stats("sync.round.idle").await?;
    let server = server::idle_rss(&fx.urls, Duration::from_secs(6)).await?;
    emit(json!({
        "bench": "sync.round.rss", "rows": rows,
        "bench_process_rss_mb": mb(rss), "bench_process_hwm_mb": mb(status_kb(None, "VmHWM")),
        "server_rss_mb": server.rss_mb, "server_hwm_mb": server.hwm_mb, "server_rounds": server.rounds,
        "target": "≤ 30 MB idle", "target_met": server.rss_mb.is_some_and(|m| m <= 30.0),
        "note": "bench_process: this process after the idle rounds (it also seeded and verified); server: a `dsms serve` child over the same three regions (sync_interval 1 s), VmRSS after its idle rounds",
    }));
    Ok(())
}
