//! Who may do what over HTTP. Owns: the role each route needs (one table, also written into the
//! OpenAPI document), reading credentials (`Authorization: Basic|Bearer`, the session cookie),
//! the 401/403/429 answers, the redirect to `/connexion`, the audit line of every write, and what
//! the templates may ask about the viewer. Leaves: users, passwords, sessions (auth/), the login
//! form (pages/login.rs), CSRF tokens (pages/csrf.rs).
//!
//! With no user, authentication is off: every request may do everything, as before.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, LOCATION, RETRY_AFTER, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ErrorBody;
use super::pages::csrf::{self, SessionNonce};
use super::pages::flash::cookie;
use super::pages::views::{ErrorPage, html};
use crate::auth::{Principal, Refusal, Role};

/// The web session cookie: a random id; the server keeps its digest, user and times.
pub const SESSION_COOKIE: &str = "dsms_session";

/// The role a route needs; `None`: open to anyone (health, login, static files).
/// Routes not listed need `lecteur`, so a new route is never open by mistake.
pub fn required(method: &Method, route: &str) -> Option<Role> {
    let reads = *method == Method::GET || *method == Method::HEAD;
    match route {
        "/healthz" | "/readyz" | "/connexion" | "/deconnexion" | "/static/{file}" | "/favicon.ico" => None,
        "/api/sync" | "/api/regions/{name}/drill" | "/synchroniser" | "/stats/panne" | "/api/users" | "/api/quarantine" => {
            Some(Role::Admin)
        }
        "/api/ventes" | "/api/ventes/{id}" | "/" if !reads => Some(Role::Vendeur),
        "/ventes/{id}/modifier" | "/ventes/{id}/supprimer" => Some(Role::Vendeur),
        _ => Some(Role::Lecteur),
    }
}

/// API clients get JSON and a `WWW-Authenticate` challenge; browsers get pages and the login form.
fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path == "/api" || path == "/metrics"
}

/// A request served over TLS carries this extension (the HTTPS listener sets it): cookies then get `Secure`.
#[derive(Clone, Copy, Debug)]
pub struct Https;

/// The address the request came from (loopback when unknown).
pub fn client_ip(extensions: &Extensions) -> IpAddr {
    extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip())
}

/// `Set-Cookie` for the session cookie (`None`: remove it).
pub fn session_cookie(id: Option<&str>, extensions: &Extensions) -> HeaderValue {
    let secure = if extensions.get::<Https>().is_some() { "; Secure" } else { "" };
    let text = match id {
        Some(id) => format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax{secure}"),
        None => format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("dsms_session=; Path=/; Max-Age=0"))
}

/// The session id in the request's cookie, when it has the form of one.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
        .filter(|id| id.len() == 43 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .map(str::to_owned)
}

/// The CSRF nonce of a session: derived from its secret id, so the forms' tokens are bound to it.
fn session_nonce(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::new().chain_update(b"dsms-csrf-session\0").chain_update(id).finalize())
}

/// Who is looking at a page, for the templates: set for the time of each request.
#[derive(Clone, Debug, Default)]
pub struct Viewer {
    pub auth_on: bool,
    pub principal: Option<Principal>,
    /// The CSRF token of the logout form (a session is open).
    pub logout_token: Option<String>,
}

tokio::task_local! {
    static VIEWER: Viewer;
}

fn viewer_may(role: Role) -> bool {
    VIEWER.try_with(|v| !v.auth_on || v.principal.as_ref().is_some_and(|p| p.role >= role)).unwrap_or(true)
}

/// For the templates: may the viewer create, edit and delete sales?
pub fn may_write() -> bool {
    viewer_may(Role::Vendeur)
}

/// For the templates: may the viewer run rounds and drills?
pub fn may_admin() -> bool {
    viewer_may(Role::Admin)
}

/// For the templates: the user logged in through a session, to name in the header.
pub struct SignedIn {
    pub name: String,
    pub role: &'static str,
    pub logout_token: String,
}

