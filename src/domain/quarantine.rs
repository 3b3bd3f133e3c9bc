//! Quarantine: rows a region holds (or is sent) that dsms cannot take as they are. Owns: what a
//! quarantined item is, and the clock rule that refuses a version too far in the future.
//! Leaves: the table that keeps the items and the decoding that finds them (store/), who is told
//! (monitor/), how they are shown (web/).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::version::Hlc;
use super::{RegionName, VenteId};

/// A row set aside instead of blocking a feed or a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// The region whose database holds the item (it is shown WARNING).
    pub region: RegionName,
    /// The region the row belongs to: `region` itself for a row it cannot decode, the sending
    /// region for a version it refused.
    pub source: RegionName,
    pub id: VenteId,
    /// Why, in French.
    pub reason: String,
    /// The row as found (or as received), for whoever fixes it.
    pub raw: String,
    /// When it was first found.
    pub detected_at: DateTime<Utc>,
    /// When it was last met (a feed or a listing that skipped it).
    pub last_seen: DateTime<Utc>,
}

/// The greatest clock value a region accepts from elsewhere when its wall clock reads `now`:
/// `now + max_future` (saturating, never wrapping).
pub fn future_bound(now: DateTime<Utc>, max_future: Duration) -> Hlc {
    let ahead = i64::try_from(max_future.as_millis()).unwrap_or(i64::MAX);
    let ms = now.timestamp_millis().saturating_add(ahead);
    Hlc::from_wall_ms(ms).saturating_end_of_ms()
}

/// The French reason for a refused version.
pub fn too_far_ahead_reason(hlc: Hlc, from: &RegionName, now: DateTime<Utc>, max_future: Duration) -> String {
    let when = DateTime::<Utc>::from_timestamp_millis(hlc.wall_ms())
        .map_or_else(|| "au-delà de toute date".to_owned(), |t| format!("datée du {}", t.format("%d/%m/%Y %H:%M:%S UTC")));
    format!(
        "version reçue de {from} {when}, plus de {} en avance sur l'horloge de cette base ({}) : refusée, aucune horloge avancée",
        humantime::format_duration(max_future),
        now.format("%d/%m/%Y %H:%M:%S UTC")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_future_bound_never_wraps_and_refuses_i64_max() {
        let now = Utc::now();
        let day = Duration::from_secs(86_400);
        let bound = future_bound(now, day);
        assert!(Hlc(i64::MAX) > bound);
        assert!(Hlc::from_wall_ms((now + chrono::Duration::days(365)).timestamp_millis()) > bound);
        assert!(Hlc::from_wall_ms((now + chrono::Duration::hours(1)).timestamp_millis()) < bound);
        assert_eq!(future_bound(now, Duration::MAX), Hlc(i64::MAX));
        let reason = too_far_ahead_reason(Hlc(i64::MAX), &RegionName::new("Dakar"), now, day);
        assert!(reason.starts_with("version reçue de Dakar"), "{reason}");
    }
}
