//! The dashboard (`/stats`) and the two actions it and the home page offer: a sync round now, and
//! the outage drill of a region. Owns: these handlers and what they gather. Leaves: view models
//! (dashboard_view.rs), wording (dashboard_text.rs), charts (dashboard_charts.rs, charts.rs), the
//! monitor and the scheduler themselves.
//!
//! The page refreshes itself every 10 s through `static/stats.js`, which fetches
//! `/stats/contenu` (the same markup, without the page around it) and swaps it in place. No
//! `<meta http-equiv="refresh">`: a full reload every 10 s moves the focus and the scroll back to
//! the top, interrupts screen readers and cannot be paused (WCAG 2.2.1, 3.2.5). Without a script
//! the page is complete and its « Actualiser » link reloads it.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;

use super::csrf::{CheckedForm, CsrfToken};
use super::dashboard_text::{round_notice, running_notice};
use super::dashboard_view::{Dashboard, StatsFragment, StatsPage};
use super::error::PageError;
use super::flash::{Flash, Notice};
use super::views::html;
use crate::monitor::MonitorError;
use crate::monitor::health::Status;
use crate::sync::scheduler::Requested;
use crate::web::AppState;

/// Seconds between automatic refreshes, unless `?actualisation=N` (1 to 3600) says otherwise.
pub const REFRESH: u32 = 10;
/// Rounds drawn in the duration chart.
const CHART_ROUNDS: usize = 100;
/// Conflicts listed.
const CONFLICTS: u32 = 20;
/// Quarantined rows listed.
const QUARANTINE: u32 = 20;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StatsQuery {
    actualisation: String,
}

/// Everything the dashboard shows, read at once; a region down makes parts say so, never fails it.
async fn dashboard(state: &AppState) -> Dashboard {
    let (stats, analytics, conflicts, quarantine) = tokio::join!(
        state.monitor.stats(),
        state.monitor.analytics(),
        state.ventes.conflicts(CONFLICTS),
        state.ventes.quarantine(QUARANTINE)
    );
    let history = state.monitor.history(CHART_ROUNDS);
    let analytics = analytics.map(|(a, _)| a).ok();
    Dashboard::new(Utc::now(), &stats, &history, analytics.as_deref(), conflicts.as_deref()).with_quarantine(quarantine.as_deref())
}

/// `GET /stats`.
pub async fn page(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let query: StatsQuery =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).map_err(|_| PageError::BadRequest("adresse mal formée".into()))?;
    let refresh = query.actualisation.trim().parse::<u32>().ok().filter(|s| (1..=3600).contains(s)).unwrap_or(REFRESH);
    let flash = Flash::take(&headers);
    let shown = flash.is_some();
    let mut response = html(StatusCode::OK, &StatsPage { csrf, flash, refresh, dash: dashboard(&state).await });
    if shown {
        Flash::clear(&mut response);
    }
    Ok(response)
}

/// `GET /stats/contenu`: the refreshed part of the dashboard, for its script.
pub async fn fragment(State(state): State<AppState>, CsrfToken(csrf): CsrfToken) -> Response {
    html(StatusCode::OK, &StatsFragment { csrf, dash: dashboard(&state).await })
}

/// The page a form sends back to: the home page or the dashboard, nothing else.
fn back(to: &str) -> &'static str {
    if to == "/stats" { "/stats" } else { "/" }
}

#[derive(Debug, Deserialize)]
pub struct SyncForm {
    #[serde(default)]
    retour: String,
}

/// `POST /synchroniser`: runs a round now (after the one in progress, if any), then says what it
/// did, region by region, on the page the form was on; a round longer than `sync_request_wait`
/// runs on to completion, and the message links to the history where its report will appear.
pub async fn sync_now(State(state): State<AppState>, CheckedForm(form): CheckedForm<SyncForm>) -> Response {
    let notice = match state.scheduler.request_round().await {
        Requested::Done(report) => round_notice(&report),
        Requested::Running { .. } => running_notice(),
        Requested::Lost(message) => Notice::warning(format!("Échec de la synchronisation : {message}.")),
    };
    notice.redirect(back(&form.retour))
}

#[derive(Debug, Deserialize)]
pub struct DrillForm {
    #[serde(default)]
    region: String,
    /// `panne` starts the drill, `retablir` lifts it.
    #[serde(default)]
    action: String,
}

/// `POST /stats/panne`: starts or lifts a region's outage drill, then shows its card.
pub async fn drill(State(state): State<AppState>, CheckedForm(form): CheckedForm<DrillForm>) -> Result<Response, PageError> {
    let down = match form.action.as_str() {
        "panne" => true,
        "retablir" => false,
        _ => return Err(PageError::BadRequest("action inconnue (panne ou retablir attendu)".into())),
    };
    let region = state.monitor.set_drill(&form.region, down).await.map_err(|e| match e {
        MonitorError::UnknownRegion { .. } => PageError::NotFound(format!("{e}.")),
        other => PageError::Internal(other.to_string()),
    })?;
    let status = region.status.as_str();
    let reason = region.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
    let notice = match (down, region.status) {
        (true, _) => Notice::warning(format!("Panne simulée sur {} : la région est maintenant {status}{reason}.", region.region)),
        (false, Status::Online) => Notice::success(format!("{} rétablie : la région est maintenant {status}.", region.region)),
        (false, _) => Notice::warning(format!("Exercice de panne terminé pour {} ; la région est {status}{reason}.", region.region)),
    };
    Ok(notice.redirect(&format!("/stats#region-{}", region.region.slug())))
}
