//! The dashboard's view models: what `/stats` shows, already worded in French. Owns: how a
//! status, a duration, a time, an offset, a rate and an amount total read on the dashboard, the
//! French report of a sync round, and the charts' data. Leaves: gathering (dashboard.rs), markup
//! (`templates/stats*.html`), geometry (charts.rs).

use std::time::Duration;

use askama::Template;
use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::charts::{BarChart, Datum};
use super::flash::Notice;
use super::views::count_fr;
use crate::monitor::analytics::Analytics;
use crate::monitor::health::{self, Status};
use crate::monitor::stats::HistoryEntry;
use crate::monitor::{RegionSnapshot, StatsSnapshot};

use crate::domain::Backend;
use crate::domain::lww::Conflict;
use crate::sync::report::{RoundReport, RoundStatus};

/// A moment, for a `<time>` element: machine-readable and in French (UTC, said by the page).
#[derive(Clone, Debug)]
pub struct TimeView {
    pub iso: String,
    /// `24/11/2026 14:30:00`.
    pub text: String,
}

impl TimeView {
    pub fn of(time: DateTime<Utc>) -> Self {
        Self { iso: time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(), text: time.format("%d/%m/%Y %H:%M:%S").to_string() }
    }
}

/// `0,4 ms`, `12 ms`, `1 234 ms`: a decimal below 10 ms, whole milliseconds above.
pub fn duration_fr(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 9.95 { format!("{ms:.1} ms").replace('.', ",") } else { format!("{} ms", count_fr(ms.round() as u64)) }
}

/// `+12 ms`, `-3 ms`: a clock offset.
pub fn offset_fr(offset: TimeDelta) -> String {
    let ms = (health::offset_seconds(offset) * 1000.0).round() as i64;
    let sign = if ms < 0 { "-" } else { "+" };
    format!("{sign}{} ms", count_fr(ms.unsigned_abs()))
}

/// `95,6 %`, `100 %`.
pub fn percent_fr(rate: f64) -> String {
    format!("{rate}\u{a0}%").replace('.', ",")
}

/// An exact amount total: `1 500 000,50 FCFA` (no float on the way).
pub fn decimal_fcfa(value: Decimal) -> String {
    let mut value = value;
    value.rescale(2);
    let cents = value.mantissa();
    let units = (cents / 100).unsigned_abs().to_string();
    let mut grouped = String::with_capacity(units.len() * 2);
    for (i, digit) in units.chars().enumerate() {
        if i > 0 && (units.len() - i) % 3 == 0 {
            grouped.push('\u{202f}');
        }
        grouped.push(digit);
    }
    let sign = if cents < 0 { "-" } else { "" };
    match (cents % 100).unsigned_abs() {
        0 => format!("{sign}{grouped} FCFA"),
        rest => format!("{sign}{grouped},{rest:02} FCFA"),
    }
}

/// `3 lignes`, `1 ligne`, `0 ligne` (French: the singular up to one).
fn lignes(n: u64) -> String {
    format!("{} {}", count_fr(n), if n > 1 { "lignes" } else { "ligne" })
}

/// `12 ventes`, `1 vente`, `0 vente`.
pub fn ventes_fr(n: u64) -> String {
    format!("{} {}", count_fr(n), if n > 1 { "ventes" } else { "vente" })
}

/// What a round did, region by region, for the flash after « Synchroniser maintenant ».
pub fn round_notice(report: &RoundReport) -> Notice {
    let took = duration_fr(report.duration);
    let reached: Vec<String> =
        report.regions.iter().filter(|r| r.reached()).map(|r| format!("{} {}", r.region, lignes(r.rows_applied))).collect();
    let failed: Vec<String> =
        report.regions.iter().filter_map(|r| r.error.as_ref().map(|e| format!("échec pour {} — {e}", r.region))).collect();
    let conflicts = match report.conflicts {
        0 => String::new(),
        1 => " ; 1 conflit résolu".to_owned(),
        n => format!(" ; {} conflits résolus", count_fr(n)),
    };
    let parts = reached.into_iter().chain(failed).collect::<Vec<_>>().join(", ");
    match report.status {
        RoundStatus::Success => Notice::success(format!("Synchronisation réussie en {took} : {parts}{conflicts}.")),
        RoundStatus::Partial => Notice::warning(format!("Synchronisation partielle en {took} : {parts}{conflicts}.")),
        RoundStatus::Failed => Notice::warning(format!("Échec de la synchronisation en {took} : {parts}.")),
    }
}

