//! Every HTTP error, mapped in one place to a status, a code and a French message:
//! `{"error": "<code>", "message": "<français>", "details": …}`. Only 5xx are logged.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::FieldError;
use crate::store::StoreError;
use crate::ventes::VenteError;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine code: `malformed`, `not_found`, `conflict`, `precondition_failed`,
    /// `payload_too_large`, `unsupported_media_type`, `validation`, `unavailable`, `internal`,
    /// `method_not_allowed`, `unauthorized`, `forbidden`, `too_many_requests`, `misdirected`.
    #[schema(example = "validation")]
    pub error: &'static str,
    /// What went wrong, in French, for a person.
    #[schema(example = "données invalides : montant")]
    pub message: String,
    /// For `validation`: the fields at fault. For `conflict`/`precondition_failed`: the current sale's id.
    /// Otherwise null.
    #[schema(value_type = Object, nullable)]
    pub details: serde_json::Value,
}

#[derive(Debug)]
pub enum ApiError {
    Malformed(String),
    NotFound(String),
    Conflict(String, serde_json::Value),
    PreconditionFailed(String, serde_json::Value),
    PayloadTooLarge,
    UnsupportedMediaType,
    Invalid(Vec<FieldError>),
    Unavailable(String),
    MethodNotAllowed,
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(..) => StatusCode::CONFLICT,
            Self::PreconditionFailed(..) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(self) -> ErrorBody {
        let (error, message, details) = match self {
            Self::Malformed(m) => ("malformed", format!("requête mal formée : {m}"), serde_json::Value::Null),
            Self::NotFound(m) => ("not_found", m, serde_json::Value::Null),
            Self::Conflict(m, d) => ("conflict", m, d),
            Self::PreconditionFailed(m, d) => ("precondition_failed", m, d),
            Self::PayloadTooLarge => ("payload_too_large", "le corps de la requête dépasse 64 Kio".into(), serde_json::Value::Null),
            Self::UnsupportedMediaType => {
                ("unsupported_media_type", "le corps doit être du JSON (Content-Type: application/json)".into(), serde_json::Value::Null)
            }
            Self::Invalid(fields) => {
                let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
                let message = format!("données invalides : {}", names.join(", "));
                ("validation", message, serde_json::json!({ "fields": fields }))
            }
            Self::Unavailable(m) => ("unavailable", m, serde_json::Value::Null),
            Self::MethodNotAllowed => ("method_not_allowed", "méthode non autorisée pour cette adresse".into(), serde_json::Value::Null),
            Self::Internal(_) => ("internal", "erreur interne ; elle a été journalisée".into(), serde_json::Value::Null),
        };
        ErrorBody { error, message, details }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "erreur interne");
        }
        (status, Json(self.body())).into_response()
    }
}

impl From<Vec<FieldError>> for ApiError {
    fn from(fields: Vec<FieldError>) -> Self {
        Self::Invalid(fields)
    }
}

impl From<VenteError> for ApiError {
    fn from(error: VenteError) -> Self {
        match error {
            VenteError::NotFound => Self::NotFound("vente introuvable".into()),
            VenteError::IdTaken(current) => Self::Conflict(
                "une vente existe déjà avec cet identifiant et un autre contenu".into(),
                serde_json::json!({ "id": current.id.to_string() }),
            ),
            VenteError::PreconditionFailed(current) => Self::PreconditionFailed(
                "la vente a été modifiée depuis votre lecture (If-Match)".into(),
                serde_json::json!({ "id": current.id.to_string(), "etag": super::api::etag(&current) }),
            ),
            VenteError::NoRegionReachable(_) => Self::Unavailable("aucune région n'est joignable pour le moment ; réessayez".into()),
            VenteError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            // Never the driver's text: it may name hosts, users or files.
            StoreError::Unavailable { region, .. } => {
                Self::Unavailable(format!("la région {region} est injoignable pour le moment ; réessayez"))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}
