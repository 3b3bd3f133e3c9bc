//! Importing sales (`dsms import`): each line is a write dated by its `updated_at` and judged
//! under LWW against what its region holds (`domain::import`), batch by batch: one read of the
//! batch's ids, then one apply of the winners — never a round trip per line. Owns: routing a
//! batch to its home region (or the first reachable one), counting, pushing what was written.
//! Leaves: CSV (csvio.rs), the rule (domain/import.rs), SQL (store/).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{VenteError, Ventes, WriteKind};
use crate::domain::import::{ImportVerdict, dated_vente, judge};
use crate::domain::{NewVente, RegionName, Vente, VenteId};
use crate::store::{Batch, Store, StoreError};

/// One valid line of an import file.
#[derive(Clone, Debug)]
pub struct ImportLine {
    pub id: VenteId,
    pub vente: NewVente,
    /// The line's `updated_at`; `None` (no such column, or empty): a write dated now.
    pub dated: Option<DateTime<Utc>>,
}

/// How lines meet what the regions hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImportMode {
    /// Each line is a write dated by its `updated_at`: older than what a region holds, it is skipped.
    #[default]
    Dated,
    /// The file wins: every line is written with a fresh version, reverting newer edits and
    /// reviving deleted sales (`dsms import --replace`).
    Replace,
}

impl Ventes {
    /// Imports `lines`, grouped by home region (one read and at most two writes per group), with
    /// the same fail-over and push as client writes. Returns each line's verdict, in order. The
    /// verdicts are judged on one read before the write; a client write racing the import can
    /// still win over a line counted as written (the store's LWW guard has the last word).
    pub async fn import(&self, lines: &[ImportLine], mode: ImportMode) -> Result<Vec<ImportVerdict>, VenteError> {
        let mut groups: BTreeMap<&RegionName, Vec<&ImportLine>> = BTreeMap::new();
        let mut order: BTreeMap<&RegionName, Vec<usize>> = BTreeMap::new();
        for (i, line) in lines.iter().enumerate() {
            groups.entry(&line.vente.region).or_default().push(line);
            order.entry(&line.vente.region).or_default().push(i);
        }
        let mut verdicts = vec![ImportVerdict::Unchanged; lines.len()];
        for (home, group) in groups {
            let home_first = self.stores.iter().filter(|s| s.region() == home).chain(self.stores.iter().filter(|s| s.region() != home));
            let mut failures = Vec::new();
            let mut done = None;
            for store in home_first {
                match self.import_into(store, &group, mode).await {
                    Ok(result) => {
                        done = Some((store.region().clone(), result));
                        break;
                    }
                    Err(e) if e.is_unavailable() => failures.push(e),
                    Err(e) => return Err(VenteError::Store(e)),
                }
            }
            let Some((region, (written, group_verdicts))) = done else { return Err(VenteError::NoRegionReachable(failures)) };
            let ventes: Vec<Vente> = written.iter().map(|(_, v)| v.clone()).collect();
            // The command ends with every reachable region served.
            super::push_to(self.others(&region), ventes).await;
            for (kind, vente) in &written {
                self.notify(*kind, vente);
            }
            Self::notify_pushed(&self.listeners, &region);
            for (i, verdict) in order.get(home).into_iter().flatten().zip(group_verdicts) {
                verdicts[*i] = verdict;
            }
        }
        Ok(verdicts)
    }

    /// Judges `lines` against what `store` holds (one read) and writes the winners: dated lines by
    /// one LWW apply (their versions come from their dates), undated ones as fresh local writes.
    async fn import_into(
        &self,
        store: &Arc<dyn Store>,
        lines: &[&ImportLine],
        mode: ImportMode,
    ) -> Result<(Vec<(WriteKind, Vente)>, Vec<ImportVerdict>), StoreError> {
        let ids: Vec<VenteId> = lines.iter().map(|l| l.id).collect();
        let mut held = store.get_batch(&ids).await?;
        let now = (self.clock)();
        let region = store.region();
        let mut verdicts = Vec::with_capacity(lines.len());
        let (mut dated, mut fresh, mut fresh_kinds) = (Vec::new(), Vec::new(), Vec::new());
        for line in lines {
            let current = held.get(&line.id);
            let verdict = match (mode, line.dated) {
                (ImportMode::Dated, Some(at)) => {
                    let vente = dated_vente(region, line.id, &line.vente, at, now, current.map(|c| &c.seen));
                    let verdict = judge(&vente, current);
                    if matches!(verdict, ImportVerdict::Created | ImportVerdict::Updated) {
                        dated.push((kind_of(verdict), vente.clone()));
                        held.insert(line.id, vente);
                    }
                    verdict
                }
                // Dated now: newer than anything held, so only identical content is left alone.
                (ImportMode::Dated, None) if current.is_some_and(|c| !c.deleted && c.same_content(&line.vente)) => ImportVerdict::Unchanged,
                _ => {
                    let verdict = if current.is_some() { ImportVerdict::Updated } else { ImportVerdict::Created };
                    fresh.push((line.id, line.vente.clone()));
                    fresh_kinds.push(kind_of(verdict));
                    verdict
                }
            };
            verdicts.push(verdict);
        }
        if !dated.is_empty() {
            store.apply(&Batch::push(dated.iter().map(|(_, v)| v.clone()).collect())).await?;
        }
        let mut written = dated;
        if !fresh.is_empty() {
            written.extend(fresh_kinds.into_iter().zip(store.write_many(&fresh, now).await?));
        }
        Ok((written, verdicts))
    }
}

fn kind_of(verdict: ImportVerdict) -> WriteKind {
    if verdict == ImportVerdict::Created { WriteKind::Created } else { WriteKind::Updated }
}
