//! Sync on demand and the conflict log: handlers only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::api::VenteJson;
use super::error::{ApiError, ErrorBody};
use super::extract::QueryOf;
use super::list_query::read_limit;
use super::{AppState, openapi};
use crate::domain::lww::Conflict;
use crate::sync::report::{RoundReport, RoundStatus};
use crate::sync::scheduler::Requested;

/// One region's part in a round.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionReportJson {
    pub region: String,
    /// True when the region took part in the round.
    pub ok: bool,
    /// Why it could not, in French.
    pub error: Option<String>,
    pub latency_ms: Option<f64>,
    /// Rows written into this region during the round.
    pub rows_applied: u64,
    /// Rows known to remain in this region's feed (the round hit its deadline), a lower bound.
    pub pending: u64,
    /// Round trips the round made to this region's database (statements that waited for an
    /// answer; 0 for a local SQLite file).
    pub round_trips: u64,
}

/// Rows moved from one region to another.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairReportJson {
    pub source: String,
    pub target: String,
    /// Changes read from the source's feed for the target (versions the target itself had sent
    /// to the source are not read back).
    pub rows_read: u64,
    /// Changes of the source's feed not read because the target already held them (copies the
    /// source had received from a region whose feed the target had already read).
    pub rows_skipped: u64,
    /// Rows the target wrote (versions newer than those it held).
    pub rows_applied: u64,
    pub error: Option<String>,
}

/// The report of one sync round.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoundJson {
    /// `success` (every region synced), `partial` (some were unreachable; the others synced), `failed`.
    #[schema(value_type = String, example = "success")]
    pub status: RoundStatus,
    pub started_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub rows_applied: u64,
    /// Conflicts newly logged during the round.
    pub conflicts: u64,
    /// Round trips made to the regions' databases, all together.
    pub round_trips: u64,
    /// Which regions failed and why; null on success.
    pub error: Option<String>,
    pub regions: Vec<RegionReportJson>,
    pub pairs: Vec<PairReportJson>,
}

impl From<&RoundReport> for RoundJson {
    fn from(r: &RoundReport) -> Self {
        Self {
            status: r.status,
            started_at: r.started_at,
            duration_ms: r.duration.as_secs_f64() * 1000.0,
            rows_applied: r.rows_applied(),
            conflicts: r.conflicts,
            round_trips: r.round_trips(),
            error: r.error_summary(),
            regions: r
                .regions
                .iter()
                .map(|g| RegionReportJson {
                    region: g.region.to_string(),
                    ok: g.reached(),
                    error: g.error.clone(),
                    latency_ms: g.latency.map(|l| l.as_secs_f64() * 1000.0),
                    rows_applied: g.rows_applied,
                    pending: g.pending,
                    round_trips: g.round_trips,
                })
                .collect(),
            pairs: r
                .pairs
                .iter()
                .map(|p| PairReportJson {
                    source: p.source.to_string(),
                    target: p.target.to_string(),
                    rows_read: p.rows_read,
                    rows_skipped: p.rows_skipped,
                    rows_applied: p.rows_applied,
                    error: p.error.clone(),
                })
                .collect(),
        }
    }
}

/// A round asked for by a request and still running when it was answered (202).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoundRunningJson {
    /// Always `running`.
    #[schema(example = "running")]
    pub status: &'static str,
    /// The round started at or after this time (to the millisecond).
    pub since: DateTime<Utc>,
    /// Where its report will appear (also in `Location`): the history of the rounds started since
    /// the request, newest first; the request's round is the oldest of them.
    #[schema(example = "/api/stats/history?since=2026-11-24T10:15:30.123Z")]
    pub report: String,
    /// What is happening, in French.
    pub message: String,
}

