//! A client's create on PostgreSQL is one statement in autocommit (issue 15: the write a client
//! waits for is one round trip): the clock row stamped and the row inserted together. What that
//! statement cannot decide alone — an id already stored, a clock at its end — goes through the
//! full write, with the same outcomes as before.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use dsms::config::{Config, DatabaseUrl};
use dsms::domain::vente::DateVente;
use dsms::domain::{LocalWrite, Montant, NewVente, Produit, VenteId, WriteOutcome};
use dsms::store::{self, Limits, Store};
use dsms::testkit::proxy::DelayProxy;

use crate::helpers::pg_database;

async fn pg_store(url: &str) -> Arc<dyn Store> {
    let config = Config::with_regions(vec![("Dakar", DatabaseUrl::Postgres(url.to_string()))]);
    let limits = Limits { connect_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(30) };
    store::open(&config.regions[0], limits).await.unwrap()
}

fn new_vente(produit: &str) -> NewVente {
    NewVente {
        produit: Produit::parse(produit).unwrap(),
        montant: Montant::parse_plain("1500.50").unwrap(),
        date_vente: DateVente::from_stored(NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()),
        region: Config::with_regions(vec![("Thiès", DatabaseUrl::Sqlite("x".into()))]).region_names().iter().next().cloned().unwrap(),
    }
}

async fn create(store: &dyn Store, id: VenteId, produit: &str) -> Result<WriteOutcome, dsms::store::StoreError> {
    store.write(&LocalWrite::Create { id, vente: new_vente(produit) }, Utc::now()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_one_round_trip_and_what_it_cannot_decide_goes_the_full_way() {
    let Some(url) = pg_database() else { return };
    let direct = sqlx::PgPool::connect(&url).await.unwrap();
    pg_store(&url).await.migrate().await.unwrap();
    let (proxy, through) = DelayProxy::in_front_of(&url, Duration::from_millis(1)).await.unwrap();
    let store = pg_store(&through).await;
    // One connection is open and the statement prepared on it, as on a running server.
    create(store.as_ref(), VenteId::generate(), "Mil").await.unwrap();

    let id = VenteId::generate();
    let before = proxy.round_trips();
    let WriteOutcome::Written(created) = create(store.as_ref(), id, "Riz brisé").await.unwrap() else { panic!("not written") };
    assert_eq!(proxy.round_trips() - before, 1, "a create's round trips");
    // What the client is answered is what the region holds, history included.
    assert_eq!(store.get(id).await.unwrap().as_ref(), Some(&created));
    assert_eq!(created.version.origin.as_str(), "Dakar");
    assert_eq!(created.seen.encode(), format!("Dakar={}", created.version.hlc.0));

    // The same create again is a replay; another sale under that id is refused.
    assert!(matches!(create(store.as_ref(), id, "Riz brisé").await.unwrap(), WriteOutcome::Unchanged(v) if v == created));
    assert!(matches!(create(store.as_ref(), id, "Sorgho").await.unwrap(), WriteOutcome::IdTaken(v) if v == created));

    // A clock that cannot take one more value: the create is refused, and writes nothing.
    sqlx::query("UPDATE dsms_clock SET hlc = $1").bind(i64::MAX).execute(&direct).await.unwrap();
    let refused = VenteId::generate();
    let error = create(store.as_ref(), refused, "Maïs").await.unwrap_err();
    assert!(error.to_string().contains("horloge saturée"), "{error}");
    assert_eq!(store.get(refused).await.unwrap(), None);
    let (clock,): (i64,) = sqlx::query_as("SELECT hlc FROM dsms_clock").fetch_one(&direct).await.unwrap();
    assert_eq!(clock, i64::MAX);
}
