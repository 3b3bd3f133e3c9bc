//! The OpenAPI 3.1 document, generated from the handlers' own annotations and types, and exact:
//! every text rule the handlers apply is stated as a schema (patterns taken from the domain
//! types), and the parts that depend on the running server — the configured regions, today's
//! latest acceptable sale date — are filled in when the document is served.
//! Owns: the document and the schemas of text rules. Leaves: the rules themselves (domain/).

use axum::Json;
use axum::extract::State;
use chrono::{Datelike, NaiveDate};
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type};

use super::AppState;
use super::error::ErrorBody;
use super::extract::IfMatch;
use super::{analytics_api as a, api, monitor_api as m, quarantine_api as q, sync_api};
use crate::domain::Cursor;
use crate::domain::vente::DateVente;
use crate::domain::{Montant, Produit, Regions};

#[derive(OpenApi)]
#[openapi(
    info(title = "dsms", description = "Gestion des ventes multi-régions : API JSON"),
    paths(api::list, api::create, api::get, api::update, api::delete, sync_api::sync_now, sync_api::conflicts, q::quarantine,
          super::healthz, super::readyz, serve, m::stats, m::stats_history, a::analytics, m::drill, m::prometheus,
          super::users_api::list),
    components(schemas(api::VenteJson, api::VenteInput, api::VentePage, ErrorBody,
                       m::StatsJson, m::RegionJson, m::StatusJson, m::HistoryJson, m::RoundStatusJson,
                       a::AnalyticsJson, a::RegionAnalyticsJson, a::TodayJson, a::DayJson, m::DrillInput, m::DrillJson,
                       super::users_api::UserJson, q::QuarantineJson)),
    tags((name = "ventes", description = "Ventes"), (name = "sync", description = "Réplication entre régions"),
         (name = "monitoring", description = "Santé et supervision"), (name = "utilisateurs", description = "Utilisateurs et rôles"))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "monitoring", responses((status = 200, description = "Document OpenAPI 3.1", body = Object)))]
pub async fn serve(State(state): State<AppState>) -> Json<Value> {
    // While no user exists, authentication is off and the document says so; if that cannot be
    // read, the document claims the stricter rule.
    let anonymous = !state.auth.enabled().await.unwrap_or(true);
    Json(document(state.ventes.regions(), state.ventes.today(), anonymous))
}

/// The document for a server with these regions, on this day; `anonymous`: whether calls without
/// credentials are accepted (no user exists yet).
pub fn document(regions: &Regions, today: NaiveDate, anonymous: bool) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    let names: Vec<&str> = regions.iter().map(|r| r.as_str()).collect();
    let region = json!({ "type": "string", "enum": names });
    for schema in ["VenteInput", "VenteJson"] {
        if let Some(slot) = doc.pointer_mut(&format!("/components/schemas/{schema}/properties/region")) {
            merge(slot, &region);
        }
    }
    if let Some(slot) = doc.pointer_mut("/components/schemas/VenteInput/properties/dateVente") {
        merge(slot, &json!({ "pattern": date_pattern(DateVente::earliest(), DateVente::latest(today)) }));
    }
    // `POST /api/sync` ignores its body: any JSON value is accepted (only the content type counts).
    if let Some(slot) = doc.pointer_mut("/paths/~1api~1sync/post/requestBody/content/application~1json/schema") {
        *slot = json!({});
    }
    // Unknown members are refused (each named), as `deny_unknown_fields` would.
    for schema in ["VenteInput", "DrillInput"] {
        if let Some(slot) = doc.pointer_mut(&format!("/components/schemas/{schema}")) {
            merge(slot, &json!({ "additionalProperties": false }));
        }
    }
    let list_params = doc.pointer_mut("/paths/~1api~1ventes/get/parameters").and_then(Value::as_array_mut);
    for param in list_params.into_iter().flatten() {
        if param["name"] == "region" {
            param["schema"] = json!({ "anyOf": [region, empty()] });
        }
    }
    super::auth::document_security(&mut doc, anonymous);
    doc
}

/// Adds `extra`'s members to the object `slot`.
fn merge(slot: &mut Value, extra: &Value) {
    if let (Some(slot), Some(extra)) = (slot.as_object_mut(), extra.as_object()) {
        slot.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

/// An empty query parameter (`?to=`), which means "no filter".
fn empty() -> Value {
    json!({ "type": "string", "maxLength": 0 })
}

fn empty_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).max_length(Some(0))
}

pub fn produit_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(Produit::PATTERN))
        .description(Some("Nom du produit : espaces de bord retirés, puis 1 à 200 caractères, sans caractère de contrôle."))
        .examples([json!("Riz brisé 50 kg")])
        .into()
}

const MAX_MONTANT: f64 = 9_999_999_999.99;

/// The amount in a request: a JSON number, or a string in plain decimal form.
pub fn montant_input_schema() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new().schema_type(Type::Number).exclusive_minimum(Some(0.0)).maximum(Some(MAX_MONTANT)).multiple_of(Some(0.01)),
        )
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(Montant::PLAIN_PATTERN)))
        .description(Some("Montant en FCFA : > 0, 2 décimales au plus, < 10^10 ; un nombre JSON ou une chaîne (\"750000.50\")."))
        .examples([json!(750000.50), json!("1500")])
        .into()
}

/// The amount in a response: a JSON number written exactly, always with two decimals.
pub fn montant_output_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .exclusive_minimum(Some(0.0))
        .maximum(Some(MAX_MONTANT))
        .multiple_of(Some(0.01))
        .description(Some("Montant exact en FCFA, écrit avec deux décimales (750000.50)."))
        .examples([json!(750000.50)])
        .into()
}

