//! `GET /api/quarantine`: the rows the regions have set aside instead of blocking (undecodable
//! rows, versions too far in the future). Handlers only: extract, call `Ventes`, map.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::QueryOf;
use super::list_query::read_limit;
use super::{AppState, openapi};
use crate::domain::quarantine::Quarantined;

/// A row set aside by a region.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineJson {
    /// The region whose database holds the item (shown WARNING while it does).
    #[schema(example = "Thies")]
    pub region: String,
    /// The sale's id.
    pub id: uuid::Uuid,
    /// Why, in French.
    #[schema(example = "produit invalide : le produit est obligatoire")]
    pub reason: String,
    /// When the region first met it (ISO-8601, UTC).
    pub detected_at: DateTime<Utc>,
    /// When it was last met (a feed or a listing that left it out).
    pub last_seen: DateTime<Utc>,
    /// The region the row belongs to: `region` itself for a row it cannot decode, the sending
    /// region for a version it refused.
    #[schema(example = "Dakar")]
    pub source: String,
    /// The row as found or as received (JSON text), for whoever fixes it.
    pub raw: String,
}

impl From<&Quarantined> for QuarantineJson {
    fn from(q: &Quarantined) -> Self {
        Self {
            region: q.region.to_string(),
            id: q.id.0,
            reason: q.reason.clone(),
            detected_at: q.detected_at,
            last_seen: q.last_seen,
            source: q.source.to_string(),
            raw: q.raw.clone(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuarantineParams {
    /// At most this many, newest first (1 to 500, default 100).
    #[param(schema_with = openapi::conflicts_limit_schema)]
    pub limit: Option<String>,
}

/// The quarantine of every reachable region, newest first: rows a region cannot decode (written
/// around dsms's rules) and versions it refused (too far in the future). Each leaves once fixed.
#[utoipa::path(get, path = "/api/quarantine", tag = "sync", params(QuarantineParams),
    responses(
        (status = 200, description = "Lignes en quarantaine", body = Vec<QuarantineJson>),
        (status = 400, description = "Requête mal formée", body = ErrorBody),
        (status = 422, description = "Paramètre invalide", body = ErrorBody),
        (status = 503, description = "Aucune région joignable", body = ErrorBody),
    ))]
pub async fn quarantine(
    State(state): State<AppState>,
    QueryOf(params): QueryOf<QuarantineParams>,
) -> Result<Json<Vec<QuarantineJson>>, ApiError> {
    let limit = read_limit(params.limit.as_deref(), 100, 500).map_err(|e| ApiError::Invalid(vec![e]))?;
    let all = state.ventes.quarantine(limit).await.ok_or_else(|| ApiError::Unavailable("aucune région n'est joignable".into()))?;
    Ok(Json(all.iter().map(QuarantineJson::from).collect()))
}
