//! Restored regions (issue #12): a region whose database goes back in time — a SQLite file put
//! back from a backup, a PostgreSQL database dumped and restored into a recreated database — is
//! found at the next round, given a new identity, and every region converges with nothing lost
//! but what the restore lost from every region.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dsms::config::{Config, DatabaseUrl};
use dsms::domain::{Expect, LocalWrite, Vente, VenteId, WriteOutcome};
use dsms::store::sqlite::SqliteStore;
use dsms::store::{Limits, Store};
use dsms::sync::engine::{Engine, EngineOptions};
use dsms::sync::report::{RoundReport, RoundStatus};

use crate::sync::{NAMES, dump, new_vente};

fn limits() -> Limits {
    Limits { connect_timeout: Duration::from_secs(2), statement_timeout: Duration::from_secs(30) }
}

async fn round(stores: &[Arc<dyn Store>]) -> RoundReport {
    let report = Engine::new(stores.to_vec(), EngineOptions { batch_size: 7, round_deadline: Duration::from_secs(60) }).round().await;
    assert_eq!(report.status, RoundStatus::Success, "{:?}", report.error_summary());
    report
}

fn restored(report: &RoundReport) -> Vec<String> {
    report.restores.iter().map(|r| r.region.to_string()).collect()
}

async fn create(store: &Arc<dyn Store>, region: usize, i: usize) -> Vente {
    let write =
        LocalWrite::Create { id: VenteId::generate(), vente: new_vente(&[], region, &format!("Vente {i}"), &format!("{}.50", 100 + i)) };
    match store.write(&write, Utc::now()).await.unwrap() {
        WriteOutcome::Written(v) => v,
        other => panic!("not written: {other:?}"),
    }
}

async fn edit(store: &Arc<dyn Store>, write: LocalWrite) -> Vente {
    match store.write(&write, Utc::now()).await.unwrap() {
        WriteOutcome::Written(v) => v,
        other => panic!("not written: {other:?}"),
    }
}

/// Every version any region holds, the greatest of each sale.
#[derive(Default)]
struct Oracle(HashMap<VenteId, Vente>);

impl Oracle {
    fn saw(&mut self, v: &Vente) {
        if self.0.get(&v.id).is_none_or(|o| v.version > o.version) {
            self.0.insert(v.id, v.clone());
        }
    }

    async fn saw_all(&mut self, stores: &[Arc<dyn Store>]) {
        for store in stores {
            for v in dump(store.as_ref()).await.values() {
                self.saw(v);
            }
        }
    }

    /// Every region holds every sale at its greatest version, `verify` finds nothing divergent.
    async fn assert_held_everywhere(&self, stores: &[Arc<dyn Store>]) {
        for store in stores {
            let rows = dump(store.as_ref()).await;
            assert_eq!(rows.len(), self.0.len(), "{} holds {} sales, {} were ever held", store.region(), rows.len(), self.0.len());
            for (id, expected) in &self.0 {
                let got = rows.get(id).unwrap_or_else(|| panic!("{} lost {id}", store.region()));
                assert_eq!(got.version, expected.version, "{} holds {id} at an older version", store.region());
                assert_eq!((got.produit.as_str(), got.deleted), (expected.produit.as_str(), expected.deleted), "{} {id}", store.region());
            }
        }
        let (report, divergent) = dsms::sync::verify::verify(stores, 10).await.unwrap();
        assert_eq!(divergent, 0, "divergent: {:?}", report.divergent);
    }

    fn live(&self) -> usize {
        self.0.values().filter(|v| !v.deleted).count()
    }
}

/// Regions opened and migrated under these names.
async fn open_named(regions: Vec<(&str, DatabaseUrl)>) -> Vec<Arc<dyn Store>> {
    let mut stores = Vec::new();
    for region in &Config::with_regions(regions).regions {
        let store = dsms::store::open(region, limits()).await.unwrap();
        store.migrate().await.unwrap();
        stores.push(store);
    }
    stores
}

