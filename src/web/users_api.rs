//! `GET /api/users`: the users and their roles, for administrators (never a hash or a token).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// A user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserJson {
    #[schema(example = "awa")]
    pub name: String,
    /// `lecteur`, `vendeur` or `admin`.
    #[schema(example = "vendeur")]
    pub role: String,
    pub created_at: DateTime<Utc>,
    /// API tokens the user holds.
    pub tokens: u64,
}

/// The users, by name.
#[utoipa::path(get, path = "/api/users", tag = "utilisateurs",
    responses((status = 200, description = "Utilisateurs", body = Vec<UserJson>),
              (status = 503, description = "Base d'état illisible", body = ErrorBody)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<UserJson>>, ApiError> {
    let users = state.auth.users().await.map_err(|error| {
        tracing::error!(%error, "base d'état illisible");
        ApiError::Unavailable("la liste des utilisateurs est illisible pour le moment ; réessayez".into())
    })?;
    Ok(Json(
        users
            .into_iter()
            .map(|u| UserJson { name: u.name, role: u.role.as_str().to_owned(), created_at: u.created_at, tokens: u.tokens })
            .collect(),
    ))
}