pub fn signed_in() -> Option<SignedIn> {
    VIEWER
        .try_with(|v| {
            let (principal, token) = (v.principal.as_ref()?, v.logout_token.clone()?);
            Some(SignedIn { name: principal.name.clone(), role: principal.role.as_str(), logout_token: token })
        })
        .ok()
        .flatten()
}

/// An error answer in the API's JSON shape.
pub fn error_response(status: StatusCode, error: &'static str, message: String, details: Value) -> Response {
    (status, Json(ErrorBody { error, message, details })).into_response()
}

fn page(status: StatusCode, title: &'static str, message: String) -> Response {
    html(status, &ErrorPage { status: status.as_u16(), title, message })
}

fn unauthorized(api: bool, refused: bool) -> Response {
    let mut response = if api {
        let message = if refused {
            "identifiants refusés (utilisateur, mot de passe ou jeton inconnus ou révoqués)"
        } else {
            "authentification requise : Authorization: Basic (utilisateur:mot de passe) ou Bearer (jeton)"
        };
        error_response(StatusCode::UNAUTHORIZED, "unauthorized", message.into(), Value::Null)
    } else {
        let message = "Ces identifiants ont été refusés. Connectez-vous avec votre nom d'utilisateur et votre mot de passe.";
        page(StatusCode::UNAUTHORIZED, "Identifiants refusés", message.into())
    };
    let headers = response.headers_mut();
    if api {
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"dsms\", charset=\"UTF-8\""));
    }
    // Not Basic for pages: browsers would show their own dialog instead of the login form.
    headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"dsms\""));
    response
}

fn forbidden(api: bool, principal: &Principal, needed: Role) -> Response {
    if api {
        let message = format!("votre rôle ({}) ne permet pas cette opération ; rôle requis : {needed}", principal.role);
        error_response(StatusCode::FORBIDDEN, "forbidden", message, json!({ "role": principal.role.as_str(), "required": needed.as_str() }))
    } else {
        let message = format!(
            "Votre rôle ({}) ne permet pas cette action ; il faut le rôle « {needed} ». Demandez-le à un administrateur.",
            principal.role
        );
        page(StatusCode::FORBIDDEN, "Accès refusé", message)
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1).
pub fn throttled(api: bool, wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = if api {
        let message = format!("trop d'échecs d'authentification récents ; réessayez dans {seconds} s");
        error_response(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message, json!({ "retryAfter": seconds }))
    } else {
        let message = format!("Trop de tentatives de connexion ont échoué. Réessayez dans {seconds} secondes.");
        page(StatusCode::TOO_MANY_REQUESTS, "Trop de tentatives", message)
    };
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

pub fn unavailable(api: bool) -> Response {
    if api {
        error_response(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "base des utilisateurs illisible ; réessayez".into(), Value::Null)
    } else {
        page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service momentanément indisponible",
            "La base des utilisateurs ne répond pas ; réessayez.".into(),
        )
    }
}

/// 303 to the login form, which brings the visitor back here afterwards (pages asked with GET).
fn to_login(request: &Request) -> Response {
    let back = request.uri().path_and_query().map(|pq| pq.as_str()).filter(|_| matches!(*request.method(), Method::GET | Method::HEAD));
    let location = match back {
        Some(back) if back != "/" => {
            format!("/connexion?retour={}", url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>())
        }
        _ => "/connexion".to_owned(),
    };
    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
}

/// The principal named by an `Authorization` header.
async fn from_header(state: &AppState, value: &HeaderValue, from: IpAddr) -> Result<Principal, Refusal> {
    let text = value.to_str().map_err(|_| Refusal::BadCredentials)?;
    let (scheme, rest) = text.trim().split_once(' ').ok_or(Refusal::BadCredentials)?;
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest.trim()).map_err(|_| Refusal::BadCredentials)?;
        let decoded = String::from_utf8(decoded).map_err(|_| Refusal::BadCredentials)?;
        let (name, password) = decoded.split_once(':').ok_or(Refusal::BadCredentials)?;
        state.auth.check_password(name, password, from).await
    } else if scheme.eq_ignore_ascii_case("bearer") {
        match state.auth.check_token(rest.trim()).await {
            Ok(Some(principal)) => Ok(principal),
            Ok(None) => {
                tracing::warn!(target: "dsms::audit", adresse = %from, "jeton refusé");
                Err(Refusal::BadCredentials)
            }
            Err(e) => Err(Refusal::Error(e)),
        }
    } else {
        Err(Refusal::BadCredentials)
    }
}

