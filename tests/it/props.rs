//! Property tests: every valid product, amount, date and region round-trips exactly — through the
//! JSON API and through both stores — and every invalid one is a 422 naming its field. The
//! patterns the API document states agree with the parsing code. Cases: `DSMS_PROPTEST_CASES`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};
use dsms::config::{Config, DatabaseUrl};
use dsms::domain::lww::Seen;
use dsms::domain::vente::DateVente;
use dsms::domain::version::{Hlc, Version};
use dsms::domain::{Cursor, LocalWrite, WriteOutcome};
use dsms::domain::{Montant, NewVente, Produit, VenteId};
use dsms::store::{self, Limits, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{Value, json};

use crate::helpers::{ALL_BACKENDS, TestApp, assert_error, error_fields, montant_text, pg_database, spawn_app};

fn cases() -> u32 {
    std::env::var("DSMS_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64)
}

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// Characters from many scripts, spaces of several kinds included; no control characters.
fn produit_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => proptest::char::range(' ', '~'),
        1 => proptest::char::range('\u{a0}', '\u{24f}'),
        1 => prop::sample::select(vec!['\u{3000}', '\u{2009}', '\u{202f}', '\u{200b}', 'ب', '木', '🍲', 'ß', 'İ', 'ﬁ']),
        1 => any::<char>().prop_filter("no control characters", |c| !c.is_control()),
    ]
}

/// A valid product name as a client may send it (maybe padded with white space), and the name
/// as stored (trimmed).
fn valid_produit() -> impl Strategy<Value = (String, String)> {
    let padding = prop::sample::select(vec!["", " ", "  ", "\t", "\n", "\u{a0}", "\u{3000} "]);
    (prop::collection::vec(produit_char(), 1..=200), padding.clone(), padding)
        .prop_map(|(chars, left, right)| {
            let name: String = chars.into_iter().collect();
            (format!("{left}{name}{right}"), name.trim().to_owned())
        })
        .prop_filter("not blank", |(_, trimmed)| !trimmed.is_empty())
}

/// A valid amount in cents, and one way to write it in JSON (raw JSON text).
fn valid_montant() -> impl Strategy<Value = (i64, String)> {
    let cents = prop_oneof![1i64..=100_000, 1i64..1_000_000_000_000, Just(1), Just(999_999_999_999), Just(100), Just(10)];
    (cents, 0..5u8).prop_map(|(cents, form)| {
        let (units, fraction) = (cents / 100, cents % 100);
        let text = match form {
            0 => format!("{units}.{fraction:02}"),
            1 => format!("\"{units}.{fraction:02}\""),
            2 => format!("{cents}e-2"),
            3 => format!("{units}.{fraction:02}000"),
            _ if fraction == 0 => format!("\"{units}\""),
            _ if fraction % 10 == 0 => format!("{units}.{}", fraction / 10),
            _ => format!("{cents}E-2"),
        };
        (cents, text)
    })
}

/// A date from 1900-01-01 to tomorrow.
fn valid_date() -> impl Strategy<Value = NaiveDate> {
    let span = (DateVente::latest(today()) - DateVente::earliest()).num_days() as u64;
    prop_oneof![0..=span, Just(0), Just(span), (span - 400)..=span].prop_map(|d| DateVente::earliest() + Days::new(d))
}

/// A region as a client may spell it, and its configured name.
fn valid_region() -> impl Strategy<Value = (String, &'static str)> {
    prop::sample::select(vec![
        ("Dakar", "Dakar"),
        ("DAKAR", "Dakar"),
        (" dakar ", "Dakar"),
        ("Thies", "Thies"),
        ("Thiès", "Thies"),
        ("THIÈS", "Thies"),
        ("Saint-Louis", "Saint-Louis"),
        ("saint louis", "Saint-Louis"),
        ("Saint_Louis", "Saint-Louis"),
        ("SAINT.LOUIS", "Saint-Louis"),
    ])
    .prop_map(|(spelled, name)| (spelled.to_owned(), name))
}

