//! How the dashboard reads, in French. Owns: how a status, a round's status, a duration, a time,
//! an offset, a rate, a count and an amount total read, and the French report of a sync round.
//! Leaves: what the page shows (dashboard_view.rs), the charts (dashboard_charts.rs), plain counts
//! (views.rs).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

use super::flash::Notice;
use super::views::count_fr;
use crate::monitor::health::{self, Status};
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
    // A region restored from a backup was found and healed: said, and never shown as a plain success.
    let restored: Vec<&str> = report.restores.iter().map(|r| r.region.as_str()).collect();
    if !restored.is_empty() && report.status != RoundStatus::Failed {
        return Notice::warning(format!(
            "Synchronisation en {took} : {parts}{conflicts} ; base restaurée ou revenue en arrière détectée ({}) : relue en entier.",
            restored.join(", ")
        ));
    }
    match report.status {
        RoundStatus::Success => Notice::success(format!("Synchronisation réussie en {took} : {parts}{conflicts}.")),
        RoundStatus::Partial => Notice::warning(format!("Synchronisation partielle en {took} : {parts}{conflicts}.")),
        RoundStatus::Failed => Notice::warning(format!("Échec de la synchronisation en {took} : {parts}.")),
    }
}

/// A requested round that runs on after the button's request was answered.
pub fn running_notice() -> Notice {
    Notice::warning("La synchronisation prend plus de temps que prévu : elle continue en arrière-plan jusqu'au bout, et son rapport apparaîtra dans l'historique.")
        .with_link("/stats#historique-titre", "Voir l'historique des synchronisations")
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
            round_trips: 0,
        };
        let mut report = RoundReport {
            started_at: Utc::now(),
            duration: Duration::from_millis(12),
            status: RoundStatus::Success,
            regions: vec![outcome("Dakar", 3, None), outcome("Thies", 0, None), outcome("Saint-Louis", 1, None)],
            pairs: Vec::new(),
            conflicts: 0,
            restores: Vec::new(),
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
