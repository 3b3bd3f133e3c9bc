//! HTTP: the router, its shared state and layers. Owns: routes, body and time limits, fallbacks
//! for unknown routes (JSON, or the HTML page for browsers) and methods. Leaves: handlers
//! (api.rs, pages.rs), errors (error.rs).

pub mod analytics_api;
pub mod api;
pub mod auth;
pub mod error;
pub mod extract;
pub mod list_query;
pub mod monitor_api;
pub mod openapi;
pub mod pages;
pub mod quarantine_api;
pub mod server;
pub mod sync_api;
pub mod tls;
pub mod users_api;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::monitor::{Monitor, NotReady};
use crate::ventes::Ventes;
use error::ApiError;

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;
/// A request still unanswered after this gets a 503 (in the JSON error shape).
pub const TIME_LIMIT: Duration = Duration::from_secs(30);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub ventes: Arc<Ventes>,
    pub monitor: Arc<Monitor>,
    pub scheduler: Arc<crate::sync::scheduler::Scheduler>,
    /// Users, tokens and sessions (authentication is on once one user exists).
    pub auth: Arc<crate::auth::Auth>,
    /// The host names requests may address.
    pub hosts: Arc<server::AllowedHosts>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/ventes", get(api::list).post(api::create).fallback(method_not_allowed))
        .route("/api/ventes/{id}", get(api::get).put(api::update).delete(api::delete).fallback(method_not_allowed))
        .route("/api/sync", post(sync_api::sync_now).fallback(method_not_allowed))
        .route("/api/conflicts", get(sync_api::conflicts).fallback(method_not_allowed))
        .route("/api/quarantine", get(quarantine_api::quarantine).fallback(method_not_allowed))
        .route("/api/openapi.json", get(openapi::serve).fallback(method_not_allowed))
        .route("/healthz", get(healthz).fallback(method_not_allowed))
        .route("/readyz", get(readyz).fallback(method_not_allowed))
        .route("/api/users", get(users_api::list).fallback(method_not_allowed))
        .merge(monitor_api::routes())
        .merge(pages::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(axum::middleware::from_fn(time_limit))
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal("panic".into()).into_response()))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(state.clone(), monitor_api::track_http))
        .layer(axum::middleware::from_fn_with_state(state.hosts.clone(), server::check_host))
        .with_state(state)
}

async fn time_limit(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    match tokio::time::timeout(TIME_LIMIT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable("la requête a pris trop de temps ; réessayez".into()).into_response(),
    }
}

/// Unknown addresses: the French HTML page for a browser, JSON for everyone else.
async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    if pages::wants_html(&uri, &headers) {
        pages::not_found().into_response()
    } else {
        ApiError::NotFound("adresse inconnue".into()).into_response()
    }
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