#[derive(Clone, Debug)]
struct ValidSale {
    produit: (String, String),
    montant: (i64, String),
    date: NaiveDate,
    region: (String, &'static str),
}

fn valid_sale() -> impl Strategy<Value = ValidSale> {
    (valid_produit(), valid_montant(), valid_date(), valid_region()).prop_map(|(produit, montant, date, region)| ValidSale {
        produit,
        montant,
        date,
        region,
    })
}

impl ValidSale {
    fn body(&self) -> String {
        let produit = serde_json::to_string(&self.produit.0).unwrap();
        let region = serde_json::to_string(&self.region.0).unwrap();
        format!(r#"{{"produit": {produit}, "montant": {}, "dateVente": "{}", "region": {region}}}"#, self.montant.1, self.date)
    }

    fn expected_montant(&self) -> String {
        format!("{}.{:02}", self.montant.0 / 100, self.montant.0 % 100)
    }
}

async fn post_raw(app: &TestApp, body: String) -> reqwest::Response {
    app.send(reqwest::Method::POST, "/api/ventes", Some("application/json"), body.into_bytes()).await
}

#[test]
fn valid_sales_round_trip_exactly_through_the_api() {
    let rt = runtime();
    for backends in ALL_BACKENDS {
        let Some(app) = rt.block_on(spawn_app(backends)) else { continue };
        runner()
            .run(&valid_sale(), |sale| {
                rt.block_on(async {
                    let response = post_raw(&app, sale.body()).await;
                    prop_assert_eq!(response.status(), 201, "{:?}: {}", backends, sale.body());
                    let location = response.headers()["location"].to_str().unwrap().to_owned();
                    for text in [response.text().await.unwrap(), app.get(&location).await.text().await.unwrap()] {
                        let vente: Value = serde_json::from_str(&text).unwrap();
                        prop_assert_eq!(&vente["produit"], &json!(sale.produit.1), "{:?}", backends);
                        prop_assert_eq!(montant_text(&text), sale.expected_montant(), "{:?}", backends);
                        prop_assert_eq!(&vente["dateVente"], &json!(sale.date.to_string()), "{:?}", backends);
                        prop_assert_eq!(&vente["region"], &json!(sale.region.1), "{:?}", backends);
                    }
                    Ok(())
                })
            })
            .unwrap();
    }
}

#[derive(Clone, Debug)]
enum Invalid {
    Produit(String),
    Montant(String),
    Date(String),
    Region(String),
}

fn invalid_value() -> impl Strategy<Value = Invalid> {
    let blank = prop::sample::select(vec!["", " ", "\t\n", "\u{3000}\u{a0}"]).prop_map(|s| json!(s).to_string());
    let too_long = (201..400usize, produit_char().prop_filter("not white space", |c| !c.is_whitespace()))
        .prop_map(|(n, c)| json!(format!("x{}", c.to_string().repeat(n))).to_string());
    // A control character that is not white space (which trimming would remove at the edges).
    let control_char =
        (0u32..0xa0).prop_filter_map("control, not white space", |c| char::from_u32(c).filter(|c| c.is_control() && !c.is_whitespace()));
    let control = (valid_produit(), control_char, any::<prop::sample::Index>()).prop_map(|((_, name), c, at)| {
        let mut chars: Vec<char> = name.chars().collect();
        chars.insert(at.index(chars.len() + 1), c);
        json!(chars.into_iter().collect::<String>()).to_string()
    });
    let montant = prop_oneof![
        (0i64..1_000_000).prop_map(|n| format!("-{n}")),
        (0i64..1_000_000).prop_map(|n| format!("\"-{n}.5\"")),
        Just("0".to_owned()),
        Just("\"0.00\"".to_owned()),
        (1i64..1_000_000, 1u32..10).prop_map(|(n, d)| format!("{n}.{d:03}")),
        (1i64..1_000_000, 1u32..10).prop_map(|(n, d)| format!("\"{n}.0{d}5\"")),
        (0i64..1_000_000_000).prop_map(|n| format!("{}", 10_000_000_000 + n)),
        (0i64..1_000).prop_map(|n| format!("\"{}.00\"", 10_000_000_000i64 + n)),
        (10u32..400).prop_map(|e| format!("1e{e}")),
        (3u32..400).prop_map(|e| format!("1e-{e}")),
        "[a-zA-Z ]{1,12}".prop_map(|s| json!(s).to_string()),
        Just("true".to_owned()),
        Just("{}".to_owned()),
    ];
    let date = prop_oneof![
        (2u64..100_000).prop_map(|d| (today() + Days::new(d)).to_string()),
        (1u64..100_000).prop_map(|d| (DateVente::earliest() - Days::new(d)).format("%Y-%m-%d").to_string()),
        "[0-9/ .-]{0,12}",
        Just("2026-02-30".to_owned()),
        Just("2026-1-5".to_owned()),
    ]
    .prop_map(|d| json!(d).to_string());
    let region = "[A-Za-z -]{0,20}"
        .prop_filter("not a configured region", |r| {
            let key = dsms::domain::RegionName::key_of(r);
            !["dakar", "thies", "saintlouis"].contains(&key.as_str())
        })
        .prop_map(|r| json!(r).to_string());
    prop_oneof![
        blank.prop_map(Invalid::Produit),
        too_long.prop_map(Invalid::Produit),
        control.prop_map(Invalid::Produit),
        montant.prop_map(Invalid::Montant),
        date.prop_map(Invalid::Date),
        region.prop_map(Invalid::Region),
    ]
}

#[test]
fn invalid_values_get_a_422_naming_their_field() {
    let rt = runtime();
    for backends in ALL_BACKENDS {
        let Some(app) = rt.block_on(spawn_app(backends)) else { continue };
        runner()
            .run(&invalid_value(), |invalid| {
                let (field, produit, montant, date, region) = match &invalid {
                    Invalid::Produit(p) => ("produit", p.as_str(), "1500", "\"2026-01-15\"", "\"Dakar\""),
                    Invalid::Montant(m) => ("montant", "\"Riz\"", m.as_str(), "\"2026-01-15\"", "\"Dakar\""),
                    Invalid::Date(d) => ("dateVente", "\"Riz\"", "1500", d.as_str(), "\"Dakar\""),
                    Invalid::Region(r) => ("region", "\"Riz\"", "1500", "\"2026-01-15\"", r.as_str()),
                };
                let body = format!(r#"{{"produit": {produit}, "montant": {montant}, "dateVente": {date}, "region": {region}}}"#);
                rt.block_on(async {
                    let error = assert_error(post_raw(&app, body.clone()).await, 422, "validation", &body).await;
                    prop_assert_eq!(error_fields(&error), [field], "{:?}: {}", backends, body);
                    Ok(())
                })
            })
            .unwrap();
        let listed: Value = rt.block_on(async { app.get("/api/ventes").await.json().await.unwrap() });
        assert_eq!(listed["items"], json!([]), "{backends:?}: nothing invalid was written");
    }
}

/// One SQLite and (when available) one PostgreSQL region store, opened directly.
fn stores(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Vec<Arc<dyn Store>> {
    let mut urls = vec![("Dakar", DatabaseUrl::Sqlite(dir.join("props.db")))];
    if let Some(url) = pg_database() {
        urls.push(("Thies", DatabaseUrl::Postgres(url)));
    }
    let config = Config::with_regions(urls);
    let limits = Limits { connect_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(30) };
    config
        .regions
        .iter()
        .map(|region| {
            rt.block_on(async {
                let store = store::open(region, limits).await.unwrap();
                store.migrate().await.unwrap();
                store
            })
        })
        .collect()
}

#[test]
fn valid_sales_round_trip_exactly_through_both_stores_and_between_them() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let stores = stores(&rt, dir.path());
    let regions = Config::embedded(dir.path()).region_names();
    runner()
        .run(&valid_sale(), |sale| {
            let new = NewVente {
                produit: Produit::parse(&sale.produit.0).unwrap(),
                montant: Montant::from_cents(sale.montant.0).unwrap(),
                date_vente: DateVente::new(sale.date, today()).unwrap(),
                region: regions.resolve(&sale.region.0).unwrap().clone(),
            };
            prop_assert_eq!(new.produit.as_str(), sale.produit.1.as_str());
            prop_assert_eq!(new.montant.to_string(), sale.expected_montant());
            rt.block_on(async {
                for (i, store) in stores.iter().enumerate() {
                    let id = VenteId::generate();
                    let outcome = store.write(&LocalWrite::Create { id, vente: new.clone() }, Utc::now()).await.unwrap();
                    let WriteOutcome::Written(written) = outcome else { panic!("{:?}: not written: {outcome:?}", store.backend()) };
                    prop_assert!(written.same_content(&new));
                    prop_assert_eq!(store.get(id).await.unwrap(), Some(written.clone()), "{:?}", store.backend());
                    // Replicated to the other backend, the row is the same, version and time included.
                    let other = &stores[(i + 1) % stores.len()];
                    other.apply(&dsms::store::Batch::push(vec![written.clone()])).await.unwrap();
                    prop_assert_eq!(other.get(id).await.unwrap(), Some(written.clone()), "{:?}", other.backend());
                    // Batch writes keep the content exactly too.
                    let batch = store.write_many(&[(VenteId::generate(), new.clone())], Utc::now()).await.unwrap();
                    prop_assert_eq!(store.get(batch[0].id).await.unwrap(), Some(batch[0].clone()));
                }
                Ok(())
            })
        })
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() * 16, failure_persistence: None, ..ProptestConfig::default() })]

