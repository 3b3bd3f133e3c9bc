//! `GET /api/analytics`: per-region sales figures with exact amounts, served from the monitor's
//! cache (`X-Cache: hit|miss`). Handler extracts, calls the `Monitor`, maps to JSON.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::AppState;
use super::api::VenteJson;
use super::error::{ApiError, ErrorBody};
use super::monitor_api::Ordered;
use crate::domain::DaySales;
use crate::monitor::analytics::{Analytics, CacheOutcome, RegionAnalytics};

/// An exact amount as a JSON number (`750000.50`), never through a float.
fn exact(value: Decimal) -> Box<RawValue> {
    let mut value = value;
    value.rescale(2);
    RawValue::from_string(value.to_string()).unwrap_or_else(|_| Box::<RawValue>::default())
}

/// Sales of one day.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayJson {
    pub date: NaiveDate,
    pub count: u64,
    /// Exact total in FCFA.
    #[schema(value_type = f64, example = 1500.50)]
    pub total: Box<RawValue>,
}

impl From<&DaySales> for DayJson {
    fn from(d: &DaySales) -> Self {
        Self { date: d.date, count: d.count, total: exact(d.total) }
    }
}

/// Figures of one region (sales whose `region` is it).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionAnalyticsJson {
    /// Live sales.
    pub count: u64,
    /// Exact sum of `montant`, FCFA.
    #[schema(value_type = f64, example = 1500000.50)]
    pub total: Box<RawValue>,
    /// `total / count` rounded to the cent (half away from zero); 0 without sales.
    #[schema(value_type = f64, example = 750000.25)]
    pub average: Box<RawValue>,
    /// Sales dated today (UTC).
    pub today: TodayJson,
    /// The 10 newest writes, newest first.
    pub recent: Vec<VenteJson>,
    /// The last 30 days, oldest first, today included, days without sales at 0.
    pub per_day: Vec<DayJson>,
}

/// Sales dated today.
#[derive(Debug, Serialize, ToSchema)]
pub struct TodayJson {
    pub count: u64,
    #[schema(value_type = f64, example = 25000.00)]
    pub total: Box<RawValue>,
}

impl From<&RegionAnalytics> for RegionAnalyticsJson {
    fn from(r: &RegionAnalytics) -> Self {
        Self {
            count: r.count,
            total: exact(r.total),
            average: exact(r.average),
            today: TodayJson { count: r.today_count, total: exact(r.today_total) },
            recent: r.recent.iter().map(VenteJson::from).collect(),
            per_day: r.per_day.iter().map(DayJson::from).collect(),
        }
    }
}

/// `GET /api/analytics`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsJson {
    /// The region whose database answered (the first reachable one).
    pub source: String,
    /// When these figures were computed (they are cached until the next write or applied round).
    pub computed_at: DateTime<Utc>,
    /// Today (UTC), the last day of `perDay`.
    pub today: NaiveDate,
    /// Keyed by region, configured regions first in configuration order.
    #[schema(value_type = std::collections::HashMap<String, RegionAnalyticsJson>)]
    pub regions: Ordered<RegionAnalyticsJson>,
    /// Every region together; `recent` holds the 10 newest writes overall.
    pub all: RegionAnalyticsJson,
}

impl From<&Analytics> for AnalyticsJson {
    fn from(a: &Analytics) -> Self {
        Self {
            source: a.source.to_string(),
            computed_at: a.computed_at,
            today: a.today,
            regions: Ordered(a.regions.iter().map(|r| (r.region.to_string(), RegionAnalyticsJson::from(r))).collect()),
            all: RegionAnalyticsJson::from(&a.all),
        }
    }
}

/// Per region: count, exact total and average, today's sales, the 10 newest, the last 30 days.
/// Served from a cache emptied by every write and every round that applied rows.
#[utoipa::path(get, path = "/api/analytics", tag = "monitoring",
    responses((status = 200, description = "Analyse des ventes", body = AnalyticsJson,
                headers(("X-Cache" = String, description = "hit (servi par le cache) ou miss (calculé)"))),
              (status = 503, description = "Aucune région joignable", body = ErrorBody)))]
pub async fn analytics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (answer, outcome) = state.monitor.analytics().await?;
    let mut response = Json(AnalyticsJson::from(answer.as_ref())).into_response();
    let cache = if outcome == CacheOutcome::Hit { "hit" } else { "miss" };
    response.headers_mut().insert("x-cache", HeaderValue::from_static(cache));
    Ok(response)
}
