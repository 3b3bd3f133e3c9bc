//! Replication scenarios, each a trap a multi-master LWW replicator can fall into
//! (../shared/spec/SYNC_NOTES.md): late commits, clock skew, false conflicts, forwarding,
//! concurrent syncers, real outages.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dsms::domain::VenteId;
use dsms::domain::version::system_clock;
use dsms::domain::{Expect, LocalWrite, WriteOutcome};
use dsms::store::Store;
use dsms::sync::engine::{Engine, EngineOptions};
use dsms::sync::report::RoundStatus;
use dsms::testkit::flaky::{Flaky, FlakyStore};
use dsms::testkit::pg::PgCluster;
use dsms::ventes::Ventes;

use crate::sync::{dump, new_vente, open_stores, pg_urls, sqlite_urls};

fn engine(stores: &[Arc<dyn Store>]) -> Engine {
    Engine::new(stores.to_vec(), EngineOptions::default())
}

async fn write(store: &Arc<dyn Store>, write: LocalWrite, now: chrono::DateTime<Utc>) -> dsms::domain::Vente {
    match store.write(&write, now).await.unwrap() {
        WriteOutcome::Written(v) => v,
        other => panic!("not written: {other:?}"),
    }
}

/// Rounds until every region holds the same rows (bounded).
async fn until_identical(stores: &[Arc<dyn Store>]) {
    for _ in 0..100 {
        if dsms::sync::verify::verify(stores, 10).await.unwrap().1 == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        engine(stores).round().await;
    }
    assert_identical(stores).await;
}

async fn assert_identical(stores: &[Arc<dyn Store>]) {
    let (report, divergent) = dsms::sync::verify::verify(stores, 10).await.unwrap();
    assert_eq!(divergent, 0, "divergent ids: {:?}", report.divergent);
}

#[tokio::test]
async fn a_change_committed_late_by_a_long_transaction_is_not_skipped() {
    let Some(urls) = pg_urls() else { return };
    let stores = open_stores(urls.clone()).await;
    let dsms::config::DatabaseUrl::Postgres(dakar_url) = &urls[0] else { unreachable!() };
    let dakar = sqlx::PgPool::connect(dakar_url).await.unwrap();

    // T1 takes its transaction id first and stays open while T2 commits.
    let late = VenteId::generate();
    let mut t1 = dakar.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO vente (id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seen) \
         VALUES ($1, 'Commande tardive', 'commande tardive', 1500, '2026-01-15', 'Dakar', now(), false, 1 << 40, 'Dakar', 'Dakar=1099511627776')",
    )
    .bind(late.0)
    .execute(&mut *t1)
    .await
    .unwrap();
    let early =
        write(&stores[0], LocalWrite::Create { id: VenteId::generate(), vente: new_vente(&stores, 0, "Mil", "10") }, Utc::now()).await;

    // The feed stops below the oldest transaction still open: T2 waits (that is lag, not loss),
    // and the cursor cannot pass T1, which a sequence-ordered reader would have done.
    let first = engine(&stores).round().await;
    assert_eq!(first.status, RoundStatus::Success);
    assert!(!dump(stores[1].as_ref()).await.contains_key(&late), "an uncommitted change cannot be seen yet");

    t1.commit().await.unwrap();
    engine(&stores).round().await;
    for store in &stores[1..] {
        let rows = dump(store.as_ref()).await;
        assert!(rows.contains_key(&late), "{} missed the late commit", store.region());
        assert!(rows.contains_key(&early.id), "{} missed the early commit", store.region());
    }
    assert_identical(&stores).await;
}

