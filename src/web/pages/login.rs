//! `/connexion` (the login form) and `/deconnexion`. Owns: these handlers and where a visitor goes
//! back to. Leaves: checking passwords and sessions (auth/), cookies' form and the role checks
//! (web/auth.rs), CSRF (csrf.rs).

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::csrf::{CheckedForm, CsrfToken};
use super::error::PageError;
use super::views::html;
use crate::auth::Refusal;
use crate::web::AppState;
use crate::web::auth::{self, session_cookie, session_id};

/// The login page.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub csrf: String,
    pub retour: String,
    pub nom: String,
    pub message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Back {
    retour: String,
}

/// Where to go after logging in: a path of this site, never another site (`//host`, `/\host`).
fn safe_back(to: &str) -> String {
    let ok = to.starts_with('/')
        && !to.starts_with("//")
        && !to.starts_with("/\\")
        && !to.starts_with("/connexion")
        && !to.chars().any(|c| c.is_control() || c == '\\')
        && to.len() <= 2000;
    if ok { to.to_owned() } else { "/".to_owned() }
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

/// `GET /connexion`: the form; straight back when authentication is off or a session is open.
pub async fn page(State(state): State<AppState>, CsrfToken(csrf): CsrfToken, RawQuery(query): RawQuery) -> Result<Response, PageError> {
    let back: Back = serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let retour = safe_back(&back.retour);
    let enabled = state.auth.enabled().await.map_err(|e| PageError::Internal(e.to_string()))?;
    if !enabled || auth::signed_in().is_some() {
        return Ok(see_other(&retour));
    }
    Ok(html(StatusCode::OK, &LoginPage { csrf, retour, nom: String::new(), message: None }))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    nom: String,
    #[serde(default)]
    mot_de_passe: String,
    #[serde(default)]
    retour: String,
}

/// The request's parts a login needs besides its form.
pub struct Origin {
    extensions: Extensions,
    headers: HeaderMap,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self { extensions: parts.extensions.clone(), headers: parts.headers.clone() })
    }
}

/// `POST /connexion`: a new session (the old one, if any, ends), then back to the page asked for.
pub async fn login(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    origin: Origin,
    CheckedForm(form): CheckedForm<LoginForm>,
) -> Result<Response, PageError> {
    let retour = safe_back(&form.retour);
    let from = auth::client_ip(&origin.extensions);
    let nom = form.nom.trim().to_owned();
    match state.auth.login(&nom, &form.mot_de_passe, from).await {
        Ok((id, _)) => {
            if let Some(old) = session_id(&origin.headers) {
                let _ = state.auth.logout(&old).await;
            }
            let mut response = see_other(&retour);
            response.headers_mut().append(SET_COOKIE, session_cookie(Some(&id), &origin.extensions));
            Ok(response)
        }
        Err(Refusal::BadCredentials) => {
            let message = Some("Nom d'utilisateur ou mot de passe incorrect.".to_owned());
            Ok(html(StatusCode::UNAUTHORIZED, &LoginPage { csrf, retour, nom, message }))
        }
        Err(Refusal::Throttled(wait)) => Ok(auth::throttled(false, wait)),
        Err(Refusal::Error(e)) => Err(PageError::Internal(e.to_string())),
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {}

/// `POST /deconnexion`: ends the session, back to the login form.
pub async fn logout(State(state): State<AppState>, origin: Origin, CheckedForm(_): CheckedForm<LogoutForm>) -> Response {
    if let Some(id) = session_id(&origin.headers) {
        if let Some(user) = auth::signed_in() {
            tracing::info!(target: "dsms::audit", utilisateur = %user.name, "déconnexion");
        }
        if let Err(error) = state.auth.logout(&id).await {
            tracing::error!(%error, "fin de session impossible");
        }
    }
    let mut response = see_other("/connexion");
    response.headers_mut().append(SET_COOKIE, session_cookie(None, &origin.extensions));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_gone_back_to() {
        assert_eq!(safe_back("/stats?actualisation=5"), "/stats?actualisation=5");
        for bad in ["https://evil.example/", "//evil.example", "/\\evil.example", "", "stats", "/connexion"] {
            assert_eq!(safe_back(bad), "/", "{bad}");
        }
    }
}
