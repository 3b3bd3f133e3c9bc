//! Every writer replicates (issue 11): plain SQL through connections that are not dsms's (psql,
//! the guide's Spring application, the `sqlite3` shell), and the guide's own databases adopted
//! as they are by `dsms migrate`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dsms::config::DatabaseUrl;
use dsms::domain::VenteId;
use dsms::domain::{LocalWrite, WriteOutcome};
use dsms::store::Store;
use dsms::sync::engine::{Engine, EngineOptions};
use uuid::Uuid;

use crate::helpers::{Backends, config_for, pg_database, spawn_app_in};
use crate::sync::{dump, new_vente, open_stores, pg_urls, settle, sqlite_urls};

/// A connection that is not dsms's: it issues plain SQL, as psql or the `sqlite3` shell would.
pub enum Plain {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Plain {
    pub async fn open(url: &DatabaseUrl) -> Self {
        match url {
            DatabaseUrl::Postgres(url) => Self::Pg(sqlx::PgPool::connect(url).await.unwrap()),
            DatabaseUrl::Sqlite(path) => Self::Sqlite(sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap()),
        }
    }

    pub async fn open_all(urls: &[DatabaseUrl]) -> Vec<Self> {
        let mut all = Vec::with_capacity(urls.len());
        for url in urls {
            all.push(Self::open(url).await);
        }
        all
    }

    /// An INSERT naming the guide's seven columns only (SQLite keeps amounts in cents).
    pub async fn insert(&self, id: Uuid, produit: &str, cents: i64, region: &str) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Self::Pg(pool) => sqlx::query(
                "INSERT INTO vente (id, produit, montant, date_vente, region, updated_at, deleted) \
                 VALUES ($1, $2, $3::numeric / 100, DATE '2026-01-15', $4, now(), false)",
            )
            .bind(id)
            .bind(produit)
            .bind(cents)
            .bind(region)
            .execute(pool)
            .await?
            .rows_affected(),
            Self::Sqlite(pool) => sqlx::query(
                "INSERT INTO vente (id, produit, montant, date_vente, region, updated_at, deleted) VALUES (?, ?, ?, '2026-01-15', ?, 0, 0)",
            )
            .bind(id)
            .bind(produit)
            .bind(cents)
            .bind(region)
            .execute(pool)
            .await?
            .rows_affected(),
        })
    }

    /// `UPDATE vente SET montant = … WHERE id IN (…)`: one statement, one or many rows.
    pub async fn set_montant(&self, ids: &[Uuid], cents: i64) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Self::Pg(pool) => sqlx::query("UPDATE vente SET montant = $1::numeric / 100 WHERE id = ANY($2)")
                .bind(cents)
                .bind(ids)
                .execute(pool)
                .await?
                .rows_affected(),
            Self::Sqlite(pool) => {
                let marks = vec!["?"; ids.len()].join(", ");
                let sql = format!("UPDATE vente SET montant = ? WHERE id IN ({marks})");
                let mut query = sqlx::query(&sql).bind(cents);
                for id in ids {
                    query = query.bind(*id);
                }
                query.execute(pool).await?.rows_affected()
            }
        })
    }

    /// A hard `DELETE`.
    pub async fn delete(&self, id: Uuid) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Self::Pg(pool) => sqlx::query("DELETE FROM vente WHERE id = $1").bind(id).execute(pool).await?.rows_affected(),
            Self::Sqlite(pool) => sqlx::query("DELETE FROM vente WHERE id = ?").bind(id).execute(pool).await?.rows_affected(),
        })
    }
}

fn engine(stores: &[Arc<dyn Store>]) -> Engine {
    Engine::new(stores.to_vec(), EngineOptions::default())
}

/// Rounds until every region holds the same rows (at most a few).
async fn sync_until_identical(stores: &[Arc<dyn Store>]) {
    for _ in 0..4 {
        settle(stores).await;
        engine(stores).round().await;
        let (_, divergent) = dsms::sync::verify::verify(stores, 10).await.unwrap();
        if divergent == 0 {
            return;
        }
    }
    let (report, _) = dsms::sync::verify::verify(stores, 10).await.unwrap();
    panic!("regions still differ: {:?}", report.divergent);
}

/// Live sales as (produit, cents), by id.
async fn live(store: &dyn Store) -> BTreeMap<VenteId, (String, i64)> {
    dump(store).await.into_iter().filter(|(_, v)| !v.deleted).map(|(id, v)| (id, (v.produit.to_string(), v.montant.cents()))).collect()
}

async fn distinct_losers(stores: &[Arc<dyn Store>]) -> HashSet<(VenteId, String)> {
    let mut losers = HashSet::new();
    for store in stores {
        for c in store.conflicts(1000).await.unwrap() {
            losers.insert((c.loser.id, c.loser.version.to_string()));
        }
    }
    losers
}

