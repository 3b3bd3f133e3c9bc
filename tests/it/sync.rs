//! Replication: convergence under random writes, partitions, skew, crashes and replays (proptest
//! over real stores), late commits, clock skew, conflicts, forwarding, several syncers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use dsms::config::{Config, DatabaseUrl};
use dsms::domain::vente::VenteFields;
use dsms::domain::{Expect, LocalWrite, WriteOutcome};
use dsms::domain::{NewVente, Vente, VenteId};
use dsms::store::{self, Batch, FeedPosition, Limits, Store};
use dsms::sync::engine::{Engine, EngineOptions};
use dsms::sync::report::RoundStatus;
use dsms::testkit::flaky::{Flaky, FlakyStore};
use proptest::prelude::*;

use crate::foreign_writers::Plain;
use crate::helpers::pg_database;

pub const NAMES: [&str; 3] = ["Dakar", "Thies", "Saint-Louis"];
/// Up to six regions, the first three as `NAMES`.
const SIX: [&str; 6] = ["Dakar", "Thies", "Saint-Louis", "Ziguinchor", "Kaolack", "Tambacounda"];

fn limits() -> Limits {
    Limits { connect_timeout: Duration::from_secs(2), statement_timeout: Duration::from_secs(30) }
}

/// Opens and migrates one store per URL, named Dakar, Thies, Saint-Louis (then Ziguinchor,
/// Kaolack, Tambacounda).
pub async fn open_stores(urls: Vec<DatabaseUrl>) -> Vec<Arc<dyn Store>> {
    open_stores_with(urls, limits()).await
}

/// `open_stores` with other timeouts.
pub async fn open_stores_with(urls: Vec<DatabaseUrl>, limits: Limits) -> Vec<Arc<dyn Store>> {
    let config = Config::with_regions(SIX.iter().copied().zip(urls).collect());
    let mut stores = Vec::new();
    for region in &config.regions {
        let store = store::open(region, limits).await.unwrap();
        store.migrate().await.unwrap();
        stores.push(store);
    }
    stores
}

pub fn sqlite_urls(dir: &std::path::Path) -> Vec<DatabaseUrl> {
    NAMES.iter().map(|n| DatabaseUrl::Sqlite(dir.join(format!("{n}.db")))).collect()
}

fn six_sqlite_urls(dir: &std::path::Path) -> Vec<DatabaseUrl> {
    SIX.iter().map(|n| DatabaseUrl::Sqlite(dir.join(format!("{n}.db")))).collect()
}

pub fn pg_urls() -> Option<Vec<DatabaseUrl>> {
    Some(vec![DatabaseUrl::Postgres(pg_database()?), DatabaseUrl::Postgres(pg_database()?), DatabaseUrl::Postgres(pg_database()?)])
}

fn engine(stores: &[Arc<dyn Store>], batch_size: u32) -> Engine {
    Engine::new(stores.to_vec(), EngineOptions { batch_size, round_deadline: Duration::from_secs(60) })
}

pub fn new_vente(stores: &[Arc<dyn Store>], region: usize, produit: &str, montant: &str) -> NewVente {
    let regions = Config::with_regions(NAMES.iter().map(|n| (*n, DatabaseUrl::Sqlite("x".into()))).collect()).region_names();
    let _ = stores;
    let fields =
        VenteFields { produit: Some(produit), montant: Some(montant), date_vente: Some("2026-01-15"), region: Some(NAMES[region]) };
    NewVente::parse(&fields, &regions, NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()).unwrap()
}

/// Every row of a store, tombstones included, by id.
pub async fn dump(store: &dyn Store) -> HashMap<VenteId, Vente> {
    let mut rows = HashMap::new();
    let mut after = None;
    loop {
        let batch = store.scan(after, 1000, true).await.unwrap();
        let done = batch.len() < 1000;
        after = batch.last().map(|v| v.id);
        rows.extend(batch.into_iter().map(|v| (v.id, v)));
        if done {
            return rows;
        }
    }
}

/// The visible state of a row: content, tombstone and version (not the causal metadata).
fn visible(v: &Vente) -> (String, i64, NaiveDate, String, bool, DateTime<Utc>, String) {
    (v.produit.to_string(), v.montant.cents(), v.date_vente.get(), v.region.to_string(), v.deleted, v.updated_at, v.version.to_string())
}

async fn assert_converged(stores: &[Arc<dyn Store>], oracle: &HashMap<VenteId, Vente>) {
    for store in stores {
        let rows = dump(store.as_ref()).await;
        assert_eq!(rows.len(), oracle.len(), "{} holds {} rows, oracle {}", store.region(), rows.len(), oracle.len());
        for (id, expected) in oracle {
            let got = rows.get(id).unwrap_or_else(|| panic!("{} lacks {id}", store.region()));
            assert_eq!(visible(got), visible(expected), "{} row {id}", store.region());
        }
    }
}

