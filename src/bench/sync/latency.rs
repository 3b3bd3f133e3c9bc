//! Write-to-visible latency: the real server (`App::build` over the three PostgreSQL regions,
//! `sync_on_write` on) on a loopback port. Part one POSTs single sales through HTTP; part two
//! writes them with a plain `Store::write` through a store opened apart from the server (another
//! connection pool), which the server hears of by LISTEN/NOTIFY. For each write: the time from
//! sending it until both other regions' databases return the sale to a direct `Store::get`.
//! Owns: the pacing, the polling and the percentiles. Leaves: the server, the stores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::emit;
use super::fixture::{Fixture, REGIONS, new_sales, open_region, percentile};
use crate::app::App;
use crate::config::{Config, DatabaseUrl};
use crate::domain::LocalWrite;
use crate::domain::VenteId;
use crate::domain::WriteOutcome;
use crate::store::Store;

/// A write not visible everywhere after this counts as lost.
const GIVE_UP: Duration = Duration::from_secs(5);
/// Untimed writes first, to open the pools and warm the caches.
const WARM_UP: u32 = 10;

/// One write's timings, from the moment it was sent.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    /// The write call returned (HTTP response received, or the direct write committed).
    pub(super) returned: Duration,
    /// Both other regions return the sale.
    pub(super) visible: Duration,
}

/// How a write is made.
#[derive(Clone)]
pub(super) enum Writer {
    Http { client: reqwest::Client, base: String },
    Direct { stores: Vec<Arc<dyn Store>> },
}

impl Writer {
    async fn write(&self, home: usize, id: VenteId) -> anyhow::Result<()> {
        let Some((_, vente)) = new_sales(1).next() else { anyhow::bail!("no sale generated") };
        let region = REGIONS[home];
        match self {
            Self::Http { client, base } => {
                let body = json!({
                    "id": id.0, "produit": vente.produit.as_str(), "montant": vente.montant.to_string(),
                    "dateVente": vente.date_vente.to_string(), "region": region,
                });
                let response = client.post(format!("{base}/api/ventes")).json(&body).send().await?;
                anyhow::ensure!(response.status() == reqwest::StatusCode::CREATED, "POST answered {}", response.status());
            }
            Self::Direct { stores } => {
                let vente = crate::domain::NewVente { region: crate::domain::RegionName::new(region), ..vente };
                let outcome = stores[home].write(&LocalWrite::Create { id, vente }, chrono::Utc::now()).await?;
                anyhow::ensure!(matches!(outcome, WriteOutcome::Written(_)), "direct write not written: {outcome:?}");
            }
        }
        Ok(())
    }
}

/// Polls `store` for `id` until it is there; the time since `sent`.
async fn visible_in(store: &dyn Store, id: VenteId, sent: Instant, poll: Duration) -> anyhow::Result<Duration> {
    loop {
        if store.get(id).await?.is_some() {
            return Ok(sent.elapsed());
        }
        anyhow::ensure!(sent.elapsed() < GIVE_UP, "sale {id} not visible in {} after {GIVE_UP:?}", store.region());
        if poll.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(poll).await;
        }
    }
}

/// Writes into region `home`, polling the two others meanwhile.
pub(super) async fn one(writer: &Writer, pollers: &[Arc<dyn Store>], home: usize, poll: Duration) -> anyhow::Result<Sample> {
    let id = VenteId::generate();
    let sent = Instant::now();
    let write = async {
        writer.write(home, id).await?;
        Ok::<_, anyhow::Error>(sent.elapsed())
    };
    let others = pollers.iter().enumerate().filter(|(i, _)| *i != home).map(|(_, s)| visible_in(s.as_ref(), id, sent, poll));
    let (returned, visible) = tokio::join!(write, futures::future::try_join_all(others));
    let visible = visible?.into_iter().max().unwrap_or_default();
    Ok(Sample { returned: returned?, visible })
}