/// Middleware: identifies the requester, checks the route's role, sets the viewer for the
/// templates and the session's CSRF nonce, and logs every write with its user.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let needed = request.extensions().get::<MatchedPath>().and_then(|route| required(request.method(), route.as_str()));
    let api = is_api(request.uri().path());
    let enabled = match state.auth.enabled().await {
        Ok(enabled) => enabled,
        Err(error) => {
            tracing::error!(%error, "base des utilisateurs illisible");
            return unavailable(api);
        }
    };
    if !enabled {
        return run(Viewer::default(), needed.is_some(), request, next).await;
    }
    let from = client_ip(request.extensions());
    let mut who: Option<Principal> = None;
    // Credentials in the header are checked only where they matter (never for static files).
    if let (Some(_), Some(value)) = (needed, request.headers().get(AUTHORIZATION).cloned()) {
        match from_header(&state, &value, from).await {
            Ok(principal) => who = Some(principal),
            Err(Refusal::Throttled(wait)) => return throttled(api, wait),
            Err(Refusal::BadCredentials) => return unauthorized(api, true),
            Err(Refusal::Error(error)) => {
                tracing::error!(%error, "base des utilisateurs illisible");
                return unavailable(api);
            }
        }
    }
    let mut session = None;
    let mut stale_cookie = false;
    if who.is_none() {
        if let Some(id) = session_id(request.headers()) {
            match state.auth.session(&id).await {
                Ok(Some(principal)) => {
                    who = Some(principal);
                    session = Some(id);
                }
                Ok(None) => stale_cookie = true,
                Err(error) => {
                    tracing::error!(%error, "base des utilisateurs illisible");
                    return unavailable(api);
                }
            }
        }
    }
    let refused = match (needed, &who) {
        (Some(needed), Some(principal)) if principal.role < needed => Some(forbidden(api, principal, needed)),
        (Some(_), None) if api => Some(unauthorized(true, false)),
        (Some(_), None) => Some(to_login(&request)),
        _ => None,
    };
    let mut response = match refused {
        Some(response) => response,
        None => {
            if let Some(id) = &session {
                request.extensions_mut().insert(SessionNonce(session_nonce(id)));
            }
            if let Some(principal) = &who {
                request.extensions_mut().insert(principal.clone());
            }
            let logout_token = session.as_deref().map(|id| csrf::token_for(&session_nonce(id)));
            run(Viewer { auth_on: true, principal: who, logout_token }, needed.is_some(), request, next).await
        }
    };
    if stale_cookie {
        response.headers_mut().append(SET_COOKIE, session_cookie(None, &Extensions::new()));
    }
    response
}

/// Runs the request as `viewer`; a write (any method but GET and HEAD on a protected route) is logged.
async fn run(viewer: Viewer, protected: bool, request: Request, next: Next) -> Response {
    let audited = protected && !matches!(*request.method(), Method::GET | Method::HEAD);
    let action = audited.then(|| format!("{} {}", request.method(), request.uri().path()));
    let user = viewer.principal.as_ref().map_or_else(|| "anonyme".to_owned(), |p| p.name.clone());
    let response = VIEWER.scope(viewer, next.run(request)).await;
    if let Some(action) = action {
        tracing::info!(target: "dsms::audit", utilisateur = %user, action = %action, statut = response.status().as_u16(), "écriture");
    }
    response
}

