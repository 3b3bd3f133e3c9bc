//! The replication rule, written once. Owns: what "seen" means (version vectors), which version
//! wins (LWW), and what counts as a conflict. Both stores call `judge`; the SQL guard they add
//! (`WHERE (incoming.hlc, incoming.origin) > (stored.hlc, stored.origin)`) must agree with it, and a
//! property test checks that it does.

use std::collections::BTreeMap;

use super::version::{Hlc, Version};
use chrono::{DateTime, Utc};

use crate::domain::{RegionName, Vente, VenteId};

/// What a row version had seen when it was written: for each origin region, the greatest clock
/// value of that region's writes to this row included in its history. A region's own writes to a
/// row follow each other there, so one number per region summarises them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen(BTreeMap<RegionName, Hlc>);

impl Seen {
    /// The history of a write stamped `version` on top of `base` (what its region held).
    pub fn after(base: Option<&Seen>, version: &Version) -> Self {
        let mut seen = base.cloned().unwrap_or_default();
        seen.0.insert(version.origin.clone(), version.hlc);
        seen
    }

    /// The text of `Seen::after(None, version)` before its clock value: a region's first write to
    /// a row stores `{prefix}{hlc}`, so a store that learns the clock value only in the statement
    /// that writes the row can complete it there.
    pub fn first_write_prefix(origin: &RegionName) -> String {
        format!("{}=", escape(origin.as_str()))
    }

    /// True when this history includes every write `other` includes.
    pub fn includes(&self, other: &Seen) -> bool {
        other.0.iter().all(|(region, hlc)| self.0.get(region).is_some_and(|mine| mine >= hlc))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RegionName, &Hlc)> {
        self.0.iter()
    }

    /// Compact text for storage: `Dakar=123;Thies=456` (names never contain `=` or `;`… but are
    /// escaped anyway by percent-encoding those two characters and `%`).
    pub fn encode(&self) -> String {
        self.0.iter().map(|(r, h)| format!("{}={}", escape(r.as_str()), h.0)).collect::<Vec<_>>().join(";")
    }

    pub fn decode(text: &str) -> Option<Self> {
        let unescape = |s: &str| s.replace("%3B", ";").replace("%3D", "=").replace("%25", "%");
        let mut seen = BTreeMap::new();
        for part in text.split(';').filter(|p| !p.is_empty()) {
            let (region, hlc) = part.rsplit_once('=')?;
            seen.insert(RegionName::new(&unescape(region)), Hlc(hlc.parse().ok()?));
        }
        Some(Self(seen))
    }
}

/// A region name as `Seen::encode` writes it: `%`, `=` and `;` percent-encoded.
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('=', "%3D").replace(';', "%3B")
}

/// What to do with an incoming row version, given the stored one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No stored row: insert.
    Insert,
    /// Newer, and its writer had seen the stored version: an ordinary edit.
    Replace,
    /// Newer, but its writer had not seen the stored version: replace it and log it as the loser.
    ReplaceConflict,
    /// Older, and the stored version's writer had seen it: nothing to do.
    Stale,
    /// Older, and never seen by the stored version's writer: keep the stored row, log the incoming
    /// one as the loser.
    StaleConflict,
    /// The same version (an echo or a replay): nothing to do.
    Same,
}

impl Verdict {
    pub fn writes(self) -> bool {
        matches!(self, Self::Insert | Self::Replace | Self::ReplaceConflict)
    }

    pub fn conflict(self) -> bool {
        matches!(self, Self::ReplaceConflict | Self::StaleConflict)
    }
}

/// The LWW rule: between two versions of a row the greater wins, whole row, wherever and in
/// whatever order they meet. A conflict is two versions neither of which had seen the other.
pub fn judge(incoming: &Vente, stored: Option<&Vente>) -> Verdict {
    let Some(stored) = stored else { return Verdict::Insert };
    judge_versions((&incoming.version, &incoming.seen), (&stored.version, &stored.seen))
}

/// `judge` on what it reads of each row: its version and its history.
pub fn judge_versions(incoming: (&Version, &Seen), stored: (&Version, &Seen)) -> Verdict {
    let concurrent = !incoming.1.includes(stored.1) && !stored.1.includes(incoming.1);
    match incoming.0.cmp(stored.0) {
        std::cmp::Ordering::Equal => Verdict::Same,
        std::cmp::Ordering::Greater if concurrent => Verdict::ReplaceConflict,
        std::cmp::Ordering::Greater => Verdict::Replace,
        std::cmp::Ordering::Less if concurrent => Verdict::StaleConflict,
        std::cmp::Ordering::Less => Verdict::Stale,
    }
}

/// A lost write: the version that was overwritten without its overwriter having seen it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub winner: Vente,
    pub loser: Vente,
    /// The region whose database detected it.
    pub detected_in: RegionName,
    pub detected_at: chrono::DateTime<chrono::Utc>,
}

/// Judges every incoming row against the stored one: the rows to write, and the conflicts.
pub fn plan_apply(
    incoming: &[Vente],
    stored: &std::collections::HashMap<VenteId, Vente>,
    detected_in: &RegionName,
    now: DateTime<Utc>,
) -> (Vec<Vente>, Vec<Conflict>) {
    let mut writes = Vec::new();
    let mut conflicts = Vec::new();
    for row in incoming {
        let current = stored.get(&row.id);
        let verdict = judge(row, current);
        if verdict.writes() {
            writes.push(row.clone());
        }
        if let (true, Some(current)) = (verdict.conflict(), current) {
            let (winner, loser) = if verdict.writes() { (row, current) } else { (current, row) };
            conflicts.push(Conflict { winner: winner.clone(), loser: loser.clone(), detected_in: detected_in.clone(), detected_at: now });
        }
    }
    writes.sort_by_key(|v| v.id);
    (writes, conflicts)
}

/// Keeps, for each id, only the greatest version (a batch must name each row once).
pub fn dedupe_by_id(rows: &[Vente]) -> std::borrow::Cow<'_, [Vente]> {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    if rows.iter().all(|v| seen.insert(v.id)) {
        return std::borrow::Cow::Borrowed(rows);
    }
    let mut best: std::collections::HashMap<VenteId, &Vente> = std::collections::HashMap::with_capacity(rows.len());
    for v in rows {
        best.entry(v.id)
            .and_modify(|b| {
                if v.version > b.version {
                    *b = v
                }
            })
            .or_insert(v);
    }
    let mut out: Vec<Vente> = best.into_values().cloned().collect();
    out.sort_by_key(|v| v.id);
    std::borrow::Cow::Owned(out)
}
