//! `dsms bench write`: what durability costs a SQLite region (issue 12). One region in a
//! temporary file holds `rows` sales; `writes` single client writes (an update each: one
//! transaction, one commit) are timed through the store, with `synchronous=FULL` (what regions
//! run) and `synchronous=NORMAL` (what they ran before), alternately, plus one batch of 5,000 new
//! sales (an import's batch: one commit). Owns: that scenario only.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::domain::{Expect, LocalWrite, RegionName, VenteId};
use crate::store::sqlite::{Durability, SqliteStore};
use crate::store::{Limits, Store};

pub async fn run(rows: u64, writes: u32) -> anyhow::Result<()> {
    let dir = super::tempdir()?;
    let limits = Limits { connect_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(600) };
    let regions: Vec<RegionName> = crate::config::DEFAULT_REGIONS.iter().map(|n| RegionName::new(n)).collect();
    let today = chrono::Utc::now().date_naive();
    let mut rng = rand::rng();
    for (round, durability) in [Durability::Full, Durability::Normal, Durability::Full, Durability::Normal].into_iter().enumerate() {
        let path = dir.join(format!("write-{round}.db"));
        let store = SqliteStore::open_with(RegionName::new("Dakar"), &path, limits, durability).await?;
        store.migrate().await?;
        super::fill(&store, rows).await?;
        let sample = crate::seed::generate(usize::try_from(writes)?, &regions, today, &mut rng);
        let ids: Vec<VenteId> = store.scan(None, writes, false).await?.iter().map(|v| v.id).collect();
        let mut samples = Vec::with_capacity(ids.len());
        let started = Instant::now();
        for (id, (_, vente)) in ids.iter().zip(sample) {
            let write = LocalWrite::Update { id: *id, vente, expect: Expect::Nothing };
            let one = Instant::now();
            store.write(&write, chrono::Utc::now()).await?;
            samples.push(one.elapsed().as_secs_f64() * 1000.0);
        }
        let seconds = started.elapsed().as_secs_f64();
        samples.sort_by(f64::total_cmp);
        let batch = crate::seed::generate(5_000, &regions, today, &mut rng);
        let batch_started = Instant::now();
        store.write_many(&batch, chrono::Utc::now()).await?;
        let batch_ms = batch_started.elapsed().as_secs_f64() * 1000.0;
        let synchronous = if durability == Durability::Full { "full" } else { "normal" };
        println!(
            "{}",
            json!({"bench": "write.sqlite", "synchronous": synchronous, "rows": rows, "writes": samples.len(),
                   "p50_ms": super::percentile(&samples, 0.5), "p95_ms": super::percentile(&samples, 0.95),
                   "writes_per_s": samples.len() as f64 / seconds, "batch_5000_ms": batch_ms})
        );
        drop(store);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