/// Writes into the OpenAPI document its security schemes and, per operation, who may call it:
/// `security` (none for open ones), `x-dsms-role`, and the 401/403 answers. With `anonymous`
/// (authentication is off: no user yet), every operation also accepts no credentials (`{}`).
pub fn document_security(doc: &mut Value, anonymous: bool) {
    if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
        components.insert(
            "securitySchemes".into(),
            json!({
                "basic": { "type": "http", "scheme": "basic", "description": "Utilisateur et mot de passe (dsms user add)." },
                "bearer": { "type": "http", "scheme": "bearer", "description": "Jeton d'API (dsms user token)." },
            }),
        );
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            let (Ok(method), Some(operation)) = (method.to_ascii_uppercase().parse::<Method>(), operation.as_object_mut()) else {
                continue;
            };
            match required(&method, path) {
                None => {
                    operation.insert("security".into(), json!([]));
                }
                Some(role) => {
                    let mut schemes = vec![json!({ "basic": [] }), json!({ "bearer": [] })];
                    if anonymous {
                        schemes.push(json!({}));
                    }
                    operation.insert("security".into(), Value::Array(schemes));
                    operation.insert("x-dsms-role".into(), json!(role.as_str()));
                    let description = operation.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
                    operation.insert("description".into(), json!(format!("{description}\n\nRôle requis : {role}.").trim().to_owned()));
                    if let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) {
                        let error = json!({ "$ref": "#/components/schemas/ErrorBody" });
                        responses.insert("401".into(), json!({ "description": "Identifiants absents ou refusés", "content": { "application/json": { "schema": error } } }));
                        responses.insert("403".into(), json!({ "description": format!("Rôle insuffisant (il faut {role})"), "content": { "application/json": { "schema": error } } }));
                        responses.insert("429".into(), json!({ "description": "Trop d'échecs d'authentification récents", "content": { "application/json": { "schema": error } } }));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_makes_credentials_optional_only_while_authentication_is_off() {
        let doc = || json!({ "components": {}, "paths": { "/api/ventes": { "get": { "responses": {} } }, "/healthz": { "get": {} } } });
        for (anonymous, expected) in
            [(false, json!([{ "basic": [] }, { "bearer": [] }])), (true, json!([{ "basic": [] }, { "bearer": [] }, {}]))]
        {
            let mut doc = doc();
            document_security(&mut doc, anonymous);
            assert_eq!(doc["paths"]["/api/ventes"]["get"]["security"], expected, "anonymous: {anonymous}");
            assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
        }
    }

    #[test]
    fn each_route_needs_its_role() {
        assert_eq!(required(&Method::GET, "/api/ventes"), Some(Role::Lecteur));
        assert_eq!(required(&Method::HEAD, "/"), Some(Role::Lecteur));
        assert_eq!(required(&Method::POST, "/api/ventes"), Some(Role::Vendeur));
        assert_eq!(required(&Method::DELETE, "/api/ventes/{id}"), Some(Role::Vendeur));
        assert_eq!(required(&Method::GET, "/ventes/{id}/modifier"), Some(Role::Vendeur));
        assert_eq!(required(&Method::POST, "/api/sync"), Some(Role::Admin));
        assert_eq!(required(&Method::POST, "/stats/panne"), Some(Role::Admin));
        assert_eq!(required(&Method::GET, "/api/quarantine"), Some(Role::Admin));
        assert_eq!(required(&Method::GET, "/metrics"), Some(Role::Lecteur));
        assert_eq!(required(&Method::GET, "/une/route/future"), Some(Role::Lecteur));
        assert_eq!(required(&Method::GET, "/healthz"), None);
        assert_eq!(required(&Method::POST, "/connexion"), None);
    }

    #[test]
    fn templates_outside_a_request_see_everything_allowed() {
        assert!(may_write() && may_admin());
        assert!(signed_in().is_none());
    }
}
