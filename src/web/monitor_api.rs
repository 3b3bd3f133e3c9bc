//! The monitoring API: `/api/stats` (the guide's shape and names, extended, never renamed),
//! `/api/stats/history`, the outage drill and `/metrics`, plus the middleware counting every HTTP
//! request; routes `/api/analytics` (analytics_api.rs). Handlers extract, call the `Monitor`, map.

use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, Member, QueryOf, Unknown, unknown_fields};
use super::list_query::read_limit;
use super::{AppState, method_not_allowed, openapi};
use crate::monitor::health::{self, Status};
use crate::monitor::stats::{HISTORY_KEPT, HistoryEntry};
use crate::monitor::{MonitorError, RegionSnapshot, StatsSnapshot, metrics};

use crate::domain::Backend;
use crate::sync::report::RoundStatus;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/stats", get(stats).fallback(method_not_allowed))
        .route("/api/stats/history", get(stats_history).fallback(method_not_allowed))
        .route("/api/analytics", get(super::analytics_api::analytics).fallback(method_not_allowed))
        .route("/api/regions/{name}/drill", post(drill).fallback(method_not_allowed))
        .route("/metrics", get(prometheus).fallback(method_not_allowed))
}

/// A JSON object whose keys keep the configuration order of the regions.
#[derive(Debug)]
pub struct Ordered<T>(pub Vec<(String, T)>);

impl<T: Serialize> Serialize for Ordered<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// `GET /api/stats`: the guide's names first, in its order; extensions after.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsJson {
    /// Sync rounds since the first start (survives restarts).
    #[schema(example = 45)]
    pub total_syncs: u64,
    /// Rounds that reached every region.
    #[schema(example = 43)]
    pub successful_syncs: u64,
    /// Rounds that missed at least one region (partial) or could sync nothing (failed).
    #[schema(example = 2)]
    pub failed_syncs: u64,
    /// Percent of successful rounds, one decimal, rounded half up; 0 before the first round.
    #[schema(example = 95.6)]
    pub success_rate: f64,
    /// Start of the last round (ISO-8601, UTC); null before the first round.
    #[schema(required = true)]
    pub last_sync_time: Option<DateTime<Utc>>,
    /// Duration of the last round in milliseconds; 0 before the first round.
    #[schema(example = 234)]
    pub last_sync_duration: u64,
    /// Live sales now (in the first reachable region).
    #[schema(example = 127)]
    pub total_ventes: u64,
    /// Sales created through this server since the first start.
    #[schema(example = 50)]
    pub ventes_crees: u64,
    #[schema(example = 12)]
    pub ventes_modifiees: u64,
    #[schema(example = 3)]
    pub ventes_supprimees: u64,
    /// Per region, keyed by display name, in configuration order.
    #[schema(value_type = std::collections::HashMap<String, RegionJson>)]
    pub regions: Ordered<RegionJson>,
    /// The 10 newest rounds, newest first.
    pub sync_history: Vec<HistoryJson>,
}

/// A region's status.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusJson {
    /// Reachable and healthy.
    Online,
    /// Reachable, but recent errors, slow answers, lag or clock offset above the bound.
    Warning,
    /// The latest contact failed.
    Offline,
}

impl From<Status> for StatusJson {
    fn from(status: Status) -> Self {
        match status {
            Status::Online => Self::Online,
            Status::Warning => Self::Warning,
            Status::Offline => Self::Offline,
        }
    }
}

/// One region in `/api/stats`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionJson {
    pub status: StatusJson,
    /// Failed contacts (sync rounds and health probes) since the first start.
    pub errors: u64,
    /// Last successful contact (ISO-8601, UTC); null if never reached.
    #[schema(required = true)]
    pub last_access: Option<DateTime<Utc>>,
    /// Why the region is WARNING or OFFLINE (French); null when ONLINE.
    #[schema(required = true)]
    pub status_reason: Option<String>,
    /// Cause of the last failed contact (French); null if none ever failed.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// Live sales in this region's database at the last probe; null if not counted yet.
    #[schema(required = true)]
    pub ventes: Option<u64>,
    /// Changes this region holds that another region has not received yet (last round); null before one.
    #[schema(required = true)]
    pub pending: Option<u64>,
    /// Round trip of the last successful contact, in milliseconds.
    #[schema(required = true)]
    pub latency_ms: Option<f64>,
    /// The database clock minus this server's, in milliseconds (corrected by half the round trip).
    #[schema(required = true)]
    pub clock_offset_ms: Option<i64>,
    /// Rows in this region's quarantine at the last probe (`GET /api/quarantine`); null before one.
    #[schema(required = true)]
    pub quarantined: Option<u64>,
    /// An outage drill is on: the server treats the region as unreachable.
    pub drill: bool,
    #[schema(example = "postgres")]
    pub backend: &'static str,
}