#[tokio::test]
async fn a_write_made_after_seeing_a_version_wins_even_from_a_clock_an_hour_behind() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open_stores(sqlite_urls(dir.path())).await;
    let id = VenteId::generate();
    let seen = write(&stores[0], LocalWrite::Create { id, vente: new_vente(&stores, 0, "Riz", "100") }, Utc::now()).await;
    engine(&stores).round().await;

    let behind = Utc::now() - chrono::Duration::hours(1);
    let update = LocalWrite::Update { id, vente: new_vente(&stores, 1, "Riz parfumé", "120"), expect: Expect::Nothing };
    let later = write(&stores[1], update, behind).await;
    assert!(later.version > seen.version, "causality beats the wall clock");
    let report = engine(&stores).round().await;
    assert_eq!(report.conflicts, 0, "an edit of a seen version is not a conflict");
    for store in &stores {
        assert_eq!(store.get(id).await.unwrap().unwrap().produit.as_str(), "Riz parfumé", "{}", store.region());
    }
    assert_identical(&stores).await;
}

#[tokio::test]
async fn after_a_region_an_hour_ahead_writes_a_later_update_elsewhere_still_wins_everywhere() {
    for urls in [None, pg_urls()] {
        let dir = tempfile::tempdir().unwrap();
        let urls = urls.unwrap_or_else(|| sqlite_urls(dir.path()));
        let stores = open_stores(urls).await;
        let ahead = Utc::now() + chrono::Duration::hours(1);
        let mut ids = Vec::new();
        for i in 0..20 {
            let v = write(
                &stores[0],
                LocalWrite::Create { id: VenteId::generate(), vente: new_vente(&stores, 0, &format!("P{i}"), "5") },
                ahead,
            )
            .await;
            ids.push(v.id);
        }
        engine(&stores).round().await;
        for id in &ids {
            let update = LocalWrite::Update { id: *id, vente: new_vente(&stores, 1, "Corrigé à Thies", "7"), expect: Expect::Nothing };
            write(&stores[1], update, Utc::now()).await;
        }
        let report = engine(&stores).round().await;
        assert_eq!(report.conflicts, 0);
        for store in &stores {
            for id in &ids {
                assert_eq!(store.get(*id).await.unwrap().unwrap().produit.as_str(), "Corrigé à Thies", "{}", store.region());
            }
        }
        assert_identical(&stores).await;
    }
}

/// The ids of every lost version logged anywhere, each once.
async fn distinct_losers(stores: &[Arc<dyn Store>]) -> HashSet<(VenteId, String)> {
    let mut losers = HashSet::new();
    for store in stores {
        for c in store.conflicts(100_000).await.unwrap() {
            losers.insert((c.loser.id, c.loser.version.to_string()));
        }
    }
    losers
}

#[tokio::test]
async fn ordinary_updates_log_no_conflict_and_concurrent_ones_log_each_loser_once() {
    for urls in [None, pg_urls()] {
        let dir = tempfile::tempdir().unwrap();
        let urls = urls.unwrap_or_else(|| sqlite_urls(dir.path()));
        let stores = open_stores(urls).await;
        let ids: Vec<VenteId> = (0..1000).map(|_| VenteId::generate()).collect();
        let rows: Vec<_> = ids.iter().map(|id| (*id, new_vente(&stores, 0, "Sucre", "1"))).collect();
        stores[0].write_many(&rows, Utc::now()).await.unwrap();
        engine(&stores).round().await;
        // 10,000 ordinary updates: each region edits every row after the previous edit reached it.
        for step in 0..10 {
            let region = step % 3;
            let rows: Vec<_> = ids.iter().map(|id| (*id, new_vente(&stores, region, "Sucre", &format!("{}", step + 2)))).collect();
            stores[region].write_many(&rows, Utc::now()).await.unwrap();
            let report = engine(&stores).round().await;
            assert_eq!(report.status, RoundStatus::Success);
            // The next edit must start from this one everywhere: on a PostgreSQL server shared
            // with other tests, a long transaction elsewhere may hold part of the feed back for
            // a round or two.
            until_identical(&stores).await;
        }
        assert!(distinct_losers(&stores).await.is_empty(), "ordinary updates are not conflicts");

        // A partition: every region edits the same 100 rows without seeing the others.
        for (region, store) in stores.iter().enumerate() {
            let rows: Vec<_> =
                ids[..100].iter().map(|id| (*id, new_vente(&stores, region, "Sucre", &format!("{}", 100 + region)))).collect();
            store.write_many(&rows, Utc::now()).await.unwrap();
        }
        engine(&stores).round().await;
        engine(&stores).round().await;
        let losers = distinct_losers(&stores).await;
        assert_eq!(losers.len(), 200, "three concurrent versions of 100 rows: two losers each");
        assert_identical(&stores).await;
    }
}

