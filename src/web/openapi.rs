//! The OpenAPI 3.1 document, generated from the handlers' own annotations and types.

use axum::Json;
use utoipa::OpenApi;

use super::api;
use super::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(title = "dsms", description = "Gestion des ventes multi-régions : API JSON"),
    paths(api::list, api::create, api::get, api::update, api::delete, super::sync_api::sync_now, super::sync_api::conflicts, super::healthz, super::readyz, serve),
    components(schemas(api::VenteJson, api::VenteInput, api::VentePage, ErrorBody)),
    tags((name = "ventes", description = "Ventes"), (name = "sync", description = "Réplication entre régions"), (name = "monitoring", description = "Santé et supervision"))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "monitoring", responses((status = 200, description = "Document OpenAPI 3.1", body = Object)))]
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