/// One round in the history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryJson {
    /// When the round started (ISO-8601, UTC).
    pub timestamp: DateTime<Utc>,
    pub status: RoundStatusJson,
    /// Milliseconds.
    #[schema(example = 234)]
    pub duration: u64,
    /// Which regions failed and why (French); null on success.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Rows written into each region by the round, keyed by region.
    #[schema(value_type = std::collections::HashMap<String, u64>)]
    pub rows_applied: Ordered<u64>,
    /// Conflicts logged during the round.
    pub conflicts: u64,
}

/// A round's outcome.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoundStatusJson {
    /// Every region reached.
    Success,
    /// Some regions failed; the others synced.
    Partial,
    /// Nothing could be synced.
    Failed,
}

/// Whole milliseconds, rounded half up.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros().saturating_add(500) / 1000).unwrap_or(u64::MAX)
}

impl From<&HistoryEntry> for HistoryJson {
    fn from(entry: &HistoryEntry) -> Self {
        let status = match entry.status {
            RoundStatus::Success => RoundStatusJson::Success,
            RoundStatus::Partial => RoundStatusJson::Partial,
            RoundStatus::Failed => RoundStatusJson::Failed,
        };
        Self {
            timestamp: entry.started_at,
            status,
            duration: millis(entry.duration),
            error: entry.error.clone(),
            rows_applied: Ordered(entry.rows_applied.iter().map(|(r, n)| (r.to_string(), *n)).collect()),
            conflicts: entry.conflicts,
        }
    }
}

impl From<&RegionSnapshot> for RegionJson {
    fn from(r: &RegionSnapshot) -> Self {
        Self {
            status: r.status.into(),
            errors: r.errors,
            last_access: r.last_access,
            status_reason: r.reason.clone(),
            last_error: r.last_error.clone(),
            ventes: r.ventes,
            pending: r.pending,
            latency_ms: r.latency.map(|l| (l.as_secs_f64() * 100_000.0).round() / 100.0),
            clock_offset_ms: r.clock_offset.map(|o| (health::offset_seconds(o) * 1000.0).round() as i64),
            quarantined: r.quarantined,
            drill: r.drill,
            backend: match r.backend {
                Backend::Postgres => "postgres",
                Backend::Sqlite => "sqlite",
            },
        }
    }
}

impl From<StatsSnapshot> for StatsJson {
    fn from(s: StatsSnapshot) -> Self {
        Self {
            total_syncs: s.counters.total_syncs,
            successful_syncs: s.counters.successful_syncs,
            failed_syncs: s.counters.failed_syncs,
            success_rate: s.success_rate,
            last_sync_time: s.last_sync.map(|(at, _)| at),
            last_sync_duration: s.last_sync.map_or(0, |(_, d)| millis(d)),
            total_ventes: s.total_ventes,
            ventes_crees: s.counters.ventes_crees,
            ventes_modifiees: s.counters.ventes_modifiees,
            ventes_supprimees: s.counters.ventes_supprimees,
            regions: Ordered(s.regions.iter().map(|r| (r.region.to_string(), RegionJson::from(r))).collect()),
            sync_history: s.history.iter().map(HistoryJson::from).collect(),
        }
    }
}

impl From<MonitorError> for ApiError {
    fn from(error: MonitorError) -> Self {
        match error {
            MonitorError::UnknownRegion { .. } => Self::NotFound(error.to_string()),
            MonitorError::NoRegionReachable => Self::Unavailable("aucune région n'est joignable pour le moment ; réessayez".into()),
            MonitorError::Store(e) => e.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Sync statistics, region health, CRUD counters and the last rounds.
#[utoipa::path(get, path = "/api/stats", tag = "monitoring",
    responses((status = 200, description = "Statistiques (noms du guide, étendus)", body = StatsJson)))]
pub async fn stats(State(state): State<AppState>) -> Json<StatsJson> {
    Json(state.monitor.stats().await.into())
}

/// History query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// How many rounds, 1 to 1000 (default 100).
    #[param(schema_with = openapi::history_limit_schema)]
    pub limit: Option<String>,
    /// Only rounds started at or after this time (RFC 3339), e.g. the `Location` of a 202 from
    /// `POST /api/sync`: the round it started is the oldest listed.
    #[param(schema_with = openapi::since_schema)]
    pub since: Option<String>,
}