#[tokio::test]
async fn a_change_travels_through_a_region_to_one_its_origin_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    let real = open_stores(sqlite_urls(dir.path())).await;
    let flaky: Vec<Arc<FlakyStore>> = real.iter().map(|s| Flaky::wrap(s.clone())).collect();
    let stores: Vec<Arc<dyn Store>> = flaky.iter().map(|f| f.clone() as Arc<dyn Store>).collect();
    let v = write(&real[0], LocalWrite::Create { id: VenteId::generate(), vente: new_vente(&real, 0, "Ciment", "4500") }, Utc::now()).await;

    flaky[2].guard().set_down(true);
    assert_eq!(engine(&stores).round().await.status, RoundStatus::Partial);
    flaky[2].guard().set_down(false);
    flaky[0].guard().set_down(true);
    assert_eq!(engine(&stores).round().await.status, RoundStatus::Partial);
    assert!(real[2].get(v.id).await.unwrap().is_some(), "Thies forwarded Dakar's sale to Saint-Louis");
}

#[tokio::test]
async fn two_syncers_at_once_stay_correct() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open_stores(sqlite_urls(dir.path())).await;
    let writer = {
        let stores = stores.clone();
        async move {
            for i in 0..300 {
                let region = i % 3;
                let _ = stores[region]
                    .write(&LocalWrite::Create { id: VenteId::generate(), vente: new_vente(&stores, region, "Huile", "20000") }, Utc::now())
                    .await;
            }
        }
    };
    let syncer = |stores: Vec<Arc<dyn Store>>| async move {
        for _ in 0..10 {
            Engine::new(stores.clone(), EngineOptions { batch_size: 13, round_deadline: Duration::from_secs(60) }).round().await;
        }
    };
    tokio::join!(writer, syncer(stores.clone()), syncer(stores.clone()));
    engine(&stores).round().await;
    assert_eq!(dump(stores[0].as_ref()).await.len(), 300);
    assert_identical(&stores).await;
}