/// How a region status reads: the guide's word, an icon and a French gloss (never colour alone).
pub struct StatusView {
    pub word: &'static str,
    pub gloss: &'static str,
    pub icon: &'static str,
    pub class: &'static str,
}

impl StatusView {
    pub fn of(status: Status) -> Self {
        match status {
            Status::Online => Self { word: "ONLINE", gloss: "en ligne", icon: "✓", class: "online" },
            Status::Warning => Self { word: "WARNING", gloss: "à surveiller", icon: "!", class: "warning" },
            Status::Offline => Self { word: "OFFLINE", gloss: "hors ligne", icon: "✕", class: "offline" },
        }
    }
}

/// A round's status in the history: icon, word, class.
pub struct RoundView {
    pub word: &'static str,
    pub icon: &'static str,
    pub class: &'static str,
}

impl RoundView {
    pub fn of(status: RoundStatus) -> Self {
        match status {
            RoundStatus::Success => Self { word: "Réussie", icon: "✓", class: "online" },
            RoundStatus::Partial => Self { word: "Partielle", icon: "!", class: "warning" },
            RoundStatus::Failed => Self { word: "Échec", icon: "✕", class: "offline" },
        }
    }
}

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

/// A row of a chart's data table (its text alternative).
pub struct DataRow {
    pub cells: Vec<String>,
}

/// A chart and the table saying the same in text.
pub struct ChartView {
    pub chart: BarChart,
    pub headers: Vec<&'static str>,
    pub rows: Vec<DataRow>,
    /// The legend: (CSS class, text).
    pub legend: Vec<(&'static str, &'static str)>,
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
        }
    }
}

fn ms_label(value: f64) -> String {
    if value < 1.0 && value > 0.0 { format!("{value:.1} ms").replace('.', ",") } else { format!("{} ms", count_fr(value.round() as u64)) }
}

fn count_label(value: f64) -> String {
    count_fr(value.round() as u64)
}

/// Round durations, oldest to newest; `None` before the first round.
fn durations_chart(history: &[HistoryEntry]) -> Option<ChartView> {
    if history.is_empty() {
        return None;
    }
    let oldest_first: Vec<&HistoryEntry> = history.iter().rev().collect();
    let last = oldest_first.len() - 1;
    let data: Vec<Datum> = oldest_first
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let round = RoundView::of(h.status);
            let at = TimeView::of(h.started_at);
            let label = (i == 0 || i == last).then(|| h.started_at.format("%H:%M:%S").to_string());
            // (the chart anchors these two so they stay inside the drawing)
            Datum {
                value: h.duration.as_secs_f64() * 1000.0,
                title: format!("{} UTC — {} — {}", at.text, round.word, duration_fr(h.duration)),
                class: match h.status {
                    RoundStatus::Success => "bar-ok",
                    RoundStatus::Partial => "bar-partiel",
                    RoundStatus::Failed => "bar-echec",
                },
                label,
                mark: (h.status != RoundStatus::Success).then(|| round.icon.to_owned()),
            }
        })
        .collect();
    let slowest = history.iter().map(|h| h.duration).max().unwrap_or_default();
    let total: Duration = history.iter().map(|h| h.duration).sum();
    let average = total / u32::try_from(history.len()).unwrap_or(u32::MAX).max(1);
    let missed = history.iter().filter(|h| h.status != RoundStatus::Success).count();
    let desc = format!(
        "{} synchronisations, de la plus ancienne à gauche à la plus récente à droite. Durée moyenne {}, la plus longue {} ; {} sans succès complet.",
        history.len(),
        duration_fr(average),
        duration_fr(slowest),
        missed
    );
    let chart = BarChart::new("graphe-durees", "Durée des synchronisations".into(), desc, &data, false, ms_label);
    let rows = history
        .iter()
        .map(|h| {
            let at = TimeView::of(h.started_at);
            DataRow { cells: vec![at.text, RoundView::of(h.status).word.to_owned(), duration_fr(h.duration)] }
        })
        .collect();
    Some(ChartView {
        chart,
        headers: vec!["Date/Heure (UTC)", "Statut", "Durée"],
        rows,
        legend: vec![("bar-ok", "Réussie"), ("bar-partiel", "Partielle (!)"), ("bar-echec", "Échec (✕)")],
    })
}