/// `deleted` in a request: `false` or null (deleting is `DELETE`'s job).
pub fn not_deleted_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]))
        .enum_values(Some([json!(false), Value::Null]))
        .description(Some("Seulement false (ou null) : pour supprimer une vente, utilisez DELETE."))
        .into()
}

pub fn if_match_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(IfMatch::PATTERN))
        .description(Some("ETag attendu (ou *) : si la vente a changé depuis, 412."))
        .examples([json!("\"1.dakar\""), json!("*")])
        .into()
}

/// A page size: an integer from 1 to `max` (`default` when absent or empty).
fn limit(max: u32, default: u32) -> Schema {
    AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(max)))
        .item(empty_schema())
        .description(Some(format!("Entier de 1 à {max} ({default} si absent ou vide).")))
        .into()
}

pub fn limit_schema() -> Schema {
    limit(api::MAX_LIMIT, api::DEFAULT_LIMIT)
}

pub fn conflicts_limit_schema() -> Schema {
    limit(500, 100)
}

pub fn history_limit_schema() -> Schema {
    limit(u32::try_from(crate::monitor::stats::HISTORY_KEPT).unwrap_or(u32::MAX), 100)
}

pub fn since_schema() -> Schema {
    AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))))
        .item(empty_schema())
        .description(Some("Seulement les synchronisations commencées à partir de cet instant (RFC 3339)."))
        .into()
}

pub fn cursor_schema() -> Schema {
    AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(Cursor::PATTERN)))
        .item(empty_schema())
        .description(Some("Le nextCursor de la page précédente."))
        .into()
}

pub fn date_filter_schema() -> Schema {
    AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))))
        .item(empty_schema())
        .description(Some("Date de vente (AAAA-MM-JJ), bornes incluses."))
        .into()
}

pub fn q_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(api::MAX_Q_CHARS))
        .description(Some("Texte cherché dans le nom du produit, sans tenir compte de la casse ni des accents."))
        .into()
}

/// A regular expression matching exactly the `YYYY-MM-DD` texts from `earliest` (a 1 January) to
/// `latest`, for calendar dates (`format: date` rules out 30 February and month 13).
fn date_pattern(earliest: NaiveDate, latest: NaiveDate) -> String {
    const MONTH: &str = "(?:0[1-9]|1[0-2])";
    const DAY: &str = "(?:0[1-9]|[12][0-9]|3[01])";
    let (year, month, day) = (latest.year(), latest.month(), latest.day());
    let mut alternatives = Vec::new();
    if year > earliest.year() {
        alternatives.push(format!("{}-{MONTH}-{DAY}", digits_between(&format!("{:04}", earliest.year()), &format!("{:04}", year - 1))));
    }
    if month > 1 {
        alternatives.push(format!("{year:04}-{}-{DAY}", digits_between("01", &format!("{:02}", month - 1))));
    }
    alternatives.push(format!("{year:04}-{month:02}-{}", digits_between("01", &format!("{day:02}"))));
    format!("^(?:{})$", alternatives.join("|"))
}

/// A regular expression for the digit strings of `lo`'s width from `lo` to `hi` (`lo <= hi`).
fn digits_between(lo: &str, hi: &str) -> String {
    let (Some(l), Some(h)) = (lo.chars().next(), hi.chars().next()) else { return String::new() };
    let (lo_rest, hi_rest) = (&lo[1..], &hi[1..]);
    let width = lo_rest.len();
    if lo_rest.bytes().all(|b| b == b'0') && hi_rest.bytes().all(|b| b == b'9') {
        let first = if l == h { l.to_string() } else { format!("[{l}-{h}]") };
        return if width == 0 { first } else { format!("{first}[0-9]{{{width}}}") };
    }
    if l == h {
        return format!("{l}{}", digits_between(lo_rest, hi_rest));
    }
    let mut alternatives = vec![format!("{l}{}", digits_between(lo_rest, &"9".repeat(width)))];
    let (next, before) = (char::from(l as u8 + 1), char::from(h as u8 - 1));
    if next <= before {
        alternatives.push(format!("[{next}-{before}][0-9]{{{width}}}"));
    }
    alternatives.push(format!("{h}{}", digits_between(&"0".repeat(width), hi_rest)));
    format!("(?:{})", alternatives.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn digit_ranges_are_exact() {
        let re = regex::Regex::new(&format!("^(?:{})$", digits_between("1900", "2026"))).unwrap();
        for n in 0..10_000 {
            assert_eq!(re.is_match(&format!("{n:04}")), (1900..=2026).contains(&n), "{n}");
        }
        assert_eq!(digits_between("01", "09"), "0[1-9]");
        assert_eq!(digits_between("01", "31"), "(?:0[1-9]|[1-2][0-9]{1}|3[0-1])");
    }

    #[test]
    fn the_date_pattern_accepts_exactly_the_sale_dates() {
        for latest in [date(2026, 11, 27), date(2027, 1, 1), date(2026, 12, 31), date(2026, 3, 9)] {
            let re = regex::Regex::new(&date_pattern(DateVente::earliest(), latest)).unwrap();
            let mut day = date(1899, 12, 25);
            while day < date(2028, 1, 10) {
                let text = day.format("%Y-%m-%d").to_string();
                assert_eq!(re.is_match(&text), (DateVente::earliest()..=latest).contains(&day), "{text} ≤ {latest}");
                day = day.succ_opt().unwrap();
            }
        }
    }
}