/// Runs rounds, a quarter of a second apart, until one succeeds or `max` more have run; the last
/// status.
async fn rounds_until_success(stores: &[Arc<dyn Store>], max: usize) -> RoundStatus {
    let mut status = engine(stores).round().await.status;
    for _ in 0..max {
        if status == RoundStatus::Success {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        status = engine(stores).round().await.status;
    }
    status
}

/// Three private clusters; one goes down in the middle of a round, with writes everywhere.
async fn outage_drill(crash: impl Fn(&PgCluster) + Send + Sync + 'static) {
    let clusters: Arc<Vec<PgCluster>> = Arc::new((0..3).map(|_| PgCluster::start_durable().unwrap()).collect());
    let urls = clusters.iter().map(|c| dsms::config::DatabaseUrl::Postgres(c.create_database("ventes").unwrap())).collect();
    let stores = open_stores(urls).await;
    let ventes = Ventes::new(stores.clone(), system_clock());
    let mut acknowledged = Vec::new();
    let write_round = |n: usize| {
        let ventes = &ventes;
        let stores = &stores;
        async move {
            let mut ids = Vec::new();
            for i in 0..n {
                if let Ok(created) = ventes.create(None, new_vente(stores, i % 3, "Téléphone", "65000")).await {
                    ids.push(created.vente.id);
                }
            }
            ids
        }
    };
    acknowledged.extend(write_round(30).await);
    assert_eq!(engine(&stores).round().await.status, RoundStatus::Success);

    // Writes everywhere, and Saint-Louis dies while the round that carries them runs.
    acknowledged.extend(write_round(60).await);
    let dying = {
        let clusters = clusters.clone();
        tokio::task::spawn_blocking(move || crash(&clusters[2]))
    };
    let syncer = engine(&stores);
    let (_, crashed) = tokio::join!(syncer.round(), dying);
    crashed.unwrap();
    // Writes addressed to Saint-Louis fail over; the other two keep syncing.
    let during = write_round(30).await;
    assert_eq!(during.len(), 30, "every write was accepted by a reachable region");
    acknowledged.extend(during);
    let partial = engine(&stores).round().await;
    assert_eq!(partial.status, RoundStatus::Partial);
    assert!(partial.regions[2].error.is_some());
    let (report, divergent) = dsms::sync::verify::verify(&stores[..2], 10).await.unwrap();
    assert_eq!(divergent, 0, "the two live regions diverge after a partial round: {:?}", report.divergent);

    clusters[2].restart().unwrap();
    // It comes back by itself: no restart of ours, no manual step.
    assert_eq!(rounds_until_success(&stores, 40).await, RoundStatus::Success);
    assert_identical(&stores).await;
    let saint_louis = dump(stores[2].as_ref()).await;
    for id in &acknowledged {
        assert!(saint_louis.contains_key(id), "acknowledged write {id} lost");
    }
}

#[tokio::test]
async fn a_region_stopped_immediately_is_skipped_and_catches_up_when_it_returns() {
    if crate::helpers::pg().is_none() {
        return;
    }
    outage_drill(|c| c.stop_immediate().unwrap()).await;
}

#[tokio::test]
async fn a_region_whose_server_is_killed_is_skipped_and_catches_up_when_it_returns() {
    if crate::helpers::pg().is_none() {
        return;
    }
    outage_drill(|c| c.kill().unwrap()).await;
}

#[tokio::test]
async fn an_edit_that_arrives_by_another_path_over_a_version_it_had_seen_is_not_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let real = open_stores(sqlite_urls(dir.path())).await;
    let flaky: Vec<Arc<FlakyStore>> = real.iter().map(|s| Flaky::wrap(s.clone())).collect();
    let stores: Vec<Arc<dyn Store>> = flaky.iter().map(|f| f.clone() as Arc<dyn Store>).collect();
    let id = VenteId::generate();
    write(&real[0], LocalWrite::Create { id, vente: new_vente(&real, 0, "v1", "1") }, Utc::now()).await;
    engine(&stores).round().await;

    // Dakar is cut off while Thies edits (v2) and Saint-Louis edits on top of v2 (v3).
    flaky[0].guard().set_down(true);
    write(&real[1], LocalWrite::Update { id, vente: new_vente(&real, 1, "v2", "2"), expect: Expect::Nothing }, Utc::now()).await;
    engine(&stores).round().await;
    write(&real[2], LocalWrite::Update { id, vente: new_vente(&real, 2, "v3", "3"), expect: Expect::Nothing }, Utc::now()).await;
    engine(&stores).round().await;

    // Dakar, still holding v1, receives v3 (and v2): v3's writer had seen v1 through v2.
    flaky[0].guard().set_down(false);
    let report = engine(&stores).round().await;
    assert_eq!(report.conflicts, 0);
    assert!(distinct_losers(&real).await.is_empty());
    assert_eq!(real[0].get(id).await.unwrap().unwrap().produit.as_str(), "v3");
    assert_identical(&real).await;
}

#[tokio::test]
async fn two_processes_writing_into_one_region_in_the_same_millisecond_get_distinct_versions() {
    let Some(urls) = pg_urls() else { return };
    let first = open_stores(urls.clone()).await;
    let second = open_stores(urls).await; // another pool: as another process would
    let now = Utc::now();
    let writes = (0..200).map(|i| {
        let store = if i % 2 == 0 { first[0].clone() } else { second[0].clone() };
        let vente = new_vente(&first, 0, "Même milliseconde", "5");
        async move { write(&store, LocalWrite::Create { id: VenteId::generate(), vente }, now).await.version }
    });
    let versions: Vec<_> = futures::future::join_all(writes).await;
    let distinct: HashSet<_> = versions.iter().collect();
    assert_eq!(distinct.len(), versions.len(), "every write has its own version");
}

