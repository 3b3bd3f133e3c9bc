//! The sites joined by a wide-area link: three PostgreSQL clusters, Thies's and Saint-Louis's
//! reached from Dakar through a proxy that delays each direction by half the round trip, and one
//! in-process dsms in Dakar with Dakar's database local — first with `home = "Dakar"`, then in the
//! central shape. For single sales POSTed to it: the HTTP answer, and the time until both other
//! databases (read directly, not through the proxy) return the sale. Then idle rounds over the
//! WAN, in round trips. Owns: the topology and the pacing. Leaves: the measuring (latency.rs).

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::emit;
use super::fixture::{Fixture, REGIONS};
use super::latency::{Sample, Writer, one, summary};
use crate::app::App;
use crate::config::{Config, DatabaseUrl};
use crate::testkit::proxy::DelayProxy;

/// Untimed writes first (pools opened across the WAN, caches warm).
const WARM_UP: u32 = 5;
/// Idle rounds timed in each shape.
const IDLE_ROUNDS: u32 = 5;

pub async fn run(rtt_ms: u64, writes: u32, rate: f64) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0.0, "--rate must be positive");
    let fx = Fixture::start(false).await?;
    let one_way = Duration::from_millis(rtt_ms) / 2;
    // Dakar's instance reaches its own database directly, the two others across the WAN.
    let mut seen_from_dakar = vec![fx.urls[0].clone()];
    let mut proxies = Vec::new();
    for url in &fx.urls[1..] {
        let (proxy, through) = DelayProxy::in_front_of(url, one_way).await?;
        seen_from_dakar.push(through);
        proxies.push(proxy);
    }
    for shape in ["home", "central"] {
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
            one(&writer, &fx.stores, 0, Duration::ZERO).await?;
        }
        let every = Duration::from_secs_f64(1.0 / rate);
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(writes as usize);
        for i in 0..writes {
            tokio::time::sleep_until(start + every * i).await;
            let (writer, pollers) = (writer.clone(), fx.stores.clone());
            tasks.push(tokio::spawn(async move { one(&writer, &pollers, 0, Duration::ZERO).await }));
        }
        let mut samples: Vec<Sample> = Vec::with_capacity(tasks.len());
        for task in tasks {
            samples.push(task.await??);
        }
        // Idle rounds: nothing to carry, only the WAN's round trips.
        let mut idle_ms = Vec::new();
        for _ in 0..IDLE_ROUNDS {
            let began = Instant::now();
            scheduler.run_now().await;
            idle_ms.push(began.elapsed().as_secs_f64() * 1000.0);
        }
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
            "targets": {"post_p95_ms": 15, "visible_p95_ms": rtt_ms as f64 / 2.0 + 10.0, "idle_round_trips_per_pair": 2},
            "how": "3 PostgreSQL clusters; Thies and Saint-Louis behind a proxy delaying each direction by rtt/2; one in-process dsms in Dakar (Dakar's database direct); POST /api/ventes; visible = both other databases return the sale to Store::get, polled directly",
        }));
        stop.cancel();
        server.await??;
        let _ = std::fs::remove_dir_all(&config.data_dir);
    }
    drop(proxies);
    Ok(())
}