async fn created(store: &Arc<dyn Store>, stores: &[Arc<dyn Store>], region: usize, produit: &str, montant: &str) -> VenteId {
    let write = LocalWrite::Create { id: VenteId::generate(), vente: new_vente(stores, region, produit, montant) };
    match store.write(&write, Utc::now()).await.unwrap() {
        WriteOutcome::Written(v) => v.id,
        other => panic!("not written: {other:?}"),
    }
}

/// The three regions on each backend combination: SQLite only, PostgreSQL only, mixed.
fn region_sets(dir: &std::path::Path) -> Vec<Vec<DatabaseUrl>> {
    let mut sets = vec![sqlite_urls(dir)];
    if let Some(pg) = pg_urls() {
        sets.push(pg);
        let mut mixed = sqlite_urls(&dir.join("mixed"));
        std::fs::create_dir_all(dir.join("mixed")).unwrap();
        mixed[0] = pg_urls().unwrap()[0].clone();
        sets.push(mixed);
    }
    sets
}

#[tokio::test]
async fn plain_sql_inserts_updates_and_hard_deletes_in_three_regions_replicate_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    for urls in region_sets(dir.path()) {
        let stores = open_stores(urls.clone()).await;
        let mut plain = Vec::new();
        for url in &urls {
            plain.push(Plain::open(url).await);
        }
        // Sales made through dsms and replicated first.
        let a = created(&stores[0], &stores, 0, "Mil", "100").await;
        let b = created(&stores[0], &stores, 0, "Riz", "200").await;
        let c = created(&stores[1], &stores, 1, "Sucre", "300").await;
        let d = created(&stores[2], &stores, 2, "Huile", "400").await;
        sync_until_identical(&stores).await;

        // Dakar: an INSERT with the guide's columns only; Thies: one single-row UPDATE and one
        // multi-row UPDATE; Saint-Louis: a hard DELETE.
        let inserted = Uuid::now_v7();
        assert_eq!(plain[0].insert(inserted, "  Café Touba ", 350_050, "Dakar").await.unwrap(), 1);
        assert_eq!(plain[1].set_montant(&[a.0], 11100).await.unwrap(), 1);
        assert_eq!(plain[1].set_montant(&[b.0, c.0], 22200).await.unwrap(), 2);
        plain[2].delete(d.0).await.unwrap();
        assert!(stores[2].get(d).await.unwrap().unwrap().deleted, "a hard DELETE leaves a tombstone");

        sync_until_identical(&stores).await;
        let expected: BTreeMap<VenteId, (String, i64)> = [
            (VenteId(inserted), ("Café Touba".to_owned(), 350_050)),
            (a, ("Mil".to_owned(), 11100)),
            (b, ("Riz".to_owned(), 22200)),
            (c, ("Sucre".to_owned(), 22200)),
        ]
        .into_iter()
        .collect();
        for store in &stores {
            assert_eq!(live(store.as_ref()).await, expected, "{} ({:?})", store.region(), store.backend());
            let rows = dump(store.as_ref()).await;
            assert!(rows[&d].deleted, "{}: the deletion replicated", store.region());
            assert_eq!(rows[&VenteId(inserted)].version.origin.as_str(), "Dakar", "stamped with the region it was written in");
        }
        assert!(distinct_losers(&stores).await.is_empty(), "edits of replicated sales are not conflicts");
    }
}

#[tokio::test]
async fn the_guides_scenario_two_plain_sql_edits_with_no_round_between_thies_wins_and_one_conflict_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    for urls in region_sets(dir.path()) {
        let stores = open_stores(urls.clone()).await;
        let (dakar, thies, saint_louis) = (Plain::open(&urls[0]).await, Plain::open(&urls[1]).await, Plain::open(&urls[2]).await);
        let id = created(&stores[0], &stores, 0, "Ciment", "4500").await;
        sync_until_identical(&stores).await;

        dakar.set_montant(&[id.0], 460000).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await; // the Thies edit is the later one
        thies.set_montant(&[id.0], 470000).await.unwrap();
        sync_until_identical(&stores).await;
        for store in &stores {
            assert_eq!(store.get(id).await.unwrap().unwrap().montant.cents(), 470000, "{}", store.region());
        }
        let losers = distinct_losers(&stores).await;
        assert_eq!(losers.len(), 1, "exactly one conflict: {losers:?}");
        let conflicts = stores[0].conflicts(10).await.unwrap();
        assert!(conflicts.iter().all(|c| c.loser.montant.cents() == 460000 && c.winner.montant.cents() == 470000), "{conflicts:?}");

        // An edit of the version every region holds is an ordinary edit.
        saint_louis.set_montant(&[id.0], 480000).await.unwrap();
        sync_until_identical(&stores).await;
        assert_eq!(distinct_losers(&stores).await.len(), 1, "no new conflict");
        assert_eq!(stores[1].get(id).await.unwrap().unwrap().montant.cents(), 480000);
    }
}

