//! The French web UI, rendered on the server. Every page works without JavaScript; `app.js` only
//! enhances (inline validation, delete confirmation). Owns: the page routes and their handlers.
//! Leaves: reads and writes to `Ventes` (as the API does), rules to the domain, markup to
//! `templates/`, form reading to forms.rs, CSRF to csrf.rs.

pub mod assets;
pub mod charts;
pub mod csrf;
pub mod dashboard;
pub mod dashboard_charts;
pub mod dashboard_text;
pub mod dashboard_view;
pub mod error;
pub mod flash;
pub mod forms;
pub mod login;
pub mod views;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};

use super::AppState;
use crate::domain::VenteId;
use crate::ventes::VenteError;
use csrf::{CheckedForm, CsrfToken};
use error::PageError;
use flash::{Flash, Notice};
use forms::{DeleteForm, ListFilters, VenteForm};
use views::{ConfirmDeletePage, EditPage, FilterView, FormView, IndexPage, QuickStats, Row, count_fr, html, region_names};

/// The page routes and the static files.
pub fn routes() -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(index).post(create).fallback(method_not_allowed))
        .route("/ventes/{id}/modifier", get(edit).post(update).fallback(method_not_allowed))
        .route("/ventes/{id}/supprimer", get(confirm_delete).post(delete).fallback(method_not_allowed))
        .route("/synchroniser", post(dashboard::sync_now).fallback(method_not_allowed))
        .route("/stats", get(dashboard::page).fallback(method_not_allowed))
        .route("/stats/contenu", get(dashboard::fragment).fallback(method_not_allowed))
        .route("/stats/panne", post(dashboard::drill).fallback(method_not_allowed))
        .route("/connexion", get(login::page).post(login::login).fallback(method_not_allowed))
        .route("/deconnexion", post(login::logout).fallback(method_not_allowed))
        .layer(middleware::from_fn(csrf::ensure_nonce));
    let files = Router::new()
        .route("/static/{file}", get(assets::serve).fallback(method_not_allowed))
        .route("/favicon.ico", get(assets::favicon).fallback(method_not_allowed));
    pages.merge(files)
}

/// True when an unknown address should get the HTML 404 page: a browser asking outside `/api`.
pub fn wants_html(uri: &Uri, headers: &HeaderMap) -> bool {
    let accepts_html = headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/html"));
    accepts_html && !uri.path().starts_with("/api")
}

pub fn not_found() -> PageError {
    PageError::NotFound("Cette adresse ne correspond à aucune page.".into())
}

async fn method_not_allowed() -> PageError {
    PageError::MethodNotAllowed
}

/// `GET /`: statistics, the add form, the (filtered) list.
async fn index(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let filters = ListFilters::from_query(query.as_deref())?;
    let flash = Flash::take(&headers);
    let shown = flash.is_some();
    let mut response = home(&state, csrf, FormView::blank(state.ventes.today()), &filters, flash, StatusCode::OK).await?;
    if shown {
        Flash::clear(&mut response);
    }
    Ok(response)
}

/// `POST /`: records a sale, or shows the form again with the French messages and the values.
async fn create(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    CheckedForm(form): CheckedForm<VenteForm>,
) -> Result<Response, PageError> {
    let today = state.ventes.today();
    let (status, view) = match form.parse(state.ventes.regions(), today) {
        Err(errors) => (StatusCode::UNPROCESSABLE_ENTITY, FormView::kept(form, errors, today)),
        Ok(vente) => match state.ventes.create(form.id(), vente).await {
            Ok(created) => return Ok(Flash::Added.redirect("/", created.vente.produit.as_str())),
            Err(VenteError::IdTaken(_)) => {
                let fresh = VenteForm { id: VenteId::generate().to_string(), ..form };
                let notice = "Ce formulaire avait déjà servi pour une autre vente : vérifiez la liste, puis envoyez-le de nouveau.";
                (StatusCode::CONFLICT, FormView::kept(fresh, Vec::new(), today).with_notice(notice))
            }
            Err(e) => return Err(e.into()),
        },
    };
    home(&state, csrf, view, &ListFilters::default(), None, status).await
}