/// Live sales per region (by the sale's region).
fn per_region_chart(analytics: &Analytics) -> ChartView {
    let data: Vec<Datum> = analytics
        .regions
        .iter()
        .map(|r| Datum {
            value: r.count as f64,
            title: format!("{} : {}, {}", r.region, ventes_fr(r.count), decimal_fcfa(r.total)),
            class: "bar-ventes",
            label: Some(r.region.to_string()),
            mark: Some(count_fr(r.count)),
        })
        .collect();
    let desc = format!(
        "Nombre de ventes enregistrées par région : {}.",
        analytics.regions.iter().map(|r| format!("{} {}", r.region, ventes_fr(r.count))).collect::<Vec<_>>().join(", ")
    );
    let chart = BarChart::new("graphe-regions", "Ventes par région".into(), desc, &data, true, count_label);
    let rows = analytics
        .regions
        .iter()
        .map(|r| DataRow { cells: vec![r.region.to_string(), count_fr(r.count), decimal_fcfa(r.total), decimal_fcfa(r.average)] })
        .collect();
    ChartView { chart, headers: vec!["Région", "Ventes", "Montant total", "Montant moyen"], rows, legend: Vec::new() }
}

/// `950`, `12,5 k`, `1,5 M`, `2 Md`: a chart's axis and marks (the exact amounts are in its table).
pub fn compact_fr(value: f64) -> String {
    let (scaled, unit) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, " Md"),
        v if v >= 1e6 => (value / 1e6, " M"),
        v if v >= 1e3 => (value / 1e3, " k"),
        _ => (value, ""),
    };
    let text = if (scaled - scaled.round()).abs() < 0.05 { format!("{}", scaled.round() as i64) } else { format!("{scaled:.1}") };
    format!("{}{unit}", text.replace('.', ","))
}

/// The amount of live sales per region, in FCFA.
fn amounts_chart(analytics: &Analytics) -> ChartView {
    let data: Vec<Datum> = analytics
        .regions
        .iter()
        .map(|r| {
            let value = r.total.to_f64().unwrap_or(0.0);
            Datum {
                value,
                title: format!("{} : {}", r.region, decimal_fcfa(r.total)),
                class: "bar-montant",
                label: Some(r.region.to_string()),
                mark: Some(compact_fr(value)),
            }
        })
        .collect();
    let desc = format!(
        "Montant total des ventes par région, en FCFA : {}.",
        analytics.regions.iter().map(|r| format!("{} {}", r.region, decimal_fcfa(r.total))).collect::<Vec<_>>().join(", ")
    );
    let chart = BarChart::new("graphe-montants", "Montant des ventes par région (FCFA)".into(), desc, &data, false, compact_fr);
    let rows = analytics.regions.iter().map(|r| DataRow { cells: vec![r.region.to_string(), decimal_fcfa(r.total)] }).collect();
    ChartView { chart, headers: vec!["Région", "Montant total"], rows, legend: Vec::new() }
}