    /// The API document's `produit` pattern is exactly `Produit::parse`.
    #[test]
    fn the_documented_produit_pattern_is_the_rule(
        text in prop_oneof![
            prop::collection::vec(produit_char(), 0..210).prop_map(|c| c.into_iter().collect::<String>()),
            valid_produit().prop_map(|(sent, _)| sent),
            any::<String>(),
            "[ \t\n\u{1c}\u{85}\u{a0}a\u{0}\u{7f}\u{9f}]{0,6}",
        ]
    ) {
        let pattern = regex::Regex::new(Produit::PATTERN).unwrap();
        prop_assert_eq!(pattern.is_match(&text), Produit::parse(&text).is_ok(), "{:?}", text);
    }

    /// A region's first write to a row stores `Seen::first_write_prefix` followed by its clock
    /// value: the PostgreSQL create that completes it in SQL stores what `Seen::after` says.
    #[test]
    fn a_first_write_history_is_its_prefix_and_clock(origin in prop_oneof![any::<String>(), "[%=;a-z ]{0,8}"], hlc in any::<i64>()) {
        let config = Config::with_regions(vec![(origin.as_str(), DatabaseUrl::Sqlite("x".into()))]);
        let origin = config.region_names().iter().next().cloned().unwrap();
        let version = Version { hlc: Hlc(hlc), origin: origin.clone() };
        prop_assert_eq!(format!("{}{hlc}", Seen::first_write_prefix(&origin)), Seen::after(None, &version).encode());
    }