// ---------- the convergence property ----------

/// Regions are drawn among six and taken modulo the case's count.
#[derive(Clone, Debug)]
enum Op {
    /// A client write at a region whose clock is `skew_min` minutes off.
    Write { region: usize, row: usize, kind: u8, skew_min: i64, montant: u32 },
    /// A round with some regions down, the syncer dying after `crash_after` store calls.
    Round { down: [bool; 6], crash_after: Option<i64> },
    /// A whole feed re-delivered out of order (duplicates, reordering), without cursors.
    Replay { source: usize, target: usize, seed: u64 },
    /// Plain SQL from a connection that is not dsms's (psql, `sqlite3`): 0 INSERT with the guide's
    /// columns, 1 UPDATE of two rows, 2 hard DELETE; stamped by the region's triggers.
    Foreign { region: usize, row: usize, kind: u8, montant: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..6usize, 0..8usize, 0..3u8, -60i64..=60, 1..1_000_000u32)
            .prop_map(|(region, row, kind, skew_min, montant)| Op::Write { region, row, kind, skew_min, montant }),
        3 => (any::<[bool; 6]>(), proptest::option::of(0..40i64)).prop_map(|(down, crash_after)| Op::Round { down, crash_after }),
        1 => (0..6usize, 0..6usize, any::<u64>()).prop_map(|(source, target, seed)| Op::Replay { source, target, seed }),
        3 => (0..6usize, 0..8usize, 0..3u8, 1..1_000_000u32)
            .prop_map(|(region, row, kind, montant)| Op::Foreign { region, row, kind, montant }),
    ]
}

fn row_id(row: usize) -> VenteId {
    VenteId(uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + row as u128))
}

async fn run_case(real: Vec<Arc<dyn Store>>, plain: &[Plain], ops: Vec<Op>, batch_size: u32) {
    let n = real.len();
    let flaky: Vec<Arc<FlakyStore>> = real.iter().map(|s| Flaky::wrap(s.clone())).collect();
    let stores: Vec<Arc<dyn Store>> = flaky.iter().map(|f| f.clone() as Arc<dyn Store>).collect();
    let mut oracle: HashMap<VenteId, Vente> = HashMap::new();
    let base = Utc::now();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Write { region, row, kind, skew_min, montant } => {
                let region = region % n;
                let id = row_id(row);
                let vente =
                    new_vente(&stores, (row + kind as usize) % 3, &format!("Produit {row}"), &format!("{montant}.{:02}", step % 100));
                let write = match kind {
                    0 => LocalWrite::Create { id, vente },
                    1 => LocalWrite::Update { id, vente, expect: Expect::Nothing },
                    _ => LocalWrite::Delete { id, expect: Expect::Nothing },
                };
                let now = base + chrono::Duration::minutes(skew_min) + chrono::Duration::milliseconds(step as i64);
                if let Ok(WriteOutcome::Written(v)) = real[region].write(&write, now).await {
                    let newer = oracle.get(&id).is_none_or(|o| v.version > o.version);
                    if newer {
                        oracle.insert(id, v);
                    }
                }
            }
            Op::Foreign { region, row, kind, montant } => {
                let region = region % n;
                let (id, other) = (row_id(row), row_id((row + 1) % 8));
                // Refused statements (an id already there, nothing to update) change nothing.
                let _ = match kind {
                    0 => plain[region].insert(id.0, &format!("Produit {row}"), i64::from(montant), NAMES[row % 3]).await,
                    1 => plain[region].set_montant(&[id.0, other.0], i64::from(montant)).await,
                    _ => plain[region].delete(id.0).await,
                };
                // What the triggers stamped is a write like any other: the oracle keeps the greatest.
                for id in [id, other] {
                    if let Some(v) = real[region].get(id).await.unwrap() {
                        if oracle.get(&id).is_none_or(|o| v.version > o.version) {
                            oracle.insert(id, v);
                        }
                    }
                }
            }
            Op::Round { down, crash_after } => {
                for (f, d) in flaky.iter().zip(down) {
                    f.guard().set_down(d);
                }
                if let Some(calls) = crash_after {
                    // The syncer "crashes": every store stops answering after `calls` calls in total.
                    let count = n as i64;
                    let share = calls / count;
                    for (i, f) in flaky.iter().enumerate() {
                        f.guard().fail_after(share + i64::from(i < (calls % count) as usize));
                    }
                }
                engine(&stores, batch_size).round().await;
                for f in &flaky {
                    f.guard().heal();
                }
            }
            Op::Replay { source, target, seed } => {
                let (source, target) = (source % n, target % n);
                let mut changes = real[source].changes_since(FeedPosition::default(), 10_000, None, None).await.unwrap().rows;
                // Deterministic shuffle and duplication from the seed.
                let mut state = seed | 1;
                let mut next = || {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state
                };
                let dupes: Vec<_> = changes.iter().filter(|_| next() % 3 == 0).cloned().collect();
                changes.extend(dupes);
                for i in (1..changes.len()).rev() {
                    changes.swap(i, (next() % (i as u64 + 1)) as usize);
                }
                for chunk in changes.chunks(3) {
                    real[target].apply(&Batch::push(chunk.iter().map(|(_, v)| v.clone()).collect())).await.unwrap();
                }
            }
        }
    }
    settle(&real).await;
    let report = engine(&stores, batch_size).round().await;
    assert_eq!(report.status, RoundStatus::Success);
    assert_converged(&real, &oracle).await;
}