/// Sales per day over the last 30 days, all regions.
fn per_day_chart(analytics: &Analytics) -> ChartView {
    let days = &analytics.all.per_day;
    let last = days.len().saturating_sub(1);
    let data: Vec<Datum> = days
        .iter()
        .enumerate()
        .map(|(i, d)| Datum {
            value: d.count as f64,
            title: format!("{} : {}, {}", d.date.format("%d/%m/%Y"), ventes_fr(d.count), decimal_fcfa(d.total)),
            class: "bar-jour",
            label: ((last - i) % 7 == 0).then(|| d.date.format("%d/%m").to_string()),
            mark: None,
        })
        .collect();
    let busiest = days.iter().max_by_key(|d| (d.count, std::cmp::Reverse(d.date)));
    let first = days.first().map(|d| d.date.format("%d/%m/%Y").to_string()).unwrap_or_default();
    let desc = match busiest.filter(|d| d.count > 0) {
        Some(top) => format!(
            "Ventes par jour du {first} au {} : {} au total ; jour le plus chargé le {} ({}).",
            analytics.today.format("%d/%m/%Y"),
            ventes_fr(days.iter().map(|d| d.count).sum()),
            top.date.format("%d/%m/%Y"),
            ventes_fr(top.count)
        ),
        None => format!("Aucune vente datée du {first} au {}.", analytics.today.format("%d/%m/%Y")),
    };
    let chart = BarChart::new("graphe-jours", "Ventes des 30 derniers jours".into(), desc, &data, true, count_label);
    let rows = days
        .iter()
        .rev()
        .map(|d| DataRow { cells: vec![d.date.format("%d/%m/%Y").to_string(), count_fr(d.count), decimal_fcfa(d.total)] })
        .collect();
    ChartView { chart, headers: vec!["Date", "Ventes", "Montant total"], rows, legend: Vec::new() }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Montant, RegionName};
    use crate::sync::report::RegionOutcome;

    #[test]
    fn numbers_times_and_amounts_read_the_french_way() {
        assert_eq!(duration_fr(Duration::from_micros(400)), "0,4 ms");
        assert_eq!(duration_fr(Duration::from_millis(12)), "12 ms");
        assert_eq!(duration_fr(Duration::from_millis(1234)), "1\u{202f}234 ms");
        assert_eq!(offset_fr(TimeDelta::milliseconds(-3)), "-3 ms");
        assert_eq!(offset_fr(TimeDelta::milliseconds(12)), "+12 ms");
        assert_eq!(percent_fr(95.6), "95,6\u{a0}%");
        assert_eq!(percent_fr(100.0), "100\u{a0}%");
        let time = DateTime::parse_from_rfc3339("2026-11-24T14:30:00.123Z").unwrap().with_timezone(&Utc);
        assert_eq!(TimeView::of(time).text, "24/11/2026 14:30:00");
        assert_eq!(TimeView::of(time).iso, "2026-11-24T14:30:00.123Z");
        for cents in [1, 150_000, 75_000_050, 999_999_999_999] {
            let montant = Montant::from_cents(cents).unwrap();
            assert_eq!(decimal_fcfa(montant.to_decimal()), montant.to_fcfa(), "{cents}");
        }
        assert_eq!(decimal_fcfa("123456789012345.5".parse().unwrap()), "123\u{202f}456\u{202f}789\u{202f}012\u{202f}345,50 FCFA");
        assert_eq!(decimal_fcfa(Decimal::ZERO), "0 FCFA");
        assert_eq!(compact_fr(950.0), "950");
        assert_eq!(compact_fr(12_500.0), "12,5 k");
        assert_eq!(compact_fr(1_500_000.0), "1,5 M");
        assert_eq!(compact_fr(2_000_000_000.0), "2 Md");
        assert_eq!(compact_fr(0.0), "0");
    }

    #[test]
    fn a_round_is_reported_region_by_region() {
        let outcome = |name: &str, rows: u64, error: Option<&str>| RegionOutcome {
            region: RegionName::new(name),
            error: error.map(str::to_owned),
            latency: None,
            rows_applied: rows,
            pending: 0,
        };
        let mut report = RoundReport {
            started_at: Utc::now(),
            duration: Duration::from_millis(12),
            status: RoundStatus::Success,
            regions: vec![outcome("Dakar", 3, None), outcome("Thies", 0, None), outcome("Saint-Louis", 1, None)],
            pairs: Vec::new(),
            conflicts: 0,
        };
        let notice = round_notice(&report);
        assert_eq!(notice.text, "Synchronisation réussie en 12 ms : Dakar 3 lignes, Thies 0 ligne, Saint-Louis 1 ligne.");
        assert_eq!(notice.class(), "flash-ok");
        report.status = RoundStatus::Partial;
        report.conflicts = 2;
        report.regions[2] = outcome("Saint-Louis", 0, Some("région Saint-Louis injoignable : panne simulée"));
        let notice = round_notice(&report);
        assert_eq!(
            notice.text,
            "Synchronisation partielle en 12 ms : Dakar 3 lignes, Thies 0 ligne, échec pour Saint-Louis — région Saint-Louis \
             injoignable : panne simulée ; 2 conflits résolus."
        );
        assert_eq!(notice.class(), "flash-attention");
    }
}
