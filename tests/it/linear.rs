//! Work that grows linearly with the regions (issue 13): six SQLite regions, rows read per round
//! counted from the round reports. A change is read once per region that needs it; the round
//! after a catch-up reads next to nothing; a region the origin cannot reach still gets it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dsms::config::{Config, DatabaseUrl};
use dsms::domain::RegionName;
use dsms::store::{self, Limits, Store};
use dsms::sync::engine::{Engine, EngineOptions};
use dsms::sync::report::{RoundReport, RoundStatus};
use dsms::testkit::flaky::{Flaky, FlakyStore};

use crate::helpers::pg_database;

const SIX: [&str; 6] = ["Dakar", "Thies", "Saint-Louis", "Ziguinchor", "Kaolack", "Tambacounda"];

type Regions = (Vec<Arc<dyn Store>>, Vec<Arc<FlakyStore>>, Engine);

/// Six migrated SQLite regions, each behind a drill switch, and the engine over them.
async fn six_regions(dir: &std::path::Path, batch_size: u32) -> Regions {
    six_regions_at(SIX.iter().map(|n| DatabaseUrl::Sqlite(dir.join(format!("{n}.db")))).collect(), batch_size).await
}

/// Six migrated regions at `urls`, each behind a drill switch, and the engine over them.
async fn six_regions_at(urls: Vec<DatabaseUrl>, batch_size: u32) -> Regions {
    let limits = Limits { connect_timeout: Duration::from_secs(2), statement_timeout: Duration::from_secs(30) };
    let config = Config::with_regions(SIX.iter().copied().zip(urls).collect());
    let mut real = Vec::new();
    for region in &config.regions {
        let store = store::open(region, limits).await.unwrap();
        store.migrate().await.unwrap();
        real.push(store);
    }
    let flaky: Vec<Arc<FlakyStore>> = real.iter().map(|s| Flaky::wrap(s.clone())).collect();
    let stores: Vec<Arc<dyn Store>> = flaky.iter().map(|f| f.clone() as Arc<dyn Store>).collect();
    let engine = Engine::new(stores, EngineOptions { batch_size, round_deadline: Duration::from_secs(120) });
    (real, flaky, engine)
}

/// `n` new sales written into `store`, 100 to a transaction.
async fn write_sales(store: &Arc<dyn Store>, n: usize) {
    let regions: Vec<RegionName> = Config::with_regions(SIX.iter().map(|n| (*n, DatabaseUrl::Sqlite("x".into()))).collect())
        .regions
        .into_iter()
        .map(|r| r.name)
        .collect();
    let rows = dsms::seed::generate(n, &regions, Utc::now().date_naive(), &mut rand::rng());
    for chunk in rows.chunks(100) {
        store.write_many(chunk, Utc::now()).await.unwrap();
    }
}

fn read(report: &RoundReport) -> u64 {
    report.pairs.iter().map(|p| p.rows_read).sum()
}

fn skipped(report: &RoundReport) -> u64 {
    report.pairs.iter().map(|p| p.rows_skipped).sum()
}

async fn assert_identical(stores: &[Arc<dyn Store>]) {
    let (report, divergent) = dsms::sync::verify::verify(stores, 10).await.unwrap();
    assert_eq!(divergent, 0, "divergent ids: {:?}", report.divergent);
}

#[tokio::test]
async fn six_regions_read_each_new_sale_once_per_region_and_nearly_nothing_after() {
    let dir = tempfile::tempdir().unwrap();
    // Small batches: several applies (and log rows) per pair, several pages per read.
    read_each_sale_once(six_regions(dir.path(), 500).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_postgresql_regions_read_each_new_sale_once_per_region_and_nearly_nothing_after() {
    let urls: Option<Vec<DatabaseUrl>> = SIX.iter().map(|_| pg_database().map(DatabaseUrl::Postgres)).collect();
    let Some(urls) = urls else { return };
    read_each_sale_once(six_regions_at(urls, 500).await).await;
}

async fn read_each_sale_once((real, flaky, engine): Regions) {
    // In service: a few sales everywhere, replicated, then rounds until nothing is read.
    for store in &real {
        write_sales(store, 20).await;
    }
    for _ in 0..4 {
        assert_eq!(engine.round().await.status, RoundStatus::Success);
    }
    assert_eq!(read(&engine.round().await), 0);

    // 2,000 new sales in Dakar while the five others are drilled down.
    let n: u64 = 2_000;
    for f in &flaky[1..] {
        f.guard().set_down(true);
    }
    write_sales(&real[0], n as usize).await;
    for f in &flaky[1..] {
        f.guard().set_down(false);
    }

    // Round one carries them to the five others: each reads them once, from Dakar.
    let needed = 5 * n;
    let first = engine.round().await;
    assert_eq!(first.status, RoundStatus::Success);
    assert_eq!(first.rows_applied(), needed);
    assert!(read(&first) * 10 <= needed * 11, "round one read {} rows for {needed} needed: {:?}", read(&first), first.pairs);

    // The rounds after: every copy is held wherever it would go, so each range of copies is
    // skipped (25 pairs × n: 4 other targets and Dakar read each target's copies).
    let second = engine.round().await;
    assert!(read(&second) * 100 <= needed, "round two read {}: {:?}", read(&second), second.pairs);
    assert_eq!(skipped(&second), 25 * n, "{:?}", second.pairs);
    assert_eq!(second.rows_applied(), 0);
    let third = engine.round().await;
    assert_eq!((read(&third), skipped(&third)), (0, 0), "{:?}", third.pairs);
    assert_identical(&real).await;
}

#[tokio::test]
async fn a_sale_still_reaches_through_other_regions_a_region_its_origin_cannot_reach_and_then_rounds_are_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let (real, flaky, engine) = six_regions(dir.path(), 500).await;
    for store in &real {
        write_sales(store, 10).await;
    }
    for _ in 0..4 {
        engine.round().await;
    }
    assert_eq!(read(&engine.round().await), 0);

    // Thies is down while Dakar's new sales go out; then Dakar is down when Thies comes back.
    let m: u64 = 300;
    write_sales(&real[0], m as usize).await;
    flaky[1].guard().set_down(true);
    let without_thies = engine.round().await;
    assert_eq!(without_thies.status, RoundStatus::Partial);
    assert_eq!(without_thies.rows_applied(), 4 * m);
    flaky[1].guard().set_down(false);
    flaky[0].guard().set_down(true);
    let without_dakar = engine.round().await;
    assert_eq!(without_dakar.status, RoundStatus::Partial);
    // Thies has not read Dakar's feed that far: the four others forward their copies to it.
    assert_eq!(without_dakar.rows_applied(), m);
    let to_thies: u64 = without_dakar.pairs.iter().filter(|p| p.target.as_str() == "Thies").map(|p| p.rows_read).sum();
    assert!(to_thies >= m, "{:?}", without_dakar.pairs);
    flaky[0].guard().set_down(false);

    // Everyone holds everything. Dakar is back: Thies reads Dakar's sales once more from Dakar's
    // own feed (it got them by another path, and Dakar's own writes carry no log row), and Dakar
    // reads Thies's copies once (it read the feeds they were forwarded from only in this very
    // round, after its cursors were taken). Then rounds read nothing.
    let back = engine.round().await;
    assert_eq!(back.status, RoundStatus::Success);
    assert_eq!(back.rows_applied(), 0);
    assert!(read(&back) <= 2 * m, "{:?}", back.pairs);
    let quiet = engine.round().await;
    assert_eq!(read(&quiet), 0, "{:?}", quiet.pairs);
    assert_identical(&real).await;
}