#[tokio::test]
async fn a_plain_sql_write_in_a_postgresql_region_is_visible_in_the_others_within_2_s_with_no_api_call() {
    let dir = tempfile::tempdir().unwrap();
    let Some(config) = config_for(Backends::Postgres, dir.path()) else { return };
    let app = spawn_app_in(config.clone(), dir).await;
    let dakar = Plain::open(&config.regions[0].url).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // LISTEN under way (not a measured wait)
    let id = Uuid::now_v7();
    dakar.insert(id, "Écrit avec psql", 12_345, "Dakar").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    for store in &app.ventes.stores()[1..] {
        loop {
            if store.get(VenteId(id)).await.unwrap().is_some() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{} does not hold the psql write after 2 s", store.region());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn truncate_is_refused_and_foreign_rows_breaking_the_rules_are_refused_with_a_french_message() {
    let Some(url) = pg_database() else { return };
    let stores = open_stores(vec![
        DatabaseUrl::Postgres(url.clone()),
        DatabaseUrl::Postgres(pg_database().unwrap()),
        DatabaseUrl::Postgres(pg_database().unwrap()),
    ])
    .await;
    let _ = created(&stores[0], &stores, 0, "Mil", "1").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let error = sqlx::query("TRUNCATE vente").execute(&pool).await.unwrap_err().to_string();
    assert!(error.contains("TRUNCATE de vente refusé"), "{error}");
    let error = sqlx::query("INSERT INTO vente (produit, montant, date_vente, region) VALUES ('Mil', -5, DATE '2026-01-15', 'Dakar')")
        .execute(&pool)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("montant"), "{error}");
    let error = sqlx::query("INSERT INTO vente (produit, montant, date_vente, region) VALUES ('Mil', 5, DATE '2999-01-15', 'Dakar')")
        .execute(&pool)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("demain"), "{error}");
    assert_eq!(stores[0].count_live().await.unwrap(), 1);

    let dir = tempfile::tempdir().unwrap();
    let sqlite = open_stores(sqlite_urls(dir.path())).await;
    let plain = Plain::open(&sqlite_urls(dir.path())[0]).await;
    let Plain::Sqlite(pool) = &plain else { unreachable!() };
    let error = sqlx::query("INSERT INTO vente (produit, montant, date_vente, region) VALUES ('Mil', 15.5, '2026-01-15', 'Dakar')")
        .execute(pool)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("centimes"), "{error}");
    // A writer that picks its own feed position gets a fresh one.
    sqlx::query(
        "INSERT INTO vente (produit, montant, date_vente, region, seq, hlc, origin) VALUES ('Mil', 150, '2026-01-15', 'Dakar', 1, 1, 'X')",
    )
    .execute(pool)
    .await
    .unwrap();
    let (seq, origin): (i64, String) = sqlx::query_as("SELECT seq, origin FROM vente WHERE produit = 'Mil'").fetch_one(pool).await.unwrap();
    assert!(seq > 0 && origin == "Dakar", "{seq} {origin}");
    assert_eq!(sqlite[0].count_live().await.unwrap(), 1);
}

/// The guide's `vente` as Hibernate creates it (alphabetical columns, nullable), with the guide's
/// six indexes under dsms's names.
const HIBERNATE_VENTE: &str = "\
    CREATE TABLE vente (id uuid NOT NULL, date_vente date, deleted boolean, montant float(53), produit varchar(255), \
        region varchar(255), updated_at timestamp(6), PRIMARY KEY (id));
    CREATE INDEX idx_vente_updated_at ON vente(updated_at DESC);
    CREATE INDEX idx_vente_deleted ON vente(deleted) WHERE deleted = false;
    CREATE INDEX idx_vente_region ON vente(region);
    CREATE INDEX idx_vente_date_vente ON vente(date_vente DESC);
    CREATE INDEX idx_vente_sync ON vente(deleted, updated_at DESC);
    CREATE INDEX idx_vente_produit ON vente(produit);";

