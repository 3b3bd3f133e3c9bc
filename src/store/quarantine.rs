//! Quarantine in the stores: rows that cannot be decoded and replicated versions too far in the
//! future are set aside in each region's `dsms_quarantine` table (PostgreSQL migration 0006,
//! SQLite 0093) instead of failing a feed page, a listing or an apply. Owns: what a bad row is
//! (`Bad`), the screening of incoming versions against `max_future` (`screen`), and the
//! engine-neutral parts of recording and releasing items. Leaves: the SQL (postgres/quarantine.rs,
//! sqlite/quarantine.rs), the rule (domain/quarantine.rs).

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::quarantine::{future_bound, too_far_ahead_reason};
use crate::domain::{RegionName, Vente};

/// How far ahead of a region's clock a replicated version may be (config `max_future`).
pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(24 * 3600);

/// A stored row that cannot be read as a sale: its id, the field at fault (`seen` lets a foreign
/// write that fixes the row start its history afresh) and why, in French.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bad {
    pub id: Uuid,
    pub field: &'static str,
    pub reason: String,
    /// The row's clock value as read, when readable: it is recorded only if the row still holds
    /// it (a reader that met the bad row may record it after a newer version replaced it).
    pub hlc: Option<i64>,
}

impl Bad {
    /// The same, naming the clock value the row held when read.
    pub fn at(self, hlc: Option<i64>) -> Self {
        Self { hlc, ..self }
    }

    /// The error a strict reader (a write that must see the row) reports.
    pub fn corrupt(self, region: &RegionName) -> StoreError {
        StoreError::Corrupt { region: region.clone(), message: format!("vente {} : {}", self.id, self.reason) }
    }

    /// A column the driver could not read at all (SQLite keeps any type in any column).
    pub fn unreadable(id: Uuid, field: &'static str, error: &sqlx::Error) -> Self {
        Self { id, field, reason: format!("colonne {field} illisible : {error}"), hlc: None }
    }
}

/// A replicated version refused by its target: from where, and why.
#[derive(Clone, Debug)]
pub(crate) struct Refused {
    pub source: RegionName,
    pub vente: Vente,
    pub reason: String,
}

/// Whether some of `rows` are beyond what a region whose clock reads `now` accepts (then the
/// database's own clock is read too: the later of the two decides).
pub(crate) fn any_beyond(rows: &[Vente], now: DateTime<Utc>, max_future: Duration) -> bool {
    let bound = future_bound(now, max_future);
    rows.iter().any(|v| v.version.hlc > bound)
}

/// Splits incoming rows into those the target may apply and those too far ahead of its wall
/// clock `now` (they are quarantined and never move its clock). `source`: the region whose feed
/// the rows come from (`None`: pushed by a write, each row's origin is its source).
pub(crate) fn screen<'r>(
    rows: &'r [Vente],
    source: Option<&RegionName>,
    now: DateTime<Utc>,
    max_future: Duration,
) -> (Cow<'r, [Vente]>, Vec<Refused>) {
    let bound = future_bound(now, max_future);
    if rows.iter().all(|v| v.version.hlc <= bound) {
        return (Cow::Borrowed(rows), Vec::new());
    }
    let mut accepted = Vec::with_capacity(rows.len());
    let mut refused = Vec::new();
    for v in rows {
        if v.version.hlc <= bound {
            accepted.push(v.clone());
        } else {
            let from = source.unwrap_or(&v.version.origin).clone();
            let reason = too_far_ahead_reason(v.version.hlc, &from, now, max_future);
            tracing::warn!(vente = %v.id.0, source = %from, hlc = v.version.hlc.0, "version trop loin dans le futur : mise en quarantaine");
            refused.push(Refused { source: from, vente: v.clone(), reason });
        }
    }
    (Cow::Owned(accepted), refused)
}
