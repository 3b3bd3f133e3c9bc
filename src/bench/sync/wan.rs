//! The sites joined by a wide-area link: three PostgreSQL clusters, Thies's and Saint-Louis's
//! reached from Dakar through a proxy that delays each direction by half the round trip, and one
//! in-process dsms in Dakar with Dakar's database local — first with `home = "Dakar"`, then in the
//! central shape. For single sales POSTed to it: the HTTP answer, and the time until both other
//! databases (read directly, not through the proxy) committed the sale. Then idle rounds over the
//! WAN, in time and in round trips (as the round report counts them); and, at home, a catch-up
//! of 100,000 sales written in Thies, pulled into Dakar across the WAN, and the round after it.
//! Owns: the topology and the pacing. Leaves: the measuring (latency.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::emit;
use super::fixture::{Fixture, REGIONS};
use super::latency::{Sample, Watch, Writer, one, summary};
use crate::app::App;
use crate::config::{Config, DatabaseUrl};
use crate::testkit::proxy::DelayProxy;

/// Untimed writes first (pools opened across the WAN, caches warm).
const WARM_UP: u32 = 5;
/// Idle rounds timed in each shape.
const IDLE_ROUNDS: u32 = 5;
/// Untimed full rounds first: the writes' rounds read only Dakar, so the pools to the other two
/// regions still grow to what a full round uses at once (a new connection across the WAN costs
/// round trips of its own), and a round the last write asked for may still be running.
const IDLE_WARM_UP: u32 = 3;
/// Sales written in Thies (away from the instance) and carried into Dakar across the WAN.
const CATCH_UP: u64 = 100_000;

pub async fn run(rtt_ms: u64, writes: u32, rate: f64) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0.0, "--rate must be positive");
    let fx = Fixture::start_with(false, true).await?;
    let watch = Watch::commit_times(&fx.urls).await?;
    let one_way = Duration::from_millis(rtt_ms) / 2;
    // Dakar's instance reaches its own database directly, the two others across the WAN.
    let mut seen_from_dakar = vec![fx.urls[0].clone()];
    let mut proxies = Vec::new();
    for url in &fx.urls[1..] {
        let (proxy, through) = DelayProxy::in_front_of(url, one_way).await?;
        seen_from_dakar.push(through);
        proxies.push(proxy);
    }
    // The central shape first: the home shape's catch-up leaves Saint-Louis behind.
    for shape in ["central", "home"] {
        let mut config =
            Config::with_regions(REGIONS.iter().copied().zip(seen_from_dakar.iter().map(|u| DatabaseUrl::Postgres(u.clone()))).collect());
        config.listen = ([127, 0, 0, 1], 0).into();
        config.sync_on_write = true;
        config.data_dir = std::env::temp_dir().join(format!("dsms-bench-wan-{}-{shape}", std::process::id()));
        if shape == "home" {
            config.home = config.region_names().resolve("Dakar").cloned();
        }
        let app = App::build(config.clone()).await?;
        let base = format!("http://{}", app.local_addr());
        let scheduler = app.scheduler();
        let stop = CancellationToken::new();
        let server = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
        let writer = Writer::Http { client: reqwest::Client::new(), base };
        for _ in 0..WARM_UP {
            one(&writer, &watch, 0).await?;
        }
        let every = Duration::from_secs_f64(1.0 / rate);
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(writes as usize);
        for i in 0..writes {
            tokio::time::sleep_until(start + every * i).await;
            let (writer, watch) = (writer.clone(), watch.clone());
            tasks.push(tokio::spawn(async move { one(&writer, &watch, 0).await }));
        }
        let mut samples: Vec<Sample> = Vec::with_capacity(tasks.len());
        for task in tasks {
            samples.push(task.await??);
        }
        // Idle rounds: nothing to carry, only the WAN's round trips.
        for _ in 0..IDLE_WARM_UP {
            scheduler.run_now().await;
        }
        let mut idle_ms = Vec::new();
        let mut idle_trips = Vec::new();
        for _ in 0..IDLE_ROUNDS {
            let began = Instant::now();
            let report = scheduler.run_now().await;
            idle_ms.push(began.elapsed().as_secs_f64() * 1000.0);
            idle_trips.push(report.regions.iter().skip(1).map(|r| r.round_trips).sum::<u64>());
        }
        // Pairs that read a remote region: at home, Thies and Saint-Louis into Dakar; centrally,
        // all six pairs (the one between Thies and Saint-Louis crosses the WAN at both ends).
        let remote_pairs: u64 = if shape == "home" { 2 } else { 6 };
        let max_trips = idle_trips.iter().copied().max().unwrap_or(0);

        let ms = |of: &dyn Fn(&Sample) -> Duration| samples.iter().map(|s| of(s).as_secs_f64() * 1000.0).collect::<Vec<_>>();
        let idle = summary(idle_ms.clone());
        let idle_p50 = idle["p50_ms"].as_f64().unwrap_or(0.0);
        emit(json!({
            "bench": "sync.wan", "shape": shape,
            "params": {"rtt_ms": rtt_ms, "writes": writes, "rate_per_s": rate, "warm_up_writes": WARM_UP},
            "post": summary(ms(&|s| s.returned)),
            "visible_in_both_others_from_post": summary(ms(&|s| s.visible)),
            "idle_round": idle,
            "idle_round_in_rtts": if rtt_ms == 0 { 0.0 } else { idle_p50 / rtt_ms as f64 },
            "idle_round_trips_to_remote_regions": {"max": max_trips, "per_remote_pair": max_trips as f64 / remote_pairs as f64},
            "targets": {"post_p95_ms": 15, "visible_p95_ms": rtt_ms as f64 / 2.0 + 10.0, "idle_round_trips_per_pair": 2},
            "how": format!("3 PostgreSQL clusters; Thies and Saint-Louis behind a proxy delaying each direction by rtt/2; one in-process dsms in Dakar (Dakar's database direct); POST /api/ventes; {} (the databases read directly, not through the proxy); round trips = the round report's count for Thies and Saint-Louis (statements that waited for an answer); idle rounds timed after {IDLE_WARM_UP} untimed ones", watch.describe()),
        }));
        stop.cancel();
        server.await??;
        let _ = std::fs::remove_dir_all(&config.data_dir);
    }
    // The catch-up, with a home instance of its own that runs no round but the bench's.
    let mut config =
        Config::with_regions(REGIONS.iter().copied().zip(seen_from_dakar.iter().map(|u| DatabaseUrl::Postgres(u.clone()))).collect());
    config.listen = ([127, 0, 0, 1], 0).into();
    config.sync_on_write = false;
    config.sync_interval = None;
    config.home = config.region_names().resolve("Dakar").cloned();
    config.data_dir = std::env::temp_dir().join(format!("dsms-bench-wan-{}-catch-up", std::process::id()));
    let caught = catch_up(&fx, config.clone()).await?;
    emit(json!({
        "bench": "sync.wan", "shape": "home", "phase": "catch_up",
        "params": {"rtt_ms": rtt_ms, "rows": CATCH_UP, "batch": crate::sync::engine::DEFAULT_BATCH},
        "catch_up": caught,
        "how": "100,000 sales written into Thies (write_many, 10,000 per transaction, untimed, no instance running), then a home instance in Dakar started and its rounds (its own first one, then rounds asked by the bench) until Dakar holds every sale of Thies, timed from the start; Thies across the WAN; next_round = the round after",
    }));
    let _ = std::fs::remove_dir_all(&config.data_dir);
    drop(proxies);
    Ok(())
}

