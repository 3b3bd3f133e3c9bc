//! Write-to-visible latency: the real server (`App::build` over the three PostgreSQL regions,
//! `sync_on_write` on) on a loopback port. Part one POSTs single sales through HTTP; part two
//! writes them with a plain `Store::write` through a store opened apart from the server (another
//! connection pool), which the server hears of by LISTEN/NOTIFY. For each write: the time from
//! sending it until both other regions hold it — by their commit times of the row (the default:
//! nothing runs beside the system while it works), or by polling `Store::get` (`--poll-us`).
//! Owns: the pacing, the timing of arrivals and the percentiles. Leaves: the server, the stores.

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

/// How a write's arrival in the other regions is timed.
#[derive(Clone)]
pub(super) enum Watch {
    /// Each region's commit time of the row (`track_commit_timestamp`; the clusters share this
    /// machine's clock), read once the row is there: looked for `COMMIT_LOOK` after sending the
    /// write, then every `COMMIT_LOOK`, so that nothing loads the machine while a write crosses
    /// loopback (a look costs the target's server a query; the commit time it reads does not
    /// depend on when it looks).
    CommitTime(Vec<sqlx::PgPool>),
    /// Each region's `Store::get` polled, `every` apart (zero: a tight loop), on this process's
    /// runtime: the polls compete with the server for the two cores.
    Poll { stores: Vec<Arc<dyn Store>>, every: Duration },
}

/// How long `Watch::CommitTime` waits before looking for a row, and between two looks.
const COMMIT_LOOK: Duration = Duration::from_millis(5);

impl Watch {
    /// Commit times in the regions at `urls` (their clusters record them: `Fixture::start_with`).
    pub(super) async fn commit_times(urls: &[String]) -> anyhow::Result<Self> {
        let mut pools = Vec::with_capacity(urls.len());
        for url in urls {
            pools.push(sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(url).await?);
        }
        Ok(Self::CommitTime(pools))
    }

    fn regions(&self) -> usize {
        match self {
            Self::CommitTime(pools) => pools.len(),
            Self::Poll { stores, .. } => stores.len(),
        }
    }

    /// The time from `sent` (also `sent_at` on the wall clock) until region `i` holds `id`.
    async fn arrival(&self, i: usize, id: VenteId, sent: Instant, sent_at: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Duration> {
        match self {
            Self::CommitTime(pools) => loop {
                tokio::time::sleep(COMMIT_LOOK).await;
                let committed: Option<Option<chrono::DateTime<chrono::Utc>>> =
                    sqlx::query_scalar("SELECT pg_xact_commit_timestamp(xmin) FROM vente WHERE id = $1")
                        .bind(id.0)
                        .fetch_optional(&pools[i])
                        .await?;
                if let Some(committed) = committed {
                    let committed = committed.ok_or_else(|| anyhow::anyhow!("no commit time: is track_commit_timestamp on?"))?;
                    return Ok((committed - sent_at).to_std().unwrap_or_default());
                }
                anyhow::ensure!(sent.elapsed() < GIVE_UP, "sale {id} not visible in {} after {GIVE_UP:?}", REGIONS[i]);
            },
            Self::Poll { stores, every } => loop {
                if stores[i].get(id).await?.is_some() {
                    return Ok(sent.elapsed());
                }
                anyhow::ensure!(sent.elapsed() < GIVE_UP, "sale {id} not visible in {} after {GIVE_UP:?}", REGIONS[i]);
                if every.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(*every).await;
                }
            },
        }
    }

    /// What the JSON line says of the method.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::CommitTime(_) => {
                "visible = the latest of the other regions' commit times of the row (track_commit_timestamp, same machine clock), \
                                    looked up 5 ms after sending and every 5 ms after: nothing polls while the write crosses loopback"
                    .to_owned()
            }
            Self::Poll { every, .. } => format!(
                "visible = both other regions' databases return the sale to Store::get, polled concurrently {}",
                if every.is_zero() { "in a tight loop".to_owned() } else { format!("every {every:?}") }
            ),
        }
    }
}