/// A SQLite region opened directly, so that the test can close it and put a backup in place.
async fn open_sqlite(region: usize, path: &Path) -> Arc<SqliteStore> {
    let config = Config::with_regions(vec![(NAMES[region], DatabaseUrl::Sqlite(path.to_owned()))]);
    let store = SqliteStore::open(config.regions[0].name.clone(), path, limits()).await.unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

/// `sqlite3 file ".backup"`: a consistent copy of a live database.
async fn backup_sqlite(store: &SqliteStore, to: &Path) {
    sqlx::query(&format!("VACUUM INTO '{}'", to.display())).execute(store.pool()).await.unwrap();
}

/// Stops using the region's database and copies the backup over its file (its WAL dropped).
async fn put_back(store: &SqliteStore, backup: &Path, path: &Path) {
    store.pool().close().await;
    // The last connection to close checkpoints the WAL into the file and removes it: wait for it,
    // or it could write into the file put back.
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    for _ in 0..500 {
        if !wal.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::copy(backup, path).unwrap();
}

/// Puts a backup back while the region stays open: every table replaced by the backup's in one
/// transaction (dsms's mark set, so the foreign-write triggers stay quiet). The database ends as a
/// file copy would leave it, without closing its pool (a closing connection could still write
/// into the file being replaced).
async fn put_back_in_place(store: &SqliteStore, backup: &Path) {
    let mut conn = store.pool().acquire().await.unwrap();
    sqlx::query(&format!("ATTACH DATABASE '{}' AS b", backup.display())).execute(&mut *conn).await.unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM b.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('dsms_clock', '_sqlx_migrations')",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.unwrap();
    sqlx::query("UPDATE main.dsms_clock SET dsms = 1").execute(&mut *conn).await.unwrap();
    for (table,) in tables.iter().chain([&("dsms_clock".to_owned(),)]) {
        sqlx::query(&format!("DELETE FROM main.\"{table}\"")).execute(&mut *conn).await.unwrap();
        sqlx::query(&format!("INSERT INTO main.\"{table}\" SELECT * FROM b.\"{table}\"")).execute(&mut *conn).await.unwrap();
    }
    sqlx::query("COMMIT").execute(&mut *conn).await.unwrap();
    sqlx::query("DETACH DATABASE b").execute(&mut *conn).await.unwrap();
}

#[tokio::test]
async fn a_sqlite_region_put_back_from_a_backup_is_found_healed_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = NAMES.iter().map(|n| dir.path().join(format!("{n}.db"))).collect();
    let mut thies = open_sqlite(1, &paths[1]).await;
    let others =
        open_named(vec![("Dakar", DatabaseUrl::Sqlite(paths[0].clone())), ("Saint-Louis", DatabaseUrl::Sqlite(paths[2].clone()))]).await;
    let all = |thies: &Arc<SqliteStore>| vec![others[0].clone(), thies.clone() as Arc<dyn Store>, others[1].clone()];
    let mut oracle = Oracle::default();

    // 100 sales, synced everywhere.
    let mut early = Vec::new();
    for i in 0..50 {
        early.push(create(&(thies.clone() as Arc<dyn Store>), 1, i).await);
        create(&others[0], 0, i).await;
    }
    assert!(restored(&round(&all(&thies)).await).is_empty());

    // The backup, then writes on both sides of it, synced.
    let backup = dir.path().join("thies-backup.db");
    backup_sqlite(&thies, &backup).await;
    let thies_dyn = thies.clone() as Arc<dyn Store>;
    for i in 50..75 {
        create(&thies_dyn, 1, i).await;
        create(&others[0], 0, i).await;
    }
    // An edit in Thies of a sale written before the backup, a deletion there, an edit elsewhere.
    edit(
        &thies_dyn,
        LocalWrite::Update { id: early[0].id, vente: new_vente(&[], 1, "Modifiée après la sauvegarde", "9"), expect: Expect::Nothing },
    )
    .await;
    edit(&thies_dyn, LocalWrite::Delete { id: early[1].id, expect: Expect::Nothing }).await;
    edit(
        &others[1],
        LocalWrite::Update { id: early[2].id, vente: new_vente(&[], 2, "Modifiée à Saint-Louis", "8"), expect: Expect::Nothing },
    )
    .await;
    assert!(restored(&round(&all(&thies)).await).is_empty());
    oracle.saw_all(&all(&thies)).await;
    assert_eq!(oracle.live(), 149);

    // The backup is put back; Thies writes 20 sales before anyone syncs.
    put_back(&thies, &backup, &paths[1]).await;
    thies = open_sqlite(1, &paths[1]).await;
    assert_eq!(thies.count_live().await.unwrap(), 100, "the backup holds the first 100 sales");
    let thies_dyn = thies.clone() as Arc<dyn Store>;
    for i in 100..120 {
        oracle.saw(&create(&thies_dyn, 1, i).await);
    }

    // The first round finds Thies restored (only Thies: its own memory of the others is older,
    // not wrong), the next ones find nothing more; every region ends with everything.
    let first = round(&all(&thies)).await;
    assert_eq!(restored(&first), ["Thies"], "{:?}", first.restores);
    assert!(first.restores[0].evidence.contains("Dakar"), "the evidence names who saw it: {}", first.restores[0].evidence);
    // Counted in the metrics.
    let names = Config::with_regions(NAMES.iter().map(|n| (*n, DatabaseUrl::Sqlite("x".into()))).collect()).region_names();
    let metrics = dsms::monitor::metrics::Metrics::new(&names).unwrap();
    metrics.record_round(&first);
    let text = metrics.render().unwrap();
    assert!(text.contains("dsms_sync_restores_detected_total{region=\"Thies\"} 1"), "{text}");
    assert!(text.contains("dsms_sync_restores_detected_total{region=\"Dakar\"} 0"), "{text}");
    for _ in 0..2 {
        assert!(restored(&round(&all(&thies)).await).is_empty(), "no false alarm once healed");
    }
    oracle.assert_held_everywhere(&all(&thies)).await;
    for store in all(&thies) {
        assert_eq!(store.count_live().await.unwrap(), 169, "{}", store.region());
    }
    assert_eq!(thies.get(early[0].id).await.unwrap().unwrap().produit.as_str(), "Modifiée après la sauvegarde");
    assert!(thies.get(early[1].id).await.unwrap().unwrap().deleted, "a deletion lost by the restore comes back");
}

/// A PostgreSQL region opened directly, so that the test can close it while it is restored.
async fn open_pg(region: &str, url: &str) -> Arc<dsms::store::postgres::PgStore> {
    let config = Config::with_regions(vec![(region, DatabaseUrl::Postgres(url.to_owned()))]);
    let store = dsms::store::postgres::PgStore::open(config.regions[0].name.clone(), url, limits()).unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

#[tokio::test]
async fn a_postgres_region_restored_by_pg_dump_and_pg_restore_is_found_healed_and_loses_nothing() {
    let Some(cluster) = crate::helpers::private_cluster().await else { return };
    let urls: Vec<String> = ["dakar", "thies", "saintlouis"].iter().map(|n| cluster.create_database(n).unwrap()).collect();
    let mut thies = open_pg("Thies", &urls[1]).await;
    let others =
        open_named(vec![("Dakar", DatabaseUrl::Postgres(urls[0].clone())), ("Saint-Louis", DatabaseUrl::Postgres(urls[2].clone()))]).await;
    let all = |thies: &Arc<dsms::store::postgres::PgStore>| vec![others[0].clone(), thies.clone() as Arc<dyn Store>, others[1].clone()];
    let mut oracle = Oracle::default();

    let thies_dyn = thies.clone() as Arc<dyn Store>;
    let mut early = Vec::new();
    for i in 0..30 {
        early.push(create(&thies_dyn, 1, i).await);
        create(&others[0], 0, i).await;
    }
    assert!(restored(&round(&all(&thies)).await).is_empty());

    // The dump, then writes on both sides of it, synced.
    let dump = cluster.dump_database("thies").unwrap();
    for i in 30..45 {
        create(&thies_dyn, 1, i).await;
        create(&others[0], 0, i).await;
    }
    edit(
        &thies_dyn,
        LocalWrite::Update { id: early[0].id, vente: new_vente(&[], 1, "Modifiée après la sauvegarde", "9"), expect: Expect::Nothing },
    )
    .await;
    edit(&thies_dyn, LocalWrite::Delete { id: early[1].id, expect: Expect::Nothing }).await;
    edit(
        &others[1],
        LocalWrite::Update { id: early[2].id, vente: new_vente(&[], 2, "Modifiée à Saint-Louis", "8"), expect: Expect::Nothing },
    )
    .await;
    assert!(restored(&round(&all(&thies)).await).is_empty());
    oracle.saw_all(&all(&thies)).await;
    assert_eq!(oracle.live(), 89);

    // Restored into a recreated database (same meta row, from the dump), then 10 writes there.
    thies.pool().close().await;
    drop(thies_dyn);
    drop(thies);
    cluster.restore_database("thies", &dump).unwrap();
    thies = open_pg("Thies", &urls[1]).await;
    assert_eq!(thies.count_live().await.unwrap(), 60, "the dump holds the first 60 sales");
    let thies_dyn = thies.clone() as Arc<dyn Store>;
    for i in 60..70 {
        oracle.saw(&create(&thies_dyn, 1, i).await);
    }

    let first = round(&all(&thies)).await;
    assert_eq!(restored(&first), ["Thies"], "{:?}", first.restores);
    for _ in 0..2 {
        crate::sync::settle(&all(&thies)).await;
        assert!(restored(&round(&all(&thies)).await).is_empty(), "no false alarm once healed");
    }
    oracle.assert_held_everywhere(&all(&thies)).await;
    for store in all(&thies) {
        assert_eq!(store.count_live().await.unwrap(), 99, "{}", store.region());
    }
    assert!(thies.get(early[1].id).await.unwrap().unwrap().deleted, "a deletion lost by the restore comes back");
}

// ---------- the convergence property, with restores ----------

#[derive(Clone, Debug)]
enum Op {
    /// A client write (0 create, 1 update, 2 delete) at a region whose clock is `skew_min` off.
    Write { region: usize, row: usize, kind: u8, skew_min: i64 },
    /// A round among the regions not `down`.
    Round { down: [bool; 3] },
    /// A backup of a region's file (`.backup`).
    Backup { region: usize },
    /// The region's last backup put back in place of its file.
    PutBack { region: usize },
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0..3usize, 0..6usize, 0..3u8, -30i64..=30).prop_map(|(region, row, kind, skew_min)| Op::Write { region, row, kind, skew_min }),
        3 => any::<[bool; 3]>().prop_map(|down| Op::Round { down }),
        2 => (0..3usize).prop_map(|region| Op::Backup { region }),
        2 => (0..3usize).prop_map(|region| Op::PutBack { region }),
    ]
}