/// The newest rounds, newest first (1,000 are kept), for charts.
#[utoipa::path(get, path = "/api/stats/history", tag = "monitoring", params(HistoryParams),
    responses((status = 200, description = "Historique des synchronisations", body = Vec<HistoryJson>),
              (status = 400, description = "Requête mal formée (paramètre répété)", body = ErrorBody),
              (status = 422, description = "limit invalide", body = ErrorBody)))]
pub async fn stats_history(
    State(state): State<AppState>,
    QueryOf(params): QueryOf<HistoryParams>,
) -> Result<Json<Vec<HistoryJson>>, ApiError> {
    let max = u32::try_from(HISTORY_KEPT).unwrap_or(u32::MAX);
    let limit = read_limit(params.limit.as_deref(), 100, max).map_err(|e| ApiError::Invalid(vec![e]))? as usize;
    let since = match params.since.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => Some(DateTime::parse_from_rfc3339(text).map_err(|_| {
            ApiError::invalid(
                "since",
                format!("« {} » n'est pas une date-heure RFC 3339 (2026-11-24T10:15:30Z)", super::extract::truncate(text, 40)),
            )
        })?),
    };
    let history = state.monitor.history(HISTORY_KEPT);
    let kept = history.iter().filter(|e| since.is_none_or(|since| e.started_at >= since)).take(limit);
    Ok(Json(kept.map(HistoryJson::from).collect()))
}

/// The drill toggle. Unknown members are refused, each named.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DrillInput {
    /// `true` starts an outage drill (the region is treated as unreachable), `false` lifts it.
    #[serde(default)]
    #[schema(required = true, value_type = bool)]
    pub down: Member,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// A region after a drill toggle (probed at once).
#[derive(Debug, Serialize, ToSchema)]
pub struct DrillJson {
    #[schema(example = "Thies")]
    pub region: String,
    #[serde(flatten)]
    pub state: RegionJson,
}

/// Starts or lifts an outage drill: the server treats the region as unreachable (reads, writes,
/// sync, probes) until lifted; its data is untouched. A restart lifts every drill.
#[utoipa::path(post, path = "/api/regions/{name}/drill", tag = "monitoring", request_body = DrillInput,
    params(("name" = String, Path, description = "Région (casse, accents et ponctuation ignorés)")),
    responses((status = 200, description = "État de la région après le changement", body = DrillJson),
              (status = 400, description = "JSON mal formé", body = ErrorBody),
              (status = 404, description = "Région inconnue", body = ErrorBody),
              (status = 413, description = "Corps trop grand (64 Kio)", body = ErrorBody),
              (status = 415, description = "Corps non JSON", body = ErrorBody),
              (status = 422, description = "down absent ou non booléen", body = ErrorBody)))]
pub async fn drill(
    State(state): State<AppState>,
    Path(name): Path<String>,
    AppJson(body): AppJson<DrillInput>,
) -> Result<Json<DrillJson>, ApiError> {
    let mut errors = unknown_fields(&body.unknown);
    let down = match body.down {
        Member::Bool(down) => Some(down),
        _ => None,
    };
    if down.is_none() {
        errors.push(crate::domain::FieldError::new("down", "booléen attendu (true ou false)"));
    }
    let (Some(down), true) = (down, errors.is_empty()) else { return Err(ApiError::Invalid(errors)) };
    let region = state.monitor.set_drill(&name, down).await?;
    Ok(Json(DrillJson { region: region.region.to_string(), state: RegionJson::from(&region) }))
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "Métriques Prometheus", body = String, content_type = "text/plain")))]
pub async fn prometheus(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.monitor.render_metrics()?;
    Ok(([(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE))], text).into_response())
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// Counts every request by method, matched route template (`/api/ventes/{id}`, never the raw
/// URL; `unmatched` for unknown addresses) and status, and times it.
pub async fn track_http(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state.monitor.metrics().http(method, route, response.status().as_str(), started.elapsed());
    response
}
