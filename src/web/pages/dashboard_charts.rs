//! The dashboard's charts, as data: each chart with the table saying the same in text. Owns: round
//! durations, sales and amounts per region, sales per day. Leaves: geometry and SVG (charts.rs),
//! wording (dashboard_text.rs), where they are shown (dashboard_view.rs).

use std::time::Duration;

use rust_decimal::prelude::ToPrimitive;

use super::charts::{BarChart, Datum};
use super::dashboard_text::{RoundView, TimeView, compact_fr, decimal_fcfa, duration_fr, ventes_fr};
use super::views::count_fr;
use crate::monitor::analytics::Analytics;
use crate::monitor::stats::HistoryEntry;
use crate::sync::report::RoundStatus;

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

fn ms_label(value: f64) -> String {
    if value < 1.0 && value > 0.0 { format!("{value:.1} ms").replace('.', ",") } else { format!("{} ms", count_fr(value.round() as u64)) }
}

fn count_label(value: f64) -> String {
    count_fr(value.round() as u64)
}

/// Round durations, oldest to newest; `None` before the first round.
pub(super) fn durations_chart(history: &[HistoryEntry]) -> Option<ChartView> {
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
pub(super) fn per_region_chart(analytics: &Analytics) -> ChartView {
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

/// The amount of live sales per region, in FCFA.
pub(super) fn amounts_chart(analytics: &Analytics) -> ChartView {
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
pub(super) fn per_day_chart(analytics: &Analytics) -> ChartView {
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