/// The index definitions of a PostgreSQL database's `vente`, by name.
async fn index_definitions(pool: &sqlx::PgPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'vente' ORDER BY indexname")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Three databases on a cluster of the test's own, for a test whose long transactions would hold
/// back the change feeds of every other test on the shared cluster (a feed reads only below the
/// oldest transaction running on its server). `None` when PostgreSQL tests are skipped.
async fn private_pg_urls() -> Option<(PgCluster, Vec<dsms::config::DatabaseUrl>)> {
    let cluster = crate::helpers::private_cluster().await?;
    let urls = ["dakar", "thies", "saint_louis"]
        .iter()
        .map(|name| dsms::config::DatabaseUrl::Postgres(cluster.create_database(name).unwrap()))
        .collect();
    Some((cluster, urls))
}

#[tokio::test]
async fn an_empty_region_is_filled_in_bulk_with_its_indexes_built_again_and_nothing_lost() {
    let Some((_cluster, urls)) = private_pg_urls().await else { return };
    let stores = open_stores(urls.clone()).await;
    let dsms::config::DatabaseUrl::Postgres(saint_louis_url) = &urls[2] else { unreachable!() };
    let saint_louis = sqlx::PgPool::connect(saint_louis_url).await.unwrap();
    let indexes = index_definitions(&saint_louis).await;

    // More than a bulk load's worth in Dakar; a few sales in Thies, one of them a concurrent
    // version of a Dakar sale (a conflict Saint-Louis must log although it receives both at once).
    let n = dsms::sync::engine::BULK_MIN as usize + 2_000;
    let mut ids = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(10_000) {
        let rows: Vec<_> =
            (0..10_000.min(n - chunk * 10_000)).map(|i| (VenteId::generate(), new_vente(&stores, i % 3, "Mil", "10"))).collect();
        ids.extend(rows.iter().map(|(id, _)| *id));
        stores[0].write_many(&rows, Utc::now()).await.unwrap();
    }
    let shared = ids[7];
    let thies_own =
        write(&stores[1], LocalWrite::Create { id: VenteId::generate(), vente: new_vente(&stores, 1, "Riz", "5") }, Utc::now()).await;
    let rival = stores[1]
        .write_many(&[(shared, new_vente(&stores, 1, "Sorgho", "12.50"))], Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();

    let report = engine(&stores).round().await;
    assert_eq!(report.status, RoundStatus::Success, "{:?}", report.error_summary());
    let held = dump(stores[2].as_ref()).await;
    assert_eq!(held.len(), n + 1, "every sale of Dakar and Thies");
    assert!(held.contains_key(&thies_own.id));
    assert_eq!(held[&shared].version, rival[0].version, "the greater version of the shared sale");
    // One transaction wrote them all; the indexes are back as they were, and used.
    let (writers,): (i64,) = sqlx::query_as("SELECT count(DISTINCT txid) FROM vente").fetch_one(&saint_louis).await.unwrap();
    assert_eq!(writers, 1, "a bulk load is one transaction");
    assert_eq!(index_definitions(&saint_louis).await, indexes);
    let plan: Vec<(String,)> =
        sqlx::query_as("EXPLAIN SELECT id FROM vente WHERE deleted = false ORDER BY updated_at DESC, id DESC LIMIT 20")
            .fetch_all(&saint_louis)
            .await
            .unwrap();
    assert!(plan.iter().any(|(line,)| line.contains("idx_vente_sync")), "{plan:?}");
    let conflicts = stores[2].conflicts(10).await.unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].loser.id, shared);

    // Cursors moved with the load: the next rounds find nothing more for Saint-Louis.
    engine(&stores).round().await;
    let again = engine(&stores).round().await;
    let saint_louis_applied = again.regions.iter().find(|r| r.region.as_str() == "Saint-Louis").unwrap().rows_applied;
    assert_eq!(saint_louis_applied, 0);
    assert_identical(&stores).await;
}

