//! Applies in one message (`Store::push`, and small batches of a round): one call of the
//! `dsms_apply` function (migration 0009) in autocommit. What the function leaves for judgement,
//! and what it cannot take (versions too far ahead of the clock, refusals to release), goes
//! through the full apply.

use std::sync::atomic::Ordering;

use sqlx::FromRow;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::lanes::Lane;
use super::write::VenteArrays;
use crate::domain::lww::{Seen, Verdict, dedupe_by_id, judge_versions};
use crate::domain::version::Hlc;
use crate::domain::{RegionName, Vente, Version};
use crate::store::quarantine::any_beyond;
use crate::store::{Applied, Batch, StoreError};

/// A row `dsms_apply` left: its id, the stored version and history, and whether that settles it.
type Left = (uuid::Uuid, i64, String, String, bool);

impl PgStore {
    pub(super) async fn push(&self, rows: &[Vente]) -> Result<Applied, StoreError> {
        if rows.is_empty() {
            return Ok(Applied::default());
        }
        self.apply_in_one(&Batch::push(dedupe_by_id(rows).into_owned()), Lane::Push).await
    }

    /// Whether `batch` may try the one-message apply: nothing to quarantine or release.
    pub(super) fn fits_one_message(&self, batch: &Batch) -> bool {
        !any_beyond(&batch.rows, (self.clock)(), self.max_future) && (batch.from.is_none() || !self.refusals.load(Ordering::Relaxed))
    }

    /// `Store::apply` of `batch` (one version per id) in one call when the function can take it
    /// all; what it leaves unsettled goes through the full apply, which then moves the cursor.
    pub(super) async fn apply_in_one(&self, batch: &Batch, lane: Lane) -> Result<Applied, StoreError> {
        if (batch.rows.is_empty() && batch.from.is_none()) || !self.fits_one_message(batch) {
            return self.apply(batch).await;
        }
        let left = self.bounded(self.apply_call(batch, lane)).await?;
        let written = (batch.rows.len() - left.len()) as u64;
        // The function settled what is the same or older and already seen (and then a batch's
        // cursor moved). A row left unsettled by its rule or by `judge` goes through the full
        // apply, which judges it again, logs a conflict and moves the cursor.
        let again: Vec<Vente> = batch
            .rows
            .iter()
            .filter(|v| {
                left.iter().find(|(id, ..)| *id == v.id.0).is_some_and(|(_, hlc, origin, seen, settled)| {
                    let stored = Version { hlc: Hlc(*hlc), origin: RegionName::new(origin) };
                    !settled
                        || Seen::decode(seen).is_none_or(|seen| {
                            !matches!(judge_versions((&v.version, &v.seen), (&stored, &seen)), Verdict::Same | Verdict::Stale)
                        })
                })
            })
            .cloned()
            .collect();
        let mut applied = Applied { rows: written, conflicts: 0 };
        if !again.is_empty() {
            let rest = self.apply(&Batch { rows: again, from: batch.from.clone(), epoch: batch.epoch }).await?;
            applied.rows += rest.rows;
            applied.conflicts += rest.conflicts;
        }
        Ok(applied)
    }

    async fn apply_call(&self, batch: &Batch, lane: Lane) -> Result<Vec<Left>, StoreError> {
        let arrays = VenteArrays::of(&batch.rows);
        let source = batch.from.as_ref();
        let call = || {
            arrays
                .bind(sqlx::query(
                    "SELECT id, hlc, origin, seen, settled FROM dsms_apply($1::uuid[], $2::text[], $3::text[], $4::numeric[], $5::date[], \
                     $6::text[], $7::timestamptz[], $8::bool[], $9::int8[], $10::text[], $11::text[], \
                     $12::uuid, $13::text, $14::uuid, $15::int8, $16::uuid, $17::uuid, $18::timestamptz, $19::text)",
                ))
                .bind(source.map(|(s, _)| s.db_id))
                .bind(source.map(|(s, _)| s.region.as_str()))
                .bind(source.map(|(s, _)| s.db_id))
                .bind(source.map(|(_, end)| end.pos))
                .bind(source.map(|(_, end)| end.id))
                .bind(batch.epoch)
                .bind((self.clock)())
                .bind(self.region.as_str())
        };
        let left = |rows: Vec<PgRow>| rows.iter().map(<Left as FromRow<'_, PgRow>>::from_row).collect::<Result<Vec<Left>, _>>();
        let mut on = self.lane(lane).await.map_err(self.err())?;
        let rows = match call().fetch_all(self.on(on.conn())).await {
            // An apply is idempotent: once more even if the first one committed before the link broke.
            Err(e) if on.broken(&e) => call().fetch_all(self.db()).await,
            rows => rows,
        };
        rows.and_then(left).map_err(self.err())
    }
}