    /// The documented plain form of a string amount is exactly `Montant::parse_plain`.
    #[test]
    fn the_documented_montant_pattern_is_the_rule(text in prop_oneof!["[0-9.eE+ -]{0,14}", "0{0,2}[1-9]?[0-9]{0,11}(\\.[0-9]{0,3})?"]) {
        let pattern = regex::Regex::new(Montant::PLAIN_PATTERN).unwrap();
        prop_assert_eq!(pattern.is_match(&text), Montant::parse_plain(&text).is_ok(), "{:?}", text);
    }

    /// Any JSON number text is read exactly: as a decimal with a reference implementation.
    #[test]
    fn amounts_are_read_exactly(int in "[0-9]{1,14}", frac in "[0-9]{0,6}", exp in -12i32..12) {
        let text = if frac.is_empty() { format!("{int}e{exp}") } else { format!("{int}.{frac}e{exp}") };
        let digits: String = format!("{int}{frac}");
        let value = rust_decimal::Decimal::from_i128_with_scale(digits.parse::<i128>().unwrap(), frac.len() as u32);
        let power = rust_decimal::Decimal::from(10i64.pow(exp.unsigned_abs()));
        let scaled = if exp >= 0 { value.checked_mul(power) } else { value.checked_div(power) };
        prop_assume!(scaled.is_some(), "beyond the reference's 28 digits");
        let expected = Montant::from_decimal(scaled.unwrap());
        prop_assert_eq!(text.parse::<Montant>(), expected, "{}", text);
    }

    /// The documented cursor pattern is exactly what `Cursor::decode` reads.
    #[test]
    fn the_documented_cursor_pattern_is_the_rule(text in prop_oneof![
        "[0-9]{0,17}_[0-9a-fA-F-]{30,38}",
        "[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        any::<String>(),
    ]) {
        let pattern = regex::Regex::new(Cursor::PATTERN).unwrap();
        prop_assert_eq!(pattern.is_match(&text), Cursor::decode(&text).is_some(), "{:?}", text);
    }
}
