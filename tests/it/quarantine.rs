//! Quarantine, not blockage, and clock discipline (issue 12): a row a region cannot decode is set
//! aside and the feed moves on; a version too far in the future is refused and moves no clock;
//! a server whose clock is off against its databases is flagged and stamps from the later clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dsms::config::DatabaseUrl;
use dsms::domain::version::Hlc;
use dsms::domain::{Expect, LocalWrite, VenteId, WriteOutcome};
use dsms::sync::engine::{Engine, EngineOptions};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Backends, TestApp, config_for, spawn_app_in};
use crate::sync::{new_vente, open_stores, pg_urls, sqlite_urls};

/// What a row written around dsms's rules holds wrong.
#[derive(Clone, Copy, Debug)]
enum Breakage {
    SpacesOnly,
    ControlCharacter,
    UnreadableSeen,
    AmountOutOfRange,
}

const BREAKAGES: [Breakage; 4] = [Breakage::SpacesOnly, Breakage::ControlCharacter, Breakage::UnreadableSeen, Breakage::AmountOutOfRange];

/// A connection that writes plain SQL *around* the triggers that check and stamp foreign writes
/// (as a careless script or a bug could): the row gets a feed position but nobody checks it.
enum Raw {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Raw {
    async fn open(url: &DatabaseUrl) -> Self {
        match url {
            DatabaseUrl::Postgres(url) => Self::Pg(sqlx::PgPool::connect(url).await.unwrap()),
            DatabaseUrl::Sqlite(path) => Self::Sqlite(sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap()),
        }
    }

