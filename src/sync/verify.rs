//! `dsms verify`: compares every region row by row in id order, streaming (a few thousand rows
//! per region in memory at a time), and lists the ids whose rows differ or are missing somewhere.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::domain::{Vente, VenteId};
use crate::store::{Store, StoreError};

const BATCH: u32 = 5_000;

/// What a comparison found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Distinct ids seen in any region.
    pub ids: u64,
    /// Ids whose rows are not identical in every region (content and version), or missing in one.
    pub divergent: Vec<VenteId>,
}

/// One region's rows in id order, fetched a batch at a time.
struct Cursor {
    store: Arc<dyn Store>,
    buffer: VecDeque<Vente>,
    after: Option<VenteId>,
    exhausted: bool,
}

impl Cursor {
    async fn head(&mut self) -> Result<Option<&Vente>, StoreError> {
        if self.buffer.is_empty() && !self.exhausted {
            let batch = self.store.scan(self.after, BATCH, true).await?;
            self.exhausted = batch.len() < BATCH as usize;
            self.after = batch.last().map(|v| v.id).or(self.after);
            self.buffer.extend(batch);
        }
        Ok(self.buffer.front())
    }
}

/// Compares all `stores`; keeps at most `max_listed` divergent ids (the count is exact).
pub async fn verify(stores: &[Arc<dyn Store>], max_listed: usize) -> Result<(VerifyReport, u64), StoreError> {
    let mut cursors: Vec<Cursor> =
        stores.iter().map(|s| Cursor { store: s.clone(), buffer: VecDeque::new(), after: None, exhausted: false }).collect();
    let mut report = VerifyReport::default();
    let mut divergent_count = 0;
    loop {
        let mut smallest: Option<VenteId> = None;
        for cursor in &mut cursors {
            if let Some(head) = cursor.head().await? {
                smallest = Some(smallest.map_or(head.id, |s| s.min(head.id)));
            }
        }
        let Some(id) = smallest else { break };
        report.ids += 1;
        let mut rows = Vec::with_capacity(cursors.len());
        for cursor in &mut cursors {
            let here = cursor.buffer.front().is_some_and(|v| v.id == id);
            rows.push(if here { cursor.buffer.pop_front() } else { None });
        }
        let first = &rows[0];
        let same = rows.iter().all(|r| match (r, first) {
            (Some(a), Some(b)) => same_row(a, b),
            _ => false,
        });
        if !same {
            divergent_count += 1;
            if report.divergent.len() < max_listed {
                report.divergent.push(id);
            }
        }
    }
    Ok((report, divergent_count))
}

/// Two copies of a row are the same when content, tombstone, time and version all agree.
fn same_row(a: &Vente, b: &Vente) -> bool {
    a.produit == b.produit
        && a.montant == b.montant
        && a.date_vente == b.date_vente
        && a.region == b.region
        && a.updated_at == b.updated_at
        && a.deleted == b.deleted
        && a.version == b.version
}