/// Writes into region `home` and times its arrival in the others.
pub(super) async fn one(writer: &Writer, watch: &Watch, home: usize) -> anyhow::Result<Sample> {
    let id = VenteId::generate();
    let sent = Instant::now();
    let sent_at = chrono::Utc::now();
    let write = async {
        writer.write(home, id).await?;
        Ok::<_, anyhow::Error>(sent.elapsed())
    };
    let others = (0..watch.regions()).filter(|i| *i != home).map(|i| watch.arrival(i, id, sent, sent_at));
    let (returned, visible) = tokio::join!(write, futures::future::try_join_all(others));
    let visible = visible?.into_iter().max().unwrap_or_default();
    Ok(Sample { returned: returned?, visible })
}

/// `writes` writes at `rate` per second, regions in turn, each measured on its own task.
async fn paced(writer: &Writer, watch: &Watch, writes: u32, rate: f64) -> anyhow::Result<Vec<Sample>> {
    for i in 0..WARM_UP {
        one(writer, watch, i as usize % REGIONS.len()).await?;
    }
    let every = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(writes as usize);
    for i in 0..writes {
        tokio::time::sleep_until(start + every * i).await;
        let (writer, watch) = (writer.clone(), watch.clone());
        tasks.push(tokio::spawn(async move { one(&writer, &watch, i as usize % REGIONS.len()).await }));
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

pub async fn run(writes: u32, rate: f64, poll: Option<Duration>, pg_stats: bool) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0.0, "--rate must be positive");
    let fx = Fixture::start_with(pg_stats, poll.is_none()).await?;
    let mut config = Config::with_regions(REGIONS.iter().copied().zip(fx.urls.iter().map(|u| DatabaseUrl::Postgres(u.clone()))).collect());
    config.listen = ([127, 0, 0, 1], 0).into();
    config.sync_on_write = true;
    let app = App::build(config).await?;
    let base = format!("http://{}", app.local_addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
    let watch = match poll {
        None => Watch::commit_times(&fx.urls).await?,
        Some(every) => Watch::Poll { stores: fx.stores.clone(), every },
    };
    let common = json!({"writes": writes, "rate_per_s": rate, "poll_us": poll.map(|p| p.as_micros() as u64), "warm_up_writes": WARM_UP});

    fx.reset_times().await?;
    let http = Writer::Http { client: reqwest::Client::new(), base };
    let cpu = fx.cpu();
    let samples = paced(&http, &watch, writes, rate).await?;
    let cpu_s = fx.cpu_since(&cpu);
    let p95_visible = p95(&samples, |s| s.visible);
    emit(json!({
        "bench": "sync.latency.api", "params": common,
        "visible_from_post": summary(ms_of(&samples, |s| s.visible.as_secs_f64() * 1000.0)),
        "http_response": summary(ms_of(&samples, |s| s.returned.as_secs_f64() * 1000.0)),
        "target": "p95 ≤ 3 ms from sending the POST (issue 15)", "target_met": p95_visible <= 3.0,
        "peers": {"pglogical_p95_ms_from_commit": 5.5}, "cpu_s": cpu_s,
        "how": format!("POST /api/ventes to the in-process server (App::build, 3 PostgreSQL clusters), home region in turn; {}", watch.describe()),
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
    let samples = paced(&writer, &watch, writes, rate).await?;
    let cpu_s = fx.cpu_since(&cpu);
    let p95_visible = p95(&samples, |s| s.visible);
    emit(json!({
        "bench": "sync.latency.direct", "params": common,
        "visible_from_write": summary(ms_of(&samples, |s| s.visible.as_secs_f64() * 1000.0)),
        "visible_after_commit": summary(ms_of(&samples, |s| s.visible.saturating_sub(s.returned).as_secs_f64() * 1000.0)),
        "write_call": summary(ms_of(&samples, |s| s.returned.as_secs_f64() * 1000.0)),
        "target": "p95 ≤ 50 ms", "target_met": p95_visible <= 50.0,
        "peers": {"pglogical_p95_ms_from_commit": 5.5}, "cpu_s": cpu_s,
        "how": format!("Store::write (LocalWrite::Create) through a store opened apart from the server, home region in turn; the server hears of it by LISTEN/NOTIFY and runs a round; {}", watch.describe()),
    }));
    fx.emit_pg_stats("sync.latency.direct").await?;

    stop.cancel();
    server.await??;
    Ok(())
}