async fn home(
    state: &AppState,
    csrf: String,
    form: FormView,
    filters: &ListFilters,
    flash: Option<Notice>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let (query, errors) = filters.to_query(state.ventes.regions());
    let (page, stats) = tokio::join!(state.ventes.list(&query), state.monitor.stats());
    let page = page?;
    let counters = stats.counters;
    let view = IndexPage {
        csrf,
        flash,
        stats: QuickStats {
            ventes: count_fr(stats.total_ventes),
            syncs: count_fr(counters.total_syncs),
            echecs: count_fr(counters.failed_syncs),
        },
        form,
        regions: region_names(state.ventes.regions()),
        filters: FilterView::of(filters, errors),
        rows: page.items.iter().map(Row::from).collect(),
        next_url: page.next.map(|cursor| filters.url(Some(&cursor))),
        first_url: query.after.is_some().then(|| filters.url(None)),
    };
    Ok(html(status, &view))
}

/// A sale id from the address; anything but a UUID is an unknown page.
fn page_id(text: &str) -> Result<VenteId, PageError> {
    text.parse().map_err(|_| PageError::NotFound("Cette vente n'existe pas ou a été supprimée.".into()))
}

/// `GET /ventes/{id}/modifier`.
async fn edit(State(state): State<AppState>, CsrfToken(csrf): CsrfToken, Path(id): Path<String>) -> Result<Response, PageError> {
    let vente = state.ventes.get(page_id(&id)?).await?;
    let form = FormView::of(&vente, state.ventes.today());
    Ok(edit_page(&state, csrf, (vente.id, vente.version.to_string()), form, StatusCode::OK))
}

/// The edit form of sale `id` as seen at `version`.
fn edit_page(state: &AppState, csrf: String, (id, version): (VenteId, String), form: FormView, status: StatusCode) -> Response {
    html(status, &EditPage { csrf, id, version, form, regions: region_names(state.ventes.regions()) })
}

/// `POST /ventes/{id}/modifier`: replaces the sale if nobody changed it since the form was shown.
async fn update(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    Path(id): Path<String>,
    CheckedForm(form): CheckedForm<VenteForm>,
) -> Result<Response, PageError> {
    let id = page_id(&id)?;
    let today = state.ventes.today();
    let vente = match form.parse(state.ventes.regions(), today) {
        Ok(vente) => vente,
        Err(errors) => {
            let seen = (id, form.version.clone());
            return Ok(edit_page(&state, csrf, seen, FormView::kept(form, errors, today), StatusCode::UNPROCESSABLE_ENTITY));
        }
    };
    match state.ventes.update(id, vente, form.expect()).await {
        Ok(vente) => Ok(Flash::Updated.redirect("/", vente.produit.as_str())),
        Err(VenteError::PreconditionFailed(current)) => {
            let notice = format!(
                "Cette vente a été modifiée ailleurs entre-temps (elle indique maintenant « {} », {}, {}, {}). \
                 Vos changements ne sont pas enregistrés : vérifiez-les, puis enregistrez de nouveau.",
                current.produit,
                current.montant.to_fcfa(),
                current.region,
                views::date_fr(current.date_vente.get()),
            );
            let seen = (id, current.version.to_string());
            Ok(edit_page(&state, csrf, seen, FormView::kept(form, Vec::new(), today).with_notice(notice), StatusCode::CONFLICT))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /ventes/{id}/supprimer`: the confirmation page.
async fn confirm_delete(State(state): State<AppState>, CsrfToken(csrf): CsrfToken, Path(id): Path<String>) -> Result<Response, PageError> {
    let vente = state.ventes.get(page_id(&id)?).await?;
    Ok(html(StatusCode::OK, &ConfirmDeletePage { csrf, row: Row::from(&vente), notice: None }))
}

/// `POST /ventes/{id}/supprimer`: deletes once confirmed; unconfirmed (no script), asks first.
async fn delete(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    Path(id): Path<String>,
    CheckedForm(form): CheckedForm<DeleteForm>,
) -> Result<Response, PageError> {
    let id = page_id(&id)?;
    if !form.confirmed() {
        let vente = state.ventes.get(id).await?;
        return Ok(html(StatusCode::OK, &ConfirmDeletePage { csrf, row: Row::from(&vente), notice: None }));
    }
    match state.ventes.delete(id, form.expect()).await {
        Ok(vente) => Ok(Flash::Deleted.redirect("/", vente.produit.as_str())),
        Err(VenteError::PreconditionFailed(current)) => {
            let notice =
                Some("Cette vente a été modifiée ailleurs entre-temps ; vérifiez-la avant de confirmer la suppression.".to_owned());
            Ok(html(StatusCode::CONFLICT, &ConfirmDeletePage { csrf, row: Row::from(current.as_ref()), notice }))
        }
        Err(e) => Err(e.into()),
    }
}
