//! A write pushed to another region is one message (issue 15): on PostgreSQL one call of
//! `dsms_apply` in autocommit, counted on the wire by the delaying proxy; and it judges every row
//! exactly as the full apply does, its SQL history test agreeing with `Seen::includes`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate};
use dsms::config::{Config, DatabaseUrl};
use dsms::domain::lww::Seen;
use dsms::domain::vente::DateVente;
use dsms::domain::version::{Hlc, Version};
use dsms::domain::{Montant, Produit, RegionName, Vente, VenteId};
use dsms::store::{self, Batch, Limits, Store};
use dsms::testkit::proxy::DelayProxy;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

use crate::helpers::pg_database;

fn limits() -> Limits {
    Limits { connect_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(30) }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn runner() -> TestRunner {
    let cases = std::env::var("DSMS_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64);
    TestRunner::new(ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() })
}

/// Region names whose encoded form needs escaping, and two that differ only bytewise.
const NAMES: [&str; 5] = ["Dakar", "dakar", "Thiès", "a=b;c", "50%"];

fn names() -> Vec<RegionName> {
    let config = Config::with_regions(NAMES.iter().map(|n| (*n, DatabaseUrl::Sqlite("x".into()))).collect());
    config.region_names().iter().cloned().collect()
}

async fn pg_store(url: &str) -> Arc<dyn Store> {
    let config = Config::with_regions(vec![("Thies", DatabaseUrl::Postgres(url.to_string()))]);
    let store = store::open(&config.regions[0], limits()).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// A history: for some regions, the greatest clock value of their writes seen.
fn history() -> impl Strategy<Value = Vec<(usize, i64)>> {
    proptest::collection::vec((0..NAMES.len(), 0..6i64), 0..5)
}

fn seen_of(names: &[RegionName], entries: &[(usize, i64)]) -> Seen {
    entries.iter().fold(Seen::default(), |seen, (region, hlc)| {
        let hlc = seen.iter().find(|(r, _)| **r == names[*region]).map_or(*hlc, |(_, h)| h.0.max(*hlc));
        Seen::after(Some(&seen), &Version { hlc: Hlc(hlc), origin: names[*region].clone() })
    })
}

#[test]
fn the_sql_history_test_agrees_with_the_rule() {
    let Some(url) = pg_database() else { return };
    let rt = runtime();
    let pool = rt.block_on(async {
        pg_store(&url).await;
        sqlx::PgPool::connect(&url).await.unwrap()
    });
    let names = names();
    runner()
        .run(&(history(), history()), |(a, b)| {
            let (a, b) = (seen_of(&names, &a), seen_of(&names, &b));
            let (sql,): (bool,) = rt
                .block_on(sqlx::query_as("SELECT dsms_seen_includes($1, $2)").bind(a.encode()).bind(b.encode()).fetch_one(&pool))
                .unwrap();
            prop_assert_eq!(sql, a.includes(&b), "{} includes {}?", a.encode(), b.encode());
            Ok(())
        })
        .unwrap();
    // Text that does not parse includes nothing and is included by nothing, without an error.
    for (a, b) in [("Dakar=x", "Dakar=1"), ("Dakar=1", "Dakar"), ("Dakar=99999999999999999999", ""), ("", "=")] {
        let (sql,): (bool,) = rt.block_on(sqlx::query_as("SELECT dsms_seen_includes($1, $2)").bind(a).bind(b).fetch_one(&pool)).unwrap();
        assert!(!sql || (b.is_empty() && Seen::decode(a).is_some()), "{a} includes {b}?");
    }
}

/// Versions of one sale, each written on top of an earlier one (or on nothing): `(hlc, origin,
/// base)`, base an index among the earlier ones (none when out of range).
fn versions() -> impl Strategy<Value = Vec<(i64, usize, usize)>> {
    proptest::collection::vec((0..6i64, 0..NAMES.len(), 0..8usize), 1..7)
}

fn build(names: &[RegionName], id: VenteId, spec: &[(i64, usize, usize)]) -> Vec<Vente> {
    let mut rows: Vec<Vente> = Vec::new();
    for &(hlc, origin, base) in spec {
        let version = Version { hlc: Hlc(1_000_000 + hlc), origin: names[origin].clone() };
        if rows.iter().any(|r| r.version == version) {
            continue; // versions are unique
        }
        let base = rows.get(base).map(|r| r.seen.clone());
        rows.push(Vente {
            id,
            produit: Produit::parse(&format!("v{hlc}-{origin}")).unwrap(),
            montant: Montant::from_cents(100 + hlc).unwrap(),
            date_vente: DateVente::from_stored(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()),
            region: names[0].clone(),
            updated_at: DateTime::from_timestamp_micros(1_764_000_000_000_000 + hlc).unwrap(),
            deleted: hlc % 3 == 0,
            seen: Seen::after(base.as_ref(), &version),
            version,
        });
    }
    rows
}

#[test]
fn a_push_judges_every_row_as_the_full_apply_does() {
    let (Some(pushed), Some(applied)) = (pg_database(), pg_database()) else { return };
    let rt = runtime();
    let (pushed, applied) = rt.block_on(async { (pg_store(&pushed).await, pg_store(&applied).await) });
    let names = names();
    runner()
        .run(&versions(), |spec| {
            let id = VenteId::generate();
            let rows = build(&names, id, &spec);
            rt.block_on(async {
                let mut conflicts = (0, 0);
                for row in &rows {
                    let by_push = pushed.push(std::slice::from_ref(row)).await.unwrap();
                    let by_apply = applied.apply(&Batch::push(vec![row.clone()])).await.unwrap();
                    prop_assert_eq!(by_push.rows, by_apply.rows, "rows written for {:?}", row.version);
                    conflicts.0 += by_push.conflicts;
                    conflicts.1 += by_apply.conflicts;
                }
                prop_assert_eq!(conflicts.0, conflicts.1);
                prop_assert_eq!(pushed.get(id).await.unwrap(), applied.get(id).await.unwrap());
                Ok(())
            })
        })
        .unwrap();
}

fn sale(names: &[RegionName], hlc: i64, base: Option<&Vente>) -> Vente {
    let version = Version { hlc: Hlc(2_000_000 + hlc), origin: names[0].clone() };
    Vente {
        id: base.map_or_else(VenteId::generate, |b| b.id),
        produit: Produit::parse("Mil").unwrap(),
        montant: Montant::from_cents(1_000 + hlc).unwrap(),
        date_vente: DateVente::from_stored(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()),
        region: names[0].clone(),
        updated_at: DateTime::from_timestamp_micros(1_764_000_000_000_000 + hlc).unwrap(),
        deleted: false,
        seen: Seen::after(base.map(|b| &b.seen), &version),
        version,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_crosses_the_link_in_one_round_trip() {
    let Some(url) = pg_database() else { return };
    pg_store(&url).await;
    let (proxy, through) = DelayProxy::in_front_of(&url, Duration::from_millis(1)).await.unwrap();
    let remote = pg_store(&through).await;
    let names = names();
    // The connection is open and the statement prepared once, as on a running server.
    let first = sale(&names, 1, None);
    assert_eq!(remote.push(std::slice::from_ref(&first)).await.unwrap().rows, 1);
    let new = sale(&names, 2, None);
    let edit = sale(&names, 3, Some(&new));
    for (what, row, written) in [("a new sale", &new, 1), ("an edit", &edit, 1), ("an echo", &edit, 0), ("an older version", &new, 0)] {
        let before = proxy.round_trips();
        let applied = remote.push(std::slice::from_ref(row)).await.unwrap();
        assert_eq!(applied.rows, written, "{what}");
        assert_eq!(proxy.round_trips() - before, 1, "{what}: round trips");
    }
    assert_eq!(remote.get(edit.id).await.unwrap(), Some(edit));
}

/// Polls until `reached` holds (the pool's checks of connections given back land just after).
async fn eventually(reached: impl Fn() -> bool) {
    for _ in 0..500 {
        if reached() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_round_at_home_makes_at_most_two_round_trips_per_pair_and_reports_them() {
    use dsms::sync::engine::{Engine, EngineOptions};
    // A cluster of its own: transaction ids are the whole server's, so another test's transaction
    // still running at the contact would make the round wait for it (one more statement).
    let Some(cluster) = crate::helpers::private_cluster().await else { return };
    let database = |name: &str| cluster.create_database(name).unwrap();
    let (dakar, thies, saint_louis) = (database("dakar"), database("thies"), database("saint_louis"));
    let mut proxies = Vec::new();
    let mut urls = vec![dakar];
    for url in [thies, saint_louis] {
        pg_store(&url).await;
        let (proxy, through) = DelayProxy::in_front_of(&url, Duration::from_millis(1)).await.unwrap();
        proxies.push(proxy);
        urls.push(through);
    }
    let config =
        Config::with_regions(["Dakar", "Thies", "Saint-Louis"].into_iter().zip(urls.into_iter().map(DatabaseUrl::Postgres)).collect());
    let mut stores = Vec::new();
    for region in &config.regions {
        let store = store::open(region, limits()).await.unwrap();
        store.migrate().await.unwrap();
        stores.push(store);
    }
    let names = names();
    stores[1].push(&[sale(&names, 1, None)]).await.unwrap();
    let home = config.region_names().resolve("Dakar").cloned();
    let engine = Engine::new(stores.clone(), EngineOptions::default()).with_home(home);
    // The catch-up, then idle rounds: connections open, statements prepared.
    assert_eq!(engine.round().await.rows_applied(), 1);
    for _ in 0..3 {
        engine.round().await;
    }

    let before: Vec<u64> = proxies.iter().map(DelayProxy::round_trips).collect();
    let idle = engine.round().await;
    assert_eq!(idle.rows_applied(), 0);
    for (i, proxy) in proxies.iter().enumerate() {
        let reported = idle.regions[i + 1].round_trips;
        // One pair reads each remote region: its first contact, one feed page.
        assert!((1..=2).contains(&reported), "{}: {reported} round trips", idle.regions[i + 1].region);
        // On the wire: those statements, each followed by the pool's check of the connection
        // given back (after the answer, off the round's path), and at most one preparation each
        // (the first time a pooled connection runs it).
        eventually(|| proxy.round_trips() - before[i] >= 2 * reported).await;
        let wire = proxy.round_trips() - before[i];
        assert!((2 * reported..=3 * reported).contains(&wire), "{}: {wire} on the wire", idle.regions[i + 1].region);
    }
    assert_eq!(idle.round_trips(), idle.regions.iter().map(|r| r.round_trips).sum::<u64>());
}

#[test]
fn a_small_batch_in_one_message_judges_and_moves_the_cursor_as_the_full_apply_on_sqlite() {
    use dsms::store::{FeedPosition, Source};
    let Some(url) = pg_database() else { return };
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (pg, sqlite) = rt.block_on(async {
        let config = Config::with_regions(vec![("Thies", DatabaseUrl::Sqlite(dir.path().join("thies.db")))]);
        let sqlite = store::open(&config.regions[0], limits()).await.unwrap();
        sqlite.migrate().await.unwrap();
        (pg_store(&url).await, sqlite)
    });
    let names = names();
    let source = Source { region: names[2].clone(), db_id: uuid::Uuid::new_v4() };
    let end = std::sync::atomic::AtomicI64::new(0);
    runner()
        .run(&(versions(), versions()), |(a, b)| {
            // Two sales, their versions arriving in small batches from one source's feed.
            let (x, y) = (VenteId::generate(), VenteId::generate());
            let rows: Vec<Vente> = build(&names, x, &a).into_iter().chain(build(&names, y, &b)).collect();
            rt.block_on(async {
                for chunk in rows.chunks(3) {
                    let end = end.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    let batch =
                        Batch { rows: chunk.to_vec(), from: Some((source.clone(), FeedPosition { pos: end, id: x.0 })), epoch: None };
                    let (one, full) = (pg.apply(&batch).await.unwrap(), sqlite.apply(&batch).await.unwrap());
                    prop_assert_eq!(one, full, "batch ending at {}", end);
                    prop_assert_eq!(pg.cursor(&source).await.unwrap(), FeedPosition { pos: end, id: x.0 });
                }
                for id in [x, y] {
                    prop_assert_eq!(pg.get(id).await.unwrap(), sqlite.get(id).await.unwrap());
                }
                Ok(())
            })
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_after_the_server_restarted_gets_through_on_a_new_connection() {
    if pg_database().is_none() {
        return;
    }
    // Durable: the restart must keep what was committed (the migrations among it).
    let cluster = tokio::task::spawn_blocking(dsms::testkit::pg::PgCluster::start_durable).await.unwrap().unwrap();
    let url = cluster.create_database("ventes").unwrap();
    let store = pg_store(&url).await;
    let names = names();
    let first = sale(&names, 1, None);
    assert_eq!(store.push(std::slice::from_ref(&first)).await.unwrap().rows, 1);
    // The connection kept for pushes dies with the server.
    cluster.stop_immediate().unwrap();
    cluster.restart().unwrap();
    let second = sale(&names, 2, None);
    assert_eq!(store.push(std::slice::from_ref(&second)).await.unwrap().rows, 1);
    assert_eq!(store.get(second.id).await.unwrap(), Some(second));
}