/// Writes `CATCH_UP` sales into Thies directly, then times the rounds of a home instance in Dakar
/// (`config`) that carry them across the WAN, and the round after.
async fn catch_up(fx: &Fixture, config: Config) -> anyhow::Result<serde_json::Value> {
    let sales: Vec<_> = super::fixture::new_sales(CATCH_UP).collect();
    for batch in sales.chunks(10_000) {
        fx.stores[1].write_many(batch, chrono::Utc::now()).await?;
    }
    let everything = fx.stores[1].count_live().await?;
    let app = App::build(config).await?;
    let scheduler = app.scheduler();
    // Every round counts, the server's own first one included.
    let tally = Arc::new(Tally::default());
    scheduler.add_listener(tally.clone());
    let stop = CancellationToken::new();
    let began = Instant::now();
    let server = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
    let mut asked = 0;
    while fx.stores[0].count_live().await? < everything {
        anyhow::ensure!(asked < 100, "Dakar still short of Thies's {everything} sales after {asked} rounds");
        scheduler.run_now().await;
        asked += 1;
    }
    let seconds = began.elapsed().as_secs_f64();
    let (rounds, trips) = tally.0.lock().map(|t| *t).unwrap_or_default();
    let next = scheduler.run_now().await;
    stop.cancel();
    server.await??;
    Ok(json!({
        "rows": CATCH_UP, "seconds": seconds, "rounds": rounds, "round_trips_to_thies": trips,
        "rows_per_s": CATCH_UP as f64 / seconds,
        "next_round": {"ms": next.duration.as_secs_f64() * 1000.0, "rows_read": next.pairs.iter().map(|p| p.rows_read).sum::<u64>(),
                       "round_trips_to_thies": next.regions[1].round_trips},
    }))
}

/// Rounds seen and round trips they made to Thies.
#[derive(Default)]
struct Tally(std::sync::Mutex<(u64, u64)>);

impl crate::sync::scheduler::RoundListener for Tally {
    fn round_done(&self, report: &crate::sync::report::RoundReport) {
        if let Ok(mut tally) = self.0.lock() {
            tally.0 += 1;
            tally.1 += report.regions[1].round_trips;
        }
    }
}