/// `writes` writes at `rate` per second, regions in turn, each measured on its own task.
async fn paced(writer: &Writer, pollers: &[Arc<dyn Store>], writes: u32, rate: f64, poll: Duration) -> anyhow::Result<Vec<Sample>> {
    for i in 0..WARM_UP {
        one(writer, pollers, i as usize % REGIONS.len(), poll).await?;
    }
    let every = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(writes as usize);
    for i in 0..writes {
        tokio::time::sleep_until(start + every * i).await;
        let (writer, pollers) = (writer.clone(), pollers.to_vec());
        tasks.push(tokio::spawn(async move { one(&writer, &pollers, i as usize % REGIONS.len(), poll).await }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for task in tasks {
        samples.push(task.await??);
    }
    Ok(samples)
}

/// p50, p95 and max in milliseconds.
pub(super) fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    json!({"p50_ms": percentile(&ms, 0.5), "p95_ms": percentile(&ms, 0.95), "max_ms": ms.last()})
}

fn p95(samples: &[Sample], of: impl Fn(&Sample) -> Duration) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|s| of(s).as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    percentile(&ms, 0.95)
}

fn ms_of(samples: &[Sample], of: impl Fn(&Sample) -> f64) -> Vec<f64> {
    samples.iter().map(of).collect()
}

pub async fn run(writes: u32, rate: f64, poll: Duration, pg_stats: bool) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0.0, "--rate must be positive");
    let fx = Fixture::start(pg_stats).await?;
    let mut config = Config::with_regions(REGIONS.iter().copied().zip(fx.urls.iter().map(|u| DatabaseUrl::Postgres(u.clone()))).collect());
    config.listen = ([127, 0, 0, 1], 0).into();
    config.sync_on_write = true;
    let app = App::build(config).await?;
    let base = format!("http://{}", app.local_addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
    let pollers = fx.stores.clone();
    let common = json!({"writes": writes, "rate_per_s": rate, "poll_us": poll.as_micros() as u64, "warm_up_writes": WARM_UP});

    fx.reset_times().await?;
    let http = Writer::Http { client: reqwest::Client::new(), base };
    let cpu = fx.cpu();
    let samples = paced(&http, &pollers, writes, rate, poll).await?;
    let cpu_s = fx.cpu_since(&cpu);
    let p95_visible = p95(&samples, |s| s.visible);
    emit(json!({
        "bench": "sync.latency.api", "params": common,
        "visible_from_post": summary(ms_of(&samples, |s| s.visible.as_secs_f64() * 1000.0)),
        "http_response": summary(ms_of(&samples, |s| s.returned.as_secs_f64() * 1000.0)),
        "target": "p95 ≤ 10 ms from sending the POST", "target_met": p95_visible <= 10.0,
        "peers": {"pglogical_p95_ms_from_commit": 5.5}, "cpu_s": cpu_s,
        "how": "POST /api/ventes to the in-process server (App::build, 3 PostgreSQL clusters), home region in turn; visible = both other regions' databases return the sale to Store::get (separate pools, polled concurrently)",
    }));
    fx.emit_pg_stats("sync.latency.api").await?;

    // Part two: another connection writes straight into the regions' databases.
    let mut direct = Vec::with_capacity(REGIONS.len());
    for (name, url) in REGIONS.iter().zip(&fx.urls) {
        direct.push(open_region(name, url).await?);
    }
    let writer = Writer::Direct { stores: direct };
    fx.reset_times().await?;
    let cpu = fx.cpu();
    let samples = paced(&writer, &pollers, writes, rate, poll).await?;
    let cpu_s = fx.cpu_since(&cpu);
    let p95_visible = p95(&samples, |s| s.visible);
    emit(json!({
        "bench": "sync.latency.direct", "params": common,
        "visible_from_write": summary(ms_of(&samples, |s| s.visible.as_secs_f64() * 1000.0)),
        "visible_after_commit": summary(ms_of(&samples, |s| s.visible.saturating_sub(s.returned).as_secs_f64() * 1000.0)),
        "write_call": summary(ms_of(&samples, |s| s.returned.as_secs_f64() * 1000.0)),
        "target": "p95 ≤ 50 ms", "target_met": p95_visible <= 50.0,
        "peers": {"pglogical_p95_ms_from_commit": 5.5}, "cpu_s": cpu_s,
        "how": "Store::write (LocalWrite::Create) through a store opened apart from the server, home region in turn; the server hears of it by LISTEN/NOTIFY and runs a round; visible as above",
    }));
    fx.emit_pg_stats("sync.latency.direct").await?;

    stop.cancel();
    server.await??;
    Ok(())
}
