//! The OpenAPI 3.1 document, generated from the handlers' own annotations and types.

use axum::Json;
use utoipa::OpenApi;

use super::error::ErrorBody;
use super::{analytics_api as a, api, monitor_api as m};

#[derive(OpenApi)]
#[openapi(
    info(title = "dsms", description = "Gestion des ventes multi-régions : API JSON"),
    paths(api::list, api::create, api::get, api::update, api::delete, super::healthz, super::readyz, serve,
          m::stats, m::stats_history, a::analytics, m::drill, m::prometheus),
    components(schemas(api::VenteJson, api::VenteInput, api::VentePage, ErrorBody,
                       m::StatsJson, m::RegionJson, m::StatusJson, m::HistoryJson, m::RoundStatusJson,
                       a::AnalyticsJson, a::RegionAnalyticsJson, a::TodayJson, a::DayJson, m::DrillInput, m::DrillJson)),
    tags((name = "ventes", description = "Ventes"), (name = "monitoring", description = "Santé et supervision"))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "monitoring", responses((status = 200, description = "Document OpenAPI 3.1", body = Object)))]
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
