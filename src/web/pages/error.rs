//! Every failure of a page, shown as a French HTML page with the right status (never JSON).
//! Only 5xx are logged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::views::{ErrorPage, html};
use crate::store::StoreError;
use crate::ventes::VenteError;

#[derive(Debug)]
pub enum PageError {
    NotFound(String),
    BadRequest(String),
    /// The form did not come from one of our pages (CSRF check failed).
    Forbidden,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    /// No region answered.
    Unavailable,
    Internal(String),
}

impl PageError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn page(self) -> ErrorPage {
        let status = self.status().as_u16();
        let (title, message) = match self {
            Self::NotFound(m) => ("Page introuvable", m),
            Self::BadRequest(m) => ("Requête incorrecte", format!("La requête n'a pas pu être lue : {m}.")),
            Self::Forbidden => {
                ("Formulaire refusé", "Ce formulaire a expiré ou ne vient pas de ce site. Rechargez la page puis réessayez.".to_owned())
            }
            Self::PayloadTooLarge => ("Formulaire trop volumineux", "Le formulaire envoyé dépasse 64 Kio.".to_owned()),
            Self::UnsupportedMediaType => ("Format non pris en charge", "Ce formulaire doit être envoyé par le navigateur.".to_owned()),
            Self::MethodNotAllowed => ("Méthode non autorisée", "Cette adresse ne répond pas à cette méthode.".to_owned()),
            Self::Unavailable => (
                "Service momentanément indisponible",
                "Aucune région n'est joignable pour le moment. Réessayez dans quelques instants.".to_owned(),
            ),
            Self::Internal(_) => ("Erreur interne", "Une erreur inattendue s'est produite ; elle a été journalisée.".to_owned()),
        };
        ErrorPage { status, title, message }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "erreur interne (page)");
        }
        let status = self.status();
        html(status, &self.page())
    }
}

impl From<VenteError> for PageError {
    fn from(error: VenteError) -> Self {
        match error {
            VenteError::NotFound => Self::NotFound("Cette vente n'existe pas ou a été supprimée.".into()),
            VenteError::NoRegionReachable(_) => Self::Unavailable,
            VenteError::Store(e) => e.into(),
            // Callers that can meet these handle them; reaching here is a bug.
            e @ (VenteError::IdTaken(_) | VenteError::PreconditionFailed(_)) => Self::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable { .. } => Self::Unavailable,
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(error: askama::Error) -> Self {
        Self::Internal(format!("gabarit : {error}"))
    }
}
