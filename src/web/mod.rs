//! HTTP: the router, its shared state and layers. Owns: routes, body and time limits, JSON
//! fallbacks for unknown routes and methods. Leaves: handlers (api.rs), errors (error.rs).

pub mod analytics_api;
pub mod api;
pub mod error;
pub mod extract;
pub mod monitor_api;
pub mod openapi;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::monitor::{Monitor, NotReady};
use crate::ventes::Ventes;
use error::ApiError;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub ventes: Arc<Ventes>,
    pub monitor: Arc<Monitor>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/ventes", get(api::list).post(api::create).fallback(method_not_allowed))
        .route("/api/ventes/{id}", get(api::get).put(api::update).delete(api::delete).fallback(method_not_allowed))
        .route("/api/openapi.json", get(openapi::serve).fallback(method_not_allowed))
        .route("/healthz", get(healthz).fallback(method_not_allowed))
        .route("/readyz", get(readyz).fallback(method_not_allowed))
        .merge(monitor_api::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30)))
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal("panic".into()).into_response()))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(state.clone(), monitor_api::track_http))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("adresse inconnue".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "monitoring", responses((status = 200, description = "Processus vivant", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// At least one region answers and its migrations have run.
#[utoipa::path(get, path = "/readyz", tag = "monitoring",
    responses((status = 200, description = "Au moins une région joignable et migrée", body = String),
              (status = 503, description = "Aucune région joignable, ou migrations en attente", body = error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<(StatusCode, &'static str), ApiError> {
    match state.monitor.ready().await {
        Ok(()) => Ok((StatusCode::OK, "ready")),
        Err(NotReady::NoRegionReachable) => Err(ApiError::Unavailable("aucune région n'est joignable".into())),
        Err(NotReady::MigrationsPending) => {
            Err(ApiError::Unavailable("migrations en attente : aucune région joignable n'est encore à jour".into()))
        }
    }
}