/// A row as the guide's application writes it.
async fn hibernate_insert(
    pool: &sqlx::PgPool,
    id: Uuid,
    produit: &str,
    montant: f64,
    region: &str,
    updated_at: &str,
    deleted: Option<bool>,
) {
    sqlx::query(
        "INSERT INTO vente (date_vente, deleted, montant, produit, region, updated_at, id) \
         VALUES (DATE '2026-01-15', $1, $2, $3, $4, $5::timestamp, $6)",
    )
    .bind(deleted)
    .bind(montant)
    .bind(produit)
    .bind(region)
    .bind(updated_at)
    .bind(id)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_guides_diverged_databases_are_adopted_and_merged_by_the_latest_updated_at() {
    let Some(first) = pg_database() else { return };
    let urls = [first, pg_database().unwrap(), pg_database().unwrap()];
    let mut pools = Vec::new();
    for url in &urls {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::raw_sql(HIBERNATE_VENTE).execute(&pool).await.unwrap();
        pools.push(pool);
    }
    let [only_dakar, shared, edited, deleted_late, float] = [(); 5].map(|()| Uuid::now_v7());
    hibernate_insert(&pools[0], only_dakar, "Arachide", 1000.0, "Dakar", "2026-01-10 08:00:00", Some(false)).await;
    for pool in &pools {
        hibernate_insert(pool, shared, "Mil", 2500.0, "Thies", "2026-01-11 09:00:00.123456", Some(false)).await;
    }
    // Edited in every region; Thies's edit is the latest.
    hibernate_insert(&pools[0], edited, "Riz (Dakar)", 3000.0, "Dakar", "2026-01-12 10:00:00", Some(false)).await;
    hibernate_insert(&pools[1], edited, "Riz (Thies)", 3100.0, "Dakar", "2026-01-12 12:00:00", Some(false)).await;
    hibernate_insert(&pools[2], edited, "Riz (Saint-Louis)", 3200.0, "Dakar", "2026-01-12 11:00:00", None).await;
    // Deleted where the latest edit was.
    hibernate_insert(&pools[0], deleted_late, "Sucre", 400.0, "Saint-Louis", "2026-01-13 10:00:00", Some(false)).await;
    hibernate_insert(&pools[2], deleted_late, "Sucre", 400.0, "Saint-Louis", "2026-01-13 10:00:01", Some(true)).await;
    // A double with a third decimal, nullable `deleted`.
    hibernate_insert(&pools[1], float, "Huile", 1500.555, "Thies", "2026-01-14 10:00:00", None).await;

    let urls: Vec<DatabaseUrl> = urls.iter().cloned().map(DatabaseUrl::Postgres).collect();
    let stores = open_stores(urls.clone()).await;
    sync_until_identical(&stores).await;
    let expected: BTreeMap<VenteId, (String, i64)> = [
        (VenteId(only_dakar), ("Arachide".to_owned(), 100000)),
        (VenteId(shared), ("Mil".to_owned(), 250000)),
        (VenteId(edited), ("Riz (Thies)".to_owned(), 310000)),
        (VenteId(float), ("Huile".to_owned(), 150056)),
    ]
    .into_iter()
    .collect();
    for store in &stores {
        assert_eq!(live(store.as_ref()).await, expected, "{}", store.region());
        let rows = dump(store.as_ref()).await;
        assert_eq!(rows.len(), 5, "{}: no row lost", store.region());
        assert!(rows[&VenteId(deleted_late)].deleted, "{}: the latest write was the deletion", store.region());
    }

    // A second `dsms migrate` changes nothing.
    let before = {
        let mut all = Vec::new();
        for store in &stores {
            all.push(dump(store.as_ref()).await);
        }
        all
    };
    let max_txid = |pool: &sqlx::PgPool| {
        let pool = pool.clone();
        async move {
            let (txid,): (Option<String>,) =
                sqlx::query_as("SELECT max(txid::text::bigint)::text FROM vente").fetch_one(&pool).await.unwrap();
            txid
        }
    };
    let txids_before = [max_txid(&pools[0]).await, max_txid(&pools[1]).await, max_txid(&pools[2]).await];
    let again = open_stores(urls.clone()).await;
    for (i, store) in again.iter().enumerate() {
        assert_eq!(dump(store.as_ref()).await, before[i], "{}: the second migrate changed rows", store.region());
        assert_eq!(max_txid(&pools[i]).await, txids_before[i], "{}: the second migrate wrote rows", store.region());
    }

    // The old application still inserts (a double amount, a timestamp without time zone), and it replicates.
    let late = Uuid::now_v7();
    hibernate_insert(&pools[0], late, "Oignons", 7250.125, "Dakar", "2026-01-15 10:00:00", Some(false)).await;
    sync_until_identical(&stores).await;
    for store in &stores {
        let v = store.get(VenteId(late)).await.unwrap().unwrap();
        assert_eq!((v.produit.as_str(), v.montant.cents(), v.deleted), ("Oignons", 725013, false), "{}", store.region());
    }
}