#[tokio::test]
async fn a_region_whose_database_is_recreated_gets_back_even_the_sales_it_wrote_itself() {
    let dir = tempfile::tempdir().unwrap();
    let urls = sqlite_urls(dir.path());
    let stores = open_stores(urls.clone()).await;
    let own =
        write(&stores[2], LocalWrite::Create { id: VenteId::generate(), vente: new_vente(&stores, 2, "Oignons", "30") }, Utc::now()).await;
    let other =
        write(&stores[0], LocalWrite::Create { id: VenteId::generate(), vente: new_vente(&stores, 0, "Mil", "10") }, Utc::now()).await;
    engine(&stores).round().await;
    assert_identical(&stores).await;

    // Saint-Louis' database is lost and created again, empty (a new identity).
    drop(stores);
    for suffix in ["", "-wal", "-shm"] {
        let dsms::config::DatabaseUrl::Sqlite(path) = &urls[2] else { unreachable!() };
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let stores = open_stores(urls).await;
    let report = engine(&stores).round().await;
    assert_eq!(report.status, RoundStatus::Success);
    let held = dump(stores[2].as_ref()).await;
    assert_eq!(held.get(&other.id).map(|v| &v.version), Some(&other.version));
    assert_eq!(held.get(&own.id).map(|v| &v.version), Some(&own.version), "its own sale, written before it was lost");
    assert_identical(&stores).await;
}

#[tokio::test]
async fn rows_copied_in_bulk_still_meet_concurrent_versions_as_conflicts_in_every_region() {
    let Some(urls) = pg_urls() else { return };
    let stores = open_stores(urls).await;
    // Dakar creates 200 sales; Thies, not having seen them, creates 50 of the same ids and 30 of
    // its own: batches large enough to be copied in, which must fall back when an id is there.
    let dakar: Vec<_> = (0..200).map(|_| (VenteId::generate(), new_vente(&stores, 0, "Mil", "10"))).collect();
    let mut thies: Vec<_> = dakar[..50].iter().map(|(id, _)| (*id, new_vente(&stores, 1, "Riz", "20"))).collect();
    thies.extend((0..30).map(|_| (VenteId::generate(), new_vente(&stores, 1, "Riz", "20"))));
    let written = stores[0].write_many(&dakar, Utc::now()).await.unwrap();
    let rivals = stores[1].write_many(&thies, Utc::now() + chrono::Duration::seconds(1)).await.unwrap();

    let report = engine(&stores).round().await;
    assert_eq!(report.status, RoundStatus::Success);
    assert_identical(&stores).await;
    let held = dump(stores[2].as_ref()).await;
    assert_eq!(held.len(), 230);
    for (old, new) in written.iter().zip(&rivals).take(50) {
        assert_eq!(held[&old.id].version, new.version, "the later creation wins");
    }
    // Each lost creation is logged where the two versions met (a region that only ever saw the
    // winner, because the loser was overwritten in the feed it read, has nothing to log).
    let lost: HashSet<(VenteId, String)> = written[..50].iter().map(|v| (v.id, v.version.to_string())).collect();
    assert_eq!(distinct_losers(&stores).await, lost, "{:?}", report.pairs);
}

#[tokio::test]
async fn a_region_is_not_sent_back_what_it_sent_but_others_still_get_it_forwarded() {
    for urls in [None, pg_urls()] {
        let dir = tempfile::tempdir().unwrap();
        let urls = urls.unwrap_or_else(|| sqlite_urls(dir.path()));
        let stores = open_stores(urls).await;
        let rows: Vec<_> = (0..100).map(|_| (VenteId::generate(), new_vente(&stores, 0, "Mil", "10"))).collect();
        stores[0].write_many(&rows, Utc::now()).await.unwrap();
        let first = engine(&stores).round().await;
        assert_eq!(first.status, RoundStatus::Success);

        // The next round: Thies and Saint-Louis hold Dakar's sales as received from Dakar, so
        // Dakar is not sent them again; nor is either sent the other's copies: each has read
        // Dakar's feed past the batch those copies came in (the apply log), so they are skipped
        // without being read.
        crate::sync::settle(&stores).await; // other tests' transactions on the shared cluster
        let second = engine(&stores).round().await;
        let pair = |report: &dsms::sync::report::RoundReport, source: &str, target: &str| {
            let p = report.pairs.iter().find(|p| p.source.as_str() == source && p.target.as_str() == target).unwrap();
            (p.rows_read, p.rows_skipped)
        };
        assert_eq!(pair(&second, "Thies", "Dakar"), (0, 100));
        assert_eq!(pair(&second, "Saint-Louis", "Dakar"), (0, 100));
        assert_eq!(pair(&second, "Thies", "Saint-Louis"), (0, 100));
        assert_eq!(pair(&second, "Saint-Louis", "Thies"), (0, 100));
        assert_eq!(second.rows_applied(), 0);
        // Cursors moved past what was left out: nothing is read again.
        crate::sync::settle(&stores).await;
        let third = engine(&stores).round().await;
        assert!(third.pairs.iter().all(|p| p.rows_read == 0), "{:?}", third.pairs);

        // An edit in Thies of a sale it received from Dakar goes back to Dakar.
        let id = rows[3].0;
        let edit = stores[1].write_many(&[(id, new_vente(&stores, 1, "Mil", "11"))], Utc::now()).await.unwrap();
        engine(&stores).round().await;
        assert_eq!(stores[0].get(id).await.unwrap().unwrap().version, edit[0].version);
        assert_identical(&stores).await;
    }
}

#[tokio::test]
async fn a_region_that_hangs_is_skipped_and_catches_up_when_it_wakes() {
    let Some(cluster) = crate::helpers::private_cluster().await else { return };
    let Some(shared) = pg_urls() else { return };
    let urls = vec![shared[0].clone(), shared[1].clone(), dsms::config::DatabaseUrl::Postgres(cluster.create_database("ventes").unwrap())];
    let limits = dsms::store::Limits { connect_timeout: Duration::from_secs(1), statement_timeout: Duration::from_secs(2) };
    let stores = crate::sync::open_stores_with(urls, limits).await;
    let create = |region: usize| LocalWrite::Create { id: VenteId::generate(), vente: new_vente(&stores, region, "Arachide", "40") };
    for i in 0..6 {
        write(&stores[i % 3], create(i % 3), Utc::now()).await;
    }
    assert_eq!(engine(&stores).round().await.status, RoundStatus::Success);

    // Saint-Louis' server stops answering (SIGSTOP) without closing anything; Dakar and Thies
    // keep writing and syncing, each call to Saint-Louis cut short by our own timeouts.
    cluster.freeze().unwrap();
    let mut written = Vec::new();
    for i in 0..20 {
        written.push(write(&stores[i % 2], create(i % 2), Utc::now()).await.id);
    }
    let hung = engine(&stores).round().await;
    assert_eq!(hung.status, RoundStatus::Partial);
    assert!(hung.regions[2].error.is_some());
    let (report, divergent) = dsms::sync::verify::verify(&stores[..2], 10).await.unwrap();
    assert_eq!(divergent, 0, "{:?}", report.divergent);

    // It wakes up: the next rounds bring it everything, with no step of ours.
    cluster.thaw().unwrap();
    assert_eq!(rounds_until_success(&stores, 20).await, RoundStatus::Success);
    assert_identical(&stores).await;
    let saint_louis = dump(stores[2].as_ref()).await;
    assert!(written.iter().all(|id| saint_louis.contains_key(id)));
}