fn row_id(row: usize) -> VenteId {
    VenteId(uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + row as u128))
}

async fn run_case(template: &Path, dir: &Path, ops: Vec<Op>) {
    let paths: Vec<_> = NAMES.iter().map(|n| dir.join(format!("{n}.db"))).collect();
    let mut stores = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        std::fs::copy(template.join(format!("{}.db", NAMES[i])), path).unwrap();
        stores.push(open_sqlite(i, path).await);
    }
    let dyns = |stores: &[Arc<SqliteStore>]| stores.iter().map(|s| s.clone() as Arc<dyn Store>).collect::<Vec<_>>();
    let mut backups: [Option<std::path::PathBuf>; 3] = Default::default();
    let base = Utc::now();
    let mut restores = 0;
    let mut oracle = Oracle::default();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Write { region, row, kind, skew_min } => {
                let (id, vente) =
                    (row_id(row), new_vente(&[], region, &format!("Produit {row}"), &format!("{}.{:02}", row + 1, step % 100)));
                let write = match kind {
                    0 => LocalWrite::Create { id, vente },
                    1 => LocalWrite::Update { id, vente, expect: Expect::Nothing },
                    _ => LocalWrite::Delete { id, expect: Expect::Nothing },
                };
                let now = base + chrono::Duration::minutes(skew_min) + chrono::Duration::milliseconds(step as i64);
                if let WriteOutcome::Written(v) = stores[region].write(&write, now).await.unwrap() {
                    oracle.saw(&v);
                }
            }
            Op::Round { down } => {
                let up: Vec<Arc<dyn Store>> = dyns(&stores).into_iter().zip(down).filter(|(_, d)| !d).map(|(s, _)| s).collect();
                if up.len() >= 2 {
                    Engine::new(up, EngineOptions { batch_size: 3, round_deadline: Duration::from_secs(60) }).round().await;
                }
            }
            Op::Backup { region } => {
                let to = dir.join(format!("{}-{step}.backup", NAMES[region]));
                backup_sqlite(&stores[region], &to).await;
                backups[region] = Some(to);
            }
            Op::PutBack { region } => {
                if let Some(backup) = &backups[region] {
                    put_back_in_place(&stores[region], backup).await;
                    restores += 1;
                    // What a restore lost from every region is gone: from now on, what must end
                    // everywhere is the greatest version of each sale that some region holds.
                    oracle = Oracle::default();
                    oracle.saw_all(&dyns(&stores)).await;
                }
            }
        }
    }
    let all = dyns(&stores);
    let mut found = 0;
    for _ in 0..2 {
        let report = Engine::new(all.clone(), EngineOptions { batch_size: 3, round_deadline: Duration::from_secs(60) }).round().await;
        assert_eq!(report.status, RoundStatus::Success);
        found += report.restores.len();
    }
    assert!(found <= restores, "{found} restores found, {restores} made");
    oracle.assert_held_everywhere(&all).await;
    FOUND.fetch_add(found, std::sync::atomic::Ordering::Relaxed);
}