fn cases() -> u32 {
    std::env::var("DSMS_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

#[test]
fn all_regions_converge_to_the_lww_oracle_on_sqlite() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let urls = sqlite_urls(dir.path());
    let (stores, cleaner, plain) =
        runtime.block_on(async { (open_stores(urls.clone()).await, Cleaner::open(&urls).await, Plain::open_all(&urls).await) });
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..60), batch_size in 1..8u32)| {
        runtime.block_on(async {
            cleaner.wipe().await;
            run_case(stores.clone(), &plain, ops, batch_size).await;
        });
    });
}

/// Four to six regions: more paths for a change to travel, and the apply log's skips between
/// regions that each hold copies from several others.
#[test]
fn up_to_six_regions_converge_to_the_lww_oracle_on_sqlite() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = ProptestConfig { cases: cases() / 4, failure_persistence: None, ..ProptestConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let urls = six_sqlite_urls(dir.path());
    let (stores, cleaner, plain) =
        runtime.block_on(async { (open_stores(urls.clone()).await, Cleaner::open(&urls).await, Plain::open_all(&urls).await) });
    proptest!(config, |(regions in 4..=6usize, ops in proptest::collection::vec(op(), 1..60), batch_size in 1..8u32)| {
        runtime.block_on(async {
            cleaner.wipe().await;
            run_case(stores[..regions].to_vec(), &plain[..regions], ops, batch_size).await;
        });
    });
}

#[test]
fn all_regions_converge_to_the_lww_oracle_on_postgres_and_mixed() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(pg) = pg_urls() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mixed = vec![pg[0].clone(), DatabaseUrl::Sqlite(dir.path().join("t.db")), pg[2].clone()];
    let config = ProptestConfig { cases: cases() / 4, failure_persistence: None, ..ProptestConfig::default() };
    for urls in [pg.clone(), mixed] {
        let (stores, cleaner, plain) =
            runtime.block_on(async { (open_stores(urls.clone()).await, Cleaner::open(&urls).await, Plain::open_all(&urls).await) });
        proptest!(config.clone(), |(ops in proptest::collection::vec(op(), 1..60), batch_size in 1..8u32)| {
            runtime.block_on(async {
                cleaner.wipe().await;
                run_case(stores.clone(), &plain, ops, batch_size).await;
            });
        });
    }
}

/// Waits until every transaction that had started anywhere on the PostgreSQL servers has ended.
/// A PostgreSQL feed only reads below the oldest transaction still running on the server (other
/// databases' included), so a change can lag behind an unrelated transaction; tests running in
/// parallel on one cluster make such transactions, and a test about convergence must wait them out.
pub async fn settle(stores: &[Arc<dyn Store>]) {
    for store in stores {
        let horizon = store.feed_horizon().await.unwrap();
        store.wait_for_older_transactions(horizon).await.unwrap();
    }
}

/// Empties databases reused from case to case (fresh databases per case would be far slower).
pub struct Cleaner(Vec<Pool>);

enum Pool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Cleaner {
    pub async fn open(urls: &[DatabaseUrl]) -> Self {
        let mut pools = Vec::new();
        for url in urls {
            pools.push(match url {
                // Named as a dsms session: the foreign-write triggers refuse TRUNCATE to anyone else.
                DatabaseUrl::Postgres(url) => {
                    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
                    Pool::Postgres(sqlx::PgPool::connect_with(options.options([("dsms.writer", "tests")])).await.unwrap())
                }
                DatabaseUrl::Sqlite(path) => {
                    Pool::Sqlite(sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap())
                }
            });
        }
        Self(pools)
    }