/// The history of the rounds started at or after `since`, where a running round's report appears.
pub fn history_link(since: DateTime<Utc>) -> String {
    format!("/api/stats/history?since={}", since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Runs a sync round now (after the one in progress, if any) and returns its report; a round
/// still running after `sync_request_wait` (10 s) goes on in its own task to completion, and the
/// answer is 202 with where its report will be. The request must be declared JSON
/// (`Content-Type: application/json`; the body is ignored), so that a cross-site form cannot
/// trigger it.
#[utoipa::path(post, path = "/api/sync", tag = "sync",
    request_body(content = Object, content_type = "application/json",
        description = "Corps ignoré ; la requête doit être déclarée JSON (un formulaire d'un autre site ne peut donc pas lancer de synchronisation)."),
    responses((status = 200, description = "Rapport de la synchronisation (même partielle ou échouée)", body = RoundJson),
              (status = 202, description = "La synchronisation dure plus que l'attente (`sync_request_wait`) : elle continue jusqu'au bout ; \
                  son rapport apparaîtra dans l'historique indiqué par `Location`",
               body = RoundRunningJson,
               headers(("Location" = String, description = "L'historique des synchronisations commencées depuis la demande"))),
              (status = 415, description = "Requête non déclarée JSON", body = ErrorBody)))]
pub async fn sync_now(State(state): State<AppState>, _json: super::extract::DeclaredJson) -> Result<Response, ApiError> {
    match state.scheduler.request_round().await {
        Requested::Done(report) => Ok(Json(RoundJson::from(&report)).into_response()),
        Requested::Running { since } => {
            let report = history_link(since);
            let message = "La synchronisation continue en arrière-plan ; son rapport apparaîtra dans l'historique.".to_owned();
            let body = RoundRunningJson { status: "running", since, report: report.clone(), message };
            Ok((StatusCode::ACCEPTED, [(LOCATION, report)], Json(body)).into_response())
        }
        Requested::Lost(message) => Err(ApiError::Internal(message)),
    }
}

/// A version of a sale in a conflict.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictSideJson {
    #[serde(flatten)]
    pub vente: VenteJson,
    /// The version, as in the sale's ETag.
    pub version: String,
    /// The region whose database stamped this version.
    pub origin: String,
}

/// A write overwritten by a concurrent one (neither writer had seen the other).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictJson {
    pub id: uuid::Uuid,
    pub winner: ConflictSideJson,
    pub loser: ConflictSideJson,
    pub detected_in: String,
    pub detected_at: DateTime<Utc>,
}

impl From<&Conflict> for ConflictJson {
    fn from(c: &Conflict) -> Self {
        let side = |v: &crate::domain::Vente| ConflictSideJson {
            vente: VenteJson::from(v),
            version: v.version.to_string(),
            origin: v.version.origin.to_string(),
        };
        Self {
            id: c.loser.id.0,
            winner: side(&c.winner),
            loser: side(&c.loser),
            detected_in: c.detected_in.to_string(),
            detected_at: c.detected_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConflictParams {
    /// At most this many, newest first (1 to 500, default 100).
    #[param(schema_with = openapi::conflicts_limit_schema)]
    pub limit: Option<String>,
}

/// The conflict log of every reachable region, each lost write once, newest first.
#[utoipa::path(get, path = "/api/conflicts", tag = "sync", params(ConflictParams),
    responses(
        (status = 200, description = "Conflits", body = Vec<ConflictJson>),
        (status = 400, description = "Requête mal formée", body = ErrorBody),
        (status = 422, description = "Paramètre invalide", body = ErrorBody),
        (status = 503, description = "Aucune région joignable", body = ErrorBody),
    ))]
pub async fn conflicts(
    State(state): State<AppState>,
    QueryOf(params): QueryOf<ConflictParams>,
) -> Result<Json<Vec<ConflictJson>>, ApiError> {
    let limit = read_limit(params.limit.as_deref(), 100, 500).map_err(|e| ApiError::Invalid(vec![e]))?;
    let all = state.ventes.conflicts(limit).await.ok_or_else(|| ApiError::Unavailable("aucune région n'est joignable".into()))?;
    Ok(Json(all.iter().map(ConflictJson::from).collect()))
}
