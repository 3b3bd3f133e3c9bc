//! PostgreSQL carries the guide's six indexes, and the listing queries use them on a region with
//! enough rows for the planner to care (30,000, statistics fresh, as after a bulk load).

use std::time::Duration;

use chrono::Utc;
use dsms::config::{Config, DatabaseUrl};
use dsms::domain::RegionName;
use dsms::store::{self, Limits};
use sqlx::{Connection, PgConnection};

use crate::helpers::pg_database;

const GUIDE_INDEXES: [&str; 6] =
    ["idx_vente_updated_at", "idx_vente_deleted", "idx_vente_region", "idx_vente_date_vente", "idx_vente_sync", "idx_vente_produit"];

/// The plan of `sql` (with `region` bound to `$1` when the query has one), as text.
async fn explain(conn: &mut PgConnection, sql: &str, region: Option<&str>) -> String {
    let explain = format!("EXPLAIN {sql}");
    let mut query = sqlx::query_scalar::<_, String>(&explain);
    if let Some(region) = region {
        query = query.bind(region);
    }
    query.fetch_all(conn).await.unwrap().join("\n")
}

#[tokio::test]
async fn the_guide_indexes_exist_and_serve_the_listing_queries() {
    let Some(url) = pg_database() else { return };
    let config = Config::with_regions(vec![("Dakar", DatabaseUrl::Postgres(url.clone()))]);
    let limits = Limits { connect_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(60) };
    let store = store::open(&config.regions[0], limits).await.unwrap();
    store.migrate().await.unwrap();
    let regions: Vec<RegionName> = Config::embedded(std::path::Path::new("unused")).region_names().iter().cloned().collect();
    let mut rng = rand::rng();
    // 30 imports of 1,000 sales: each stamps its rows with one time, as a bulk load does.
    for _ in 0..30 {
        let rows = dsms::seed::generate(1_000, &regions, Utc::now().date_naive(), &mut rng);
        store.write_many(&rows, Utc::now()).await.unwrap();
    }
    store.analyze().await.unwrap();
    assert_eq!(store.count_live().await.unwrap(), 30_000);

    let mut conn = PgConnection::connect(&url).await.unwrap();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE tablename = 'vente'").fetch_all(&mut conn).await.unwrap();
    for index in GUIDE_INDEXES {
        assert!(names.iter().any(|n| n == index), "{index} missing; indexes: {names:?}");
    }

    // The guide's own query.
    let plan = explain(&mut conn, "SELECT * FROM vente WHERE deleted = false ORDER BY updated_at DESC LIMIT 50", None).await;
    assert!(plan.contains("idx_vente_sync"), "{plan}");

    // The queries `PgStore::list` sends: first page, a deep keyset page, a region's pages.
    let list = "SELECT id, produit, montant, date_vente, region, updated_at, deleted, hlc, origin FROM vente WHERE deleted = false";
    let order = "ORDER BY updated_at DESC, id DESC LIMIT 51";
    let (at, id): (chrono::DateTime<Utc>, uuid::Uuid) =
        sqlx::query_as("SELECT updated_at, id FROM vente ORDER BY updated_at DESC, id DESC OFFSET 27000 LIMIT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let deep = format!("AND (updated_at, id) < ('{}'::timestamptz, '{id}'::uuid)", at.to_rfc3339());
    for sql in [format!("{list} {order}"), format!("{list} {deep} {order}")] {
        let plan = explain(&mut conn, &sql, None).await;
        assert!(plan.contains("idx_vente_sync") && !plan.contains("Sort"), "{sql}\n{plan}");
    }
    // With a third of the rows in each region, reading the time order and skipping other regions'
    // rows costs about as much as the region's own index (the planner picks either, by a hair);
    // either serves the page in order, never a sort or a full scan.
    for sql in [format!("{list} AND region = $1 {order}"), format!("{list} AND region = $1 {deep} {order}")] {
        let plan = explain(&mut conn, &sql, Some("Thies")).await;
        let indexed = plan.contains("idx_vente_region") || plan.contains("idx_vente_sync");
        assert!(indexed && !plan.contains("Sort") && !plan.contains("Seq Scan"), "{sql}\n{plan}");
    }
}
