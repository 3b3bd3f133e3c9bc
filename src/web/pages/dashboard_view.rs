//! The dashboard's view models: what `/stats` shows. Owns: the page and its refreshed part, the
//! counters, the region cards, the history rows and the conflicts, each already worded. Leaves:
//! gathering (dashboard.rs), French wording (dashboard_text.rs), charts' data (dashboard_charts.rs),
//! markup (`templates/stats*.html`).

use askama::Template;
use chrono::{DateTime, Utc};

use super::dashboard_charts::{ChartView, amounts_chart, durations_chart, per_day_chart, per_region_chart};
use super::dashboard_text::{RoundView, StatusView, TimeView, duration_fr, offset_fr, percent_fr};
use super::flash::Notice;
use super::views::count_fr;
use crate::domain::Backend;
use crate::domain::lww::Conflict;
use crate::domain::quarantine::Quarantined;
use crate::monitor::analytics::Analytics;
use crate::monitor::stats::HistoryEntry;
use crate::monitor::{RegionSnapshot, StatsSnapshot};

/// One region's card.
pub struct RegionCard {
    pub name: String,
    pub slug: String,
    pub backend: &'static str,
    pub status: StatusView,
    pub reason: Option<String>,
    pub errors: String,
    pub last_access: Option<TimeView>,
    pub last_error: Option<String>,
    pub ventes: String,
    pub pending: String,
    pub latency: String,
    pub clock_offset: String,
    pub drill: bool,
}

impl From<&RegionSnapshot> for RegionCard {
    fn from(r: &RegionSnapshot) -> Self {
        let dash = || "—".to_owned();
        Self {
            name: r.region.to_string(),
            slug: r.region.slug(),
            backend: match r.backend {
                Backend::Postgres => "PostgreSQL",
                Backend::Sqlite => "SQLite",
            },
            status: StatusView::of(r.status),
            reason: r.reason.clone(),
            errors: count_fr(r.errors),
            last_access: r.last_access.map(TimeView::of),
            last_error: r.last_error.clone(),
            ventes: r.ventes.map_or_else(dash, count_fr),
            pending: r.pending.map_or_else(dash, count_fr),
            latency: r.latency.map_or_else(dash, duration_fr),
            clock_offset: r.clock_offset.map_or_else(dash, offset_fr),
            drill: r.drill,
        }
    }
}

/// One round of the history table.
pub struct HistoryRow {
    pub at: TimeView,
    pub status: RoundView,
    pub duration: String,
    pub error: Option<String>,
}

impl From<&HistoryEntry> for HistoryRow {
    fn from(h: &HistoryEntry) -> Self {
        Self { at: TimeView::of(h.started_at), status: RoundView::of(h.status), duration: duration_fr(h.duration), error: h.error.clone() }
    }
}

/// A version of a sale in a conflict.
pub struct SideView {
    pub produit: String,
    pub montant: String,
    pub region: String,
    /// The region whose database wrote it, and when.
    pub origin: String,
    pub written: TimeView,
}

/// One conflict.
pub struct ConflictRow {
    pub id: String,
    pub winner: SideView,
    pub loser: SideView,
    pub detected_in: String,
    pub detected_at: TimeView,
}

impl From<&Conflict> for ConflictRow {
    fn from(c: &Conflict) -> Self {
        let side = |v: &crate::domain::Vente| SideView {
            produit: v.produit.to_string(),
            montant: v.montant.to_fcfa(),
            region: v.region.to_string(),
            origin: v.version.origin.to_string(),
            written: TimeView::of(v.updated_at),
        };
        Self {
            id: c.loser.id.to_string(),
            winner: side(&c.winner),
            loser: side(&c.loser),
            detected_in: c.detected_in.to_string(),
            detected_at: TimeView::of(c.detected_at),
        }
    }
}

/// One row set aside by a region.
pub struct QuarantineRow {
    pub id: String,
    pub region: String,
    pub source: String,
    pub reason: String,
    pub detected_at: TimeView,
}