    /// Inserts (or overwrites) a row with these values as they are, `hlc` `None`: the region's
    /// clock + 1 (not moving it). A new feed position either way.
    async fn put(&self, id: Uuid, produit: &str, cents: i64, hlc: Option<i64>, seen: Option<&str>) {
        match self {
            Self::Pg(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("SELECT set_config('dsms.writer', 'script-hors-regles', true)").execute(&mut *tx).await.unwrap();
                sqlx::query("ALTER TABLE vente DROP CONSTRAINT IF EXISTS vente_montant_check").execute(&mut *tx).await.unwrap();
                sqlx::query(
                    "INSERT INTO vente (id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seen) \
                     SELECT $1, $2, lower($2), $3::numeric / 100, DATE '2026-01-15', 'Dakar', now(), false, h, 'Dakar', \
                            coalesce($5, 'Dakar=' || h) \
                     FROM (SELECT coalesce($4, (SELECT hlc + 1 FROM dsms_clock)) AS h) AS c \
                     ON CONFLICT (id) DO UPDATE SET produit = EXCLUDED.produit, montant = EXCLUDED.montant, hlc = EXCLUDED.hlc, \
                       seen = EXCLUDED.seen, txid = pg_current_xact_id(), via = NULL",
                )
                .bind(id)
                .bind(produit)
                .bind(cents)
                .bind(hlc)
                .bind(seen)
                .execute(&mut *tx)
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
            Self::Sqlite(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("UPDATE dsms_clock SET dsms = 1, seq = seq + 1 WHERE id = 1").execute(&mut *tx).await.unwrap();
                sqlx::query(
                    "INSERT INTO vente (id, produit, produit_norm, montant, date_vente, region, updated_at, deleted, hlc, origin, seen, seq) \
                     SELECT ?1, ?2, lower(?2), ?3, '2026-01-15', 'Dakar', 1767225600000000, 0, h, 'Dakar', coalesce(?5, 'Dakar=' || h), s \
                     FROM (SELECT coalesce(?4, hlc + 1) AS h, seq AS s FROM dsms_clock WHERE id = 1) \
                     WHERE true ON CONFLICT (id) DO UPDATE SET produit = excluded.produit, montant = excluded.montant, hlc = excluded.hlc, \
                       seen = excluded.seen, seq = excluded.seq, via = NULL",
                )
                .bind(id)
                .bind(produit)
                .bind(cents)
                .bind(hlc)
                .bind(seen)
                .execute(&mut *tx)
                .await
                .unwrap();
                sqlx::query("UPDATE dsms_clock SET dsms = 0 WHERE id = 1").execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            }
        }
    }

    /// A bad row of this kind.
    async fn break_row(&self, id: Uuid, breakage: Breakage) {
        match breakage {
            Breakage::SpacesOnly => self.put(id, "    ", 150_000, None, None).await,
            Breakage::ControlCharacter => self.put(id, "Mil\u{7}", 150_000, None, None).await,
            Breakage::UnreadableSeen => self.put(id, "Mil", 150_000, None, Some("historique illisible")).await,
            // SQLite keeps cents (below 10^12); the PostgreSQL column's bound check is dropped.
            Breakage::AmountOutOfRange => match self {
                Self::Pg(_) => self.put(id, "Mil", -500, None, None).await,
                Self::Sqlite(_) => self.put(id, "Mil", 1_000_000_000_000, None, None).await,
            },
        }
    }

    /// Fixes rows as any writer would, through the triggers (a plain UPDATE).
    async fn fix(&self, ids: &[Uuid]) {
        for id in ids {
            match self {
                Self::Pg(pool) => sqlx::query("UPDATE vente SET produit = 'Mil corrigé', montant = 1500 WHERE id = $1")
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(drop)
                    .unwrap(),
                Self::Sqlite(pool) => sqlx::query("UPDATE vente SET produit = 'Mil corrigé', montant = 150000 WHERE id = ?")
                    .bind(id)
                    .execute(pool)
                    .await
                    .map(drop)
                    .unwrap(),
            };
        }
    }

    async fn clock(&self) -> i64 {
        match self {
            Self::Pg(pool) => sqlx::query_scalar("SELECT hlc FROM dsms_clock").fetch_one(pool).await.unwrap(),
            Self::Sqlite(pool) => sqlx::query_scalar("SELECT hlc FROM dsms_clock WHERE id = 1").fetch_one(pool).await.unwrap(),
        }
    }
}

async fn json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn region_state(app: &TestApp, region: &str) -> (String, String) {
    app.monitor.probe_all().await;
    let stats = json(app, "/api/stats").await;
    let r = &stats["regions"][region];
    (r["status"].as_str().unwrap().to_owned(), r["statusReason"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn bad_rows_are_quarantined_the_feed_moves_on_and_once_fixed_they_replicate() {
    for backends in [Backends::Sqlite, Backends::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        let Some(config) = config_for(backends, dir.path()) else { continue };
        let url = config.regions[0].url.clone();
        let app = spawn_app_in(config, dir).await;
        let raw = Raw::open(&url).await;
        let context = format!("{backends:?}");

        let bad: Vec<Uuid> = BREAKAGES.iter().map(|_| Uuid::now_v7()).collect();
        for (id, breakage) in bad.iter().zip(BREAKAGES) {
            raw.break_row(*id, breakage).await;
        }
        // The next good row, written after them, replicates.
        let good = app.create_vente("Dakar", "Riz", "2500").await;
        let good_id: Uuid = good["id"].as_str().unwrap().parse().unwrap();
        app.scheduler.run_now().await;
        for store in &app.ventes.stores()[1..] {
            assert!(store.get(VenteId(good_id)).await.unwrap().is_some(), "{context}: {} lacks the good row", store.region());
            for id in &bad {
                assert!(store.get(VenteId(*id)).await.unwrap().is_none(), "{context}: {} got a bad row", store.region());
            }
        }

        // Listing the region answers 200, without the bad rows.
        let listed = app.list_all("region=Dakar", 2).await;
        let ids: Vec<&str> = listed.iter().map(|v| v["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&good_id.to_string().as_str()), "{context}: {ids:?}");
        assert!(bad.iter().all(|b| !ids.contains(&b.to_string().as_str())), "{context}: {ids:?}");

        // A quarantined sale reads as absent: 404, never a 500, for a read or a write.
        let path = format!("/api/ventes/{}", bad[0]);
        assert_eq!(app.get(&path).await.status(), 404, "{context}");
        let body = crate::helpers::vente_body("Mil", serde_json::json!("10"), "2026-01-15", "Dakar");
        assert_eq!(app.http.put(app.url(&path)).json(&body).send().await.unwrap().status(), 404, "{context}");

        // Listed in quarantine, each with a reason; the region is WARNING, and counted.
        let items = json(&app, "/api/quarantine").await;
        let items = items.as_array().unwrap();
        for (id, breakage) in bad.iter().zip(BREAKAGES) {
            let item = items.iter().find(|i| i["id"] == id.to_string()).unwrap_or_else(|| panic!("{context}: {breakage:?} not listed"));
            assert_eq!(item["region"], "Dakar", "{context}");
            assert!(item["reason"].as_str().is_some_and(|r| !r.is_empty()), "{context}: {item}");
            assert!(item["detectedAt"].as_str().is_some(), "{context}: {item}");
        }
        let (status, reason) = region_state(&app, "Dakar").await;
        assert_eq!(status, "WARNING", "{context}");
        assert!(reason.contains("4 lignes en quarantaine"), "{context}: {reason}");
        let metrics = app.get("/metrics").await.text().await.unwrap();
        assert!(metrics.contains("dsms_quarantined_rows{region=\"Dakar\"} 4"), "{context}");
        let dashboard = app.get("/stats").await.text().await.unwrap();
        assert!(dashboard.contains("Lignes en quarantaine") && dashboard.contains(&bad[0].to_string()), "{context}");

        // Fixed by plain SQL (any writer): each is read again, leaves quarantine and replicates.
        raw.fix(&bad).await;
        app.scheduler.run_now().await;
        for store in app.ventes.stores() {
            for id in &bad {
                let got = store.get(VenteId(*id)).await.unwrap();
                assert_eq!(got.map(|v| v.produit.to_string()).as_deref(), Some("Mil corrigé"), "{context}: {}", store.region());
            }
        }
        assert_eq!(json(&app, "/api/quarantine").await, serde_json::json!([]), "{context}");
        let (_, reason) = region_state(&app, "Dakar").await;
        assert!(!reason.contains("quarantaine"), "{context}: {reason}");
        let (report, divergent) = dsms::sync::verify::verify(app.ventes.stores(), 10).await.unwrap();
        assert_eq!(divergent, 0, "{context}: {:?}", report.divergent);
    }
}

#[tokio::test]
async fn versions_far_in_the_future_are_refused_move_no_clock_and_writes_go_on() {
    for urls in [None, pg_urls()] {
        let dir = tempfile::tempdir().unwrap();
        let pg = urls.is_some();
        let urls = urls.unwrap_or_else(|| sqlite_urls(dir.path()));
        let stores = open_stores(urls.clone()).await;
        let mut raws = Vec::new();
        for url in &urls {
            raws.push(Raw::open(url).await);
        }
        let engine = Engine::new(stores.clone(), EngineOptions::default());
        let year_ahead = Hlc::from_wall_ms((Utc::now() + chrono::Duration::days(365)).timestamp_millis()).0;
        let (at_max, in_a_year) = (Uuid::now_v7(), Uuid::now_v7());
        raws[0].put(at_max, "Mil", 150_000, Some(i64::MAX), None).await;
        raws[0].put(in_a_year, "Sorgho", 150_000, Some(year_ahead), None).await;
        let before: Vec<i64> = futures::future::join_all(raws.iter().map(Raw::clock)).await;

        let report = engine.round().await;
        assert_eq!(report.status, dsms::sync::report::RoundStatus::Success, "pg={pg}");
        let tomorrow = Hlc::from_wall_ms((Utc::now() + chrono::Duration::days(1)).timestamp_millis()).0;
        for (i, store) in stores.iter().enumerate().skip(1) {
            for id in [at_max, in_a_year] {
                assert!(store.get(VenteId(id)).await.unwrap().is_none(), "pg={pg}: {} applied a refused version", store.region());
            }
            let clock = raws[i].clock().await;
            assert!(clock < tomorrow, "pg={pg}: {}'s clock moved ahead", store.region());
            assert!(clock <= before[i].max(Hlc::from_wall_ms(Utc::now().timestamp_millis()).0 + 0xFFFF), "pg={pg}");
            let items = store.quarantine(100).await.unwrap();
            for id in [at_max, in_a_year] {
                let item = items.iter().find(|q| q.id.0 == id).unwrap_or_else(|| panic!("pg={pg}: {} did not quarantine", store.region()));
                assert_eq!(item.source.as_str(), "Dakar");
                assert!(item.reason.contains("futur") || item.reason.contains("avance"), "{}", item.reason);
            }
        }
        assert!(raws[0].clock().await < tomorrow, "pg={pg}: Dakar's own clock was not moved either");

        // Writes keep working everywhere, and replicate.
        let mut written = Vec::new();
        for (i, store) in stores.iter().enumerate() {
            let write = LocalWrite::Create { id: VenteId::generate(), vente: new_vente(&stores, i, "Après", "10") };
            match store.write(&write, Utc::now()).await.unwrap() {
                WriteOutcome::Written(v) => written.push(v.id),
                other => panic!("{other:?}"),
            }
        }
        // On PostgreSQL a write must pass the stored version: the row at the clock's very end
        // cannot be overwritten there, a clear error, never a wrap. (SQLite stamps from its clock
        // row, which the hand-written version did not move: the write replaces it.)
        if pg {
            let update = LocalWrite::Update { id: VenteId(at_max), vente: new_vente(&stores, 0, "Mil", "10"), expect: Expect::Nothing };
            let error = stores[0].write(&update, Utc::now()).await.unwrap_err().to_string();
            assert!(error.contains("horloge saturée"), "pg={pg}: {error}");
        }
        engine.round().await;
        for store in &stores {
            for id in &written {
                assert!(store.get(*id).await.unwrap().is_some(), "pg={pg}: {} lacks {id:?}", store.region());
            }
        }

        // The year-ahead row brought back to now by its region leaves quarantine and replicates.
        raws[0].put(in_a_year, "Sorgho", 150_000, None, None).await;
        engine.round().await;
        for store in &stores[1..] {
            assert!(store.get(VenteId(in_a_year)).await.unwrap().is_some(), "pg={pg}: {}", store.region());
            let items = store.quarantine(100).await.unwrap();
            assert!(items.iter().all(|q| q.id.0 != in_a_year), "pg={pg}: still quarantined in {}", store.region());
            assert!(items.iter().any(|q| q.id.0 == at_max), "pg={pg}: the row at i64::MAX stays refused");
        }
    }
}

/// The physical milliseconds of the version in an ETag (`"hlc.origin"`).
fn etag_wall_ms(response: &reqwest::Response) -> i64 {
    let etag = response.headers()["etag"].to_str().unwrap().trim_matches('"').to_owned();
    let hlc: i64 = etag.split('.').next().unwrap().parse().unwrap();
    Hlc(hlc).wall_ms()
}

#[tokio::test]
async fn a_server_whose_clock_is_off_is_flagged_and_stamps_from_the_later_clock() {
    for backends in [Backends::Sqlite, Backends::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        let Some(config) = config_for(backends, dir.path()) else { continue };
        let context = format!("{backends:?}");
        // This server's clock runs an hour behind its databases'.
        let behind: dsms::domain::version::WallClock = Arc::new(|| Utc::now() - chrono::Duration::hours(1));
        let app = dsms::app::App::build_with_clock(config.clone(), behind).await.unwrap();
        let base = format!("http://{}", app.local_addr());
        let monitor = app.monitor();
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(app.run_until(stop.clone().cancelled_owned()));
        let http = reqwest::Client::new();

        monitor.probe_all().await;
        let stats: Value = http.get(format!("{base}/api/stats")).send().await.unwrap().json().await.unwrap();
        for region in ["Dakar", "Thies", "Saint-Louis"] {
            let r = &stats["regions"][region];
            assert_eq!(r["status"], "WARNING", "{context}: {region}");
            assert!(r["statusReason"].as_str().unwrap().contains("horloge décalée"), "{context}: {r}");
        }
        let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("dsms_clock_skew_exceeded{region=\"Dakar\"} 1"), "{context}");

        // Its writes are stamped from the database's clock, the later one: causality holds.
        let before = Utc::now().timestamp_millis();
        let body = crate::helpers::vente_body("Mil", serde_json::json!("100"), "2026-01-15", "Dakar");
        let response = http.post(format!("{base}/api/ventes")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201, "{context}");
        assert!(etag_wall_ms(&response) >= before - 1000, "{context}: stamped from the clock an hour behind");
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
}

#[tokio::test]
async fn a_target_holding_a_bad_copy_takes_a_newer_version_instead_of_failing_the_pair() {
    for urls in [None, pg_urls()] {
        let dir = tempfile::tempdir().unwrap();
        let pg = urls.is_some();
        let urls = urls.unwrap_or_else(|| sqlite_urls(dir.path()));
        let stores = open_stores(urls.clone()).await;
        let engine = Engine::new(stores.clone(), EngineOptions::default());
        let id = VenteId::generate();
        let created =
            match stores[0].write(&LocalWrite::Create { id, vente: new_vente(&stores, 0, "Mil", "10") }, Utc::now()).await.unwrap() {
                WriteOutcome::Written(v) => v,
                other => panic!("{other:?}"),
            };
        engine.round().await;

        // Thies's copy is broken by hand (same version), then Dakar edits the sale.
        Raw::open(&urls[1]).await.put(id.0, "   ", 1_000, Some(created.version.hlc.0), None).await;
        assert!(stores[1].get(id).await.unwrap().is_none(), "pg={pg}: a bad row reads as absent");
        assert_eq!(stores[1].quarantine(10).await.unwrap().len(), 1, "pg={pg}");
        let edit = LocalWrite::Update { id, vente: new_vente(&stores, 0, "Mil rouge", "12"), expect: Expect::Nothing };
        stores[0].write(&edit, Utc::now()).await.unwrap();
        let report = engine.round().await;
        assert!(report.pairs.iter().all(|p| p.error.is_none()), "pg={pg}: {:?}", report.pairs);
        for store in &stores {
            assert_eq!(store.get(id).await.unwrap().unwrap().produit.as_str(), "Mil rouge", "pg={pg}: {}", store.region());
        }
        assert!(stores[1].quarantine(10).await.unwrap().is_empty(), "pg={pg}: the copy was replaced, not quarantined any more");
    }
}