/// Restores found over every case (some must be, or the property tests nothing).
static FOUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn regions_put_back_from_backups_at_random_steps_still_converge_with_nothing_else_lost() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cases = std::env::var("DSMS_PROPTEST_CASES").ok().and_then(|v| v.parse::<u32>().ok()).map_or(48, |n| (n / 20).max(16));
    let config = proptest::test_runner::Config { cases, failure_persistence: None, ..Default::default() };
    // Three migrated databases, copied for each case (faster than migrating, and a new file
    // opened by several connections at once may answer "database is locked" while it turns to WAL).
    let template = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        for (i, name) in NAMES.iter().enumerate() {
            let store = open_sqlite(i, &template.path().join(format!("{name}-live.db"))).await;
            backup_sqlite(&store, &template.path().join(format!("{name}.db"))).await;
        }
    });
    proptest::proptest!(config, |(ops in proptest::collection::vec(op(), 1..40))| {
        let dir = tempfile::tempdir().unwrap();
        runtime.block_on(run_case(template.path(), dir.path(), ops));
    });
    assert!(FOUND.load(std::sync::atomic::Ordering::Relaxed) > 0, "no case put back a backup that needed healing");
}

/// The restore check runs at every round: on a region whose last epoch is still current (nothing
/// written since, the usual idle round) it looks at the end of the feed index, not at every row.
/// Just after a bulk load the table has no statistics yet, when the planner used to scan it all
/// for a row newer than the epoch that does not exist. Counted by `pg_stat_statements`, which
/// records each statement's buffers as it ends.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_restore_check_reads_a_few_pages_not_the_table() {
    use sqlx::Connection;
    let Some(cluster) = crate::helpers::private_cluster().await else { return };
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    tokio::task::block_in_place(|| {
        cluster.stop_immediate()?;
        cluster.restart()
    })
    .unwrap();
    let url = tokio::task::block_in_place(|| cluster.create_database("epochs")).unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE EXTENSION pg_stat_statements").execute(&mut conn).await.unwrap();
    let store = open_pg("Dakar", &url).await;
    // 20,000 rows written in bulk, no ANALYZE since (and no autovacuum to run one meanwhile).
    sqlx::query("ALTER TABLE vente SET (autovacuum_enabled = off)").execute(&mut conn).await.unwrap();
    sqlx::query(
        "INSERT INTO vente (id, produit, produit_norm, montant, date_vente, region, updated_at, hlc, origin) \
         SELECT gen_random_uuid(), 'riz', 'riz', 1, current_date, 'Dakar', now(), n, 'Dakar' FROM generate_series(1, 20000) AS n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let first = store.open_epoch(Utc::now()).await.unwrap();
    let pages: i64 = sqlx::query_scalar("SELECT pg_relation_size('vente') / 8192").fetch_one(&mut conn).await.unwrap();
    sqlx::query("SELECT pg_stat_statements_reset()").execute(&mut conn).await.unwrap();

    assert_eq!(store.open_epoch(Utc::now()).await.unwrap().id, first.id, "nothing written since: the epoch stays");
    // Calls and shared buffers read since the reset, of the statements that start with `start`.
    let read = async |conn: &mut sqlx::PgConnection, start: &str| -> (i64, i64) {
        sqlx::query_as(
            "SELECT sum(calls)::int8, sum(shared_blks_hit + shared_blks_read)::int8 FROM pg_stat_statements WHERE starts_with(query, $1)",
        )
        .bind(start)
        .fetch_one(conn)
        .await
        .unwrap()
    };
    let (calls, blocks) = read(&mut conn, "WITH last AS").await;
    assert_eq!(calls, 1);
    assert!(blocks < 20 && pages > 100, "the check read {blocks} pages of shared buffers; the table has {pages}");

    // The same in a round's first contact, which opens the epoch in the same statement.
    sqlx::query("SELECT pg_stat_statements_reset()").execute(&mut conn).await.unwrap();
    let contact = store.contact(&[first.id], Some(Utc::now())).await.unwrap();
    assert_eq!((contact.epoch.map(|e| e.id), contact.held), (Some(first.id), vec![first.id]));
    let (calls, blocks) = read(&mut conn, "WITH snap AS").await;
    assert_eq!(calls, 1);
    assert!(blocks < 20, "the contact read {blocks} pages of shared buffers; the table has {pages}");
}