    pub async fn wipe(&self) {
        for pool in &self.0 {
            match pool {
                Pool::Postgres(pool) => {
                    sqlx::query("TRUNCATE vente, dsms_cursor, dsms_conflict, dsms_applied").execute(pool).await.unwrap();
                }
                Pool::Sqlite(pool) => {
                    // Marked as dsms's own transaction: a foreign DELETE would only soft-delete.
                    let mut tx = pool.begin().await.unwrap();
                    sqlx::query("UPDATE dsms_clock SET dsms = 1").execute(&mut *tx).await.unwrap();
                    for table in ["vente", "dsms_cursor", "dsms_conflict", "dsms_applied"] {
                        sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await.unwrap();
                    }
                    sqlx::query("UPDATE dsms_clock SET dsms = 0").execute(&mut *tx).await.unwrap();
                    tx.commit().await.unwrap();
                }
            }
        }
    }
}

// ---------- the SQL rule agrees with `Version`'s order ----------

/// Versions of one row with clashing clocks, origins that differ only bytewise, and deletes.
fn versions() -> impl Strategy<Value = Vec<(i64, usize, bool, u32)>> {
    proptest::collection::vec((0..4i64, 0..5usize, any::<bool>(), 1..1000u32), 1..8)
}

async fn apply_in_every_order_gives_the_greatest(store: &Arc<dyn Store>, spec: Vec<(i64, usize, bool, u32)>) {
    use dsms::domain::lww::Seen;
    use dsms::domain::vente::DateVente;
    use dsms::domain::version::{Hlc, Version};
    use dsms::domain::{Montant, Produit};
    let origins = Config::with_regions(
        ["Dakar", "dakar", "Thiès", "Saint-Louis", "Ziguinchor"].into_iter().map(|n| (n, DatabaseUrl::Sqlite("x".into()))).collect(),
    )
    .region_names();
    let origins: Vec<_> = origins.iter().cloned().collect();
    let id = VenteId::generate();
    let mut rows: Vec<Vente> = spec
        .iter()
        .map(|&(hlc, origin, deleted, montant)| {
            let version = Version { hlc: Hlc(1_000_000 + hlc), origin: origins[origin].clone() };
            Vente {
                id,
                produit: Produit::parse(&format!("v{hlc}-{origin}")).unwrap(),
                montant: Montant::from_cents(i64::from(montant)).unwrap(),
                date_vente: DateVente::from_stored(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()),
                region: origins[0].clone(),
                updated_at: DateTime::from_timestamp_micros(1_764_000_000_000_000 + hlc).unwrap(),
                deleted,
                seen: Seen::after(None, &version),
                version,
            }
        })
        .collect();
    // Equal versions must carry equal content (versions are unique): keep the first of each.
    let mut unique = Vec::new();
    rows.retain(|r| {
        let fresh = !unique.contains(&r.version);
        unique.push(r.version.clone());
        fresh
    });
    let greatest = rows.iter().max_by(|a, b| a.version.cmp(&b.version)).unwrap().clone();
    let _ = id;
    // Each order on a row of its own, one version per batch, then all at once in one batch.
    let orders: Vec<Vec<Vente>> = vec![rows.clone(), rows.iter().rev().cloned().collect()];
    for order in orders {
        let fresh = VenteId::generate();
        for row in order {
            store.apply(&Batch::push(vec![Vente { id: fresh, ..row }])).await.unwrap();
        }
        let stored = store.get(fresh).await.unwrap().unwrap();
        assert_eq!(visible(&stored), visible(&greatest), "{}", store.region());
    }
    let fresh = VenteId::generate();
    store.apply(&Batch::push(rows.iter().map(|r| Vente { id: fresh, ..r.clone() }).collect())).await.unwrap();
    assert_eq!(visible(&store.get(fresh).await.unwrap().unwrap()), visible(&greatest), "{} (one batch)", store.region());
}

#[test]
fn the_stores_keep_the_greatest_version_whatever_the_order_of_arrival() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = ProptestConfig { cases: cases() / 2, failure_persistence: None, ..ProptestConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let mut urls = sqlite_urls(dir.path());
    if let Some(pg) = pg_urls() {
        urls[1] = pg[1].clone();
    }
    let stores = runtime.block_on(open_stores(urls));
    proptest!(config, |(spec in versions())| {
        runtime.block_on(async {
            for store in &stores[..2] {
                apply_in_every_order_gives_the_greatest(store, spec.clone()).await;
            }
        });
    });
}