impl From<&Quarantined> for QuarantineRow {
    fn from(q: &Quarantined) -> Self {
        Self {
            id: q.id.to_string(),
            region: q.region.to_string(),
            source: q.source.to_string(),
            reason: q.reason.clone(),
            detected_at: TimeView::of(q.detected_at),
        }
    }
}

/// Everything the dashboard shows (the part refreshed every 10 s).
pub struct Dashboard {
    pub generated: TimeView,
    pub total_syncs: String,
    pub successful_syncs: String,
    pub failed_syncs: String,
    /// Some round failed: its card is tinted.
    pub any_failed: bool,
    pub success_rate: String,
    /// For `<progress value>`: `95.6`.
    pub success_value: String,
    pub last_sync: Option<(TimeView, String)>,
    pub regions: Vec<RegionCard>,
    pub total_ventes: String,
    pub ventes_crees: String,
    pub ventes_modifiees: String,
    pub ventes_supprimees: String,
    pub history: Vec<HistoryRow>,
    pub durations: Option<ChartView>,
    pub per_region: Option<ChartView>,
    pub amounts: Option<ChartView>,
    pub per_day: Option<ChartView>,
    /// Why the sales charts are missing.
    pub analytics_error: Option<String>,
    pub conflicts: Option<Vec<ConflictRow>>,
    /// Rows the regions set aside; `None` when no region answered.
    pub quarantine: Option<Vec<QuarantineRow>>,
}

impl Dashboard {
    /// `history` is the newest rounds for the chart (newest first); `analytics` and `conflicts`
    /// are `None` when no region answered.
    pub fn new(
        now: DateTime<Utc>,
        stats: &StatsSnapshot,
        history: &[HistoryEntry],
        analytics: Option<&Analytics>,
        conflicts: Option<&[Conflict]>,
    ) -> Self {
        let c = &stats.counters;
        Self {
            generated: TimeView::of(now),
            total_syncs: count_fr(c.total_syncs),
            successful_syncs: count_fr(c.successful_syncs),
            failed_syncs: count_fr(c.failed_syncs),
            any_failed: c.failed_syncs > 0,
            success_rate: percent_fr(stats.success_rate),
            success_value: format!("{}", stats.success_rate),
            last_sync: stats.last_sync.map(|(at, took)| (TimeView::of(at), duration_fr(took))),
            regions: stats.regions.iter().map(RegionCard::from).collect(),
            total_ventes: count_fr(stats.total_ventes),
            ventes_crees: count_fr(c.ventes_crees),
            ventes_modifiees: count_fr(c.ventes_modifiees),
            ventes_supprimees: count_fr(c.ventes_supprimees),
            history: stats.history.iter().map(HistoryRow::from).collect(),
            durations: durations_chart(history),
            per_region: analytics.map(per_region_chart),
            amounts: analytics.map(amounts_chart),
            per_day: analytics.map(per_day_chart),
            analytics_error: analytics.is_none().then(|| "aucune région n'est joignable pour le moment".to_owned()),
            conflicts: conflicts.map(|all| all.iter().map(ConflictRow::from).collect()),
            quarantine: None,
        }
    }

    /// Adds the rows the regions set aside (`None`: no region answered).
    pub fn with_quarantine(self, items: Option<&[Quarantined]>) -> Self {
        Self { quarantine: items.map(|all| all.iter().map(QuarantineRow::from).collect()), ..self }
    }
}

/// `/stats`: the whole page.
#[derive(Template)]
#[template(path = "stats.html")]
pub struct StatsPage {
    pub csrf: String,
    pub flash: Option<Notice>,
    /// Seconds between automatic refreshes.
    pub refresh: u32,
    pub dash: Dashboard,
}

/// `/stats/contenu`: the refreshed part alone, for the page's script.
#[derive(Template)]
#[template(path = "stats_fragment.html")]
pub struct StatsFragment {
    pub csrf: String,
    pub dash: Dashboard,
}

impl StatsPage {
    /// Where « Synchroniser maintenant » comes back to.
    pub fn sync_back(&self) -> &'static str {
        "/stats"
    }
}

impl StatsFragment {
    pub fn sync_back(&self) -> &'static str {
        "/stats"
    }
}
