//! The apply plan, written once for every engine. Owns the order of an apply: leave out the rows
//! the region holds at exactly their version, move the clock past what is left, read (and lock)
//! the stored rows that differ, judge each row (`domain::lww::plan_apply`), write the winners,
//! log the losers, move the source's cursor, log the apply (`store::skip`). Leaves: the SQL of each step (`ApplySql`, one impl
//! per engine), the transaction around it (the caller's).

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Applied, FeedPosition, Source, StoreError};
use crate::domain::lww::{Conflict, plan_apply};
use crate::domain::{RegionName, Vente, VenteId, Version};

/// One engine's statements for the steps of an apply, inside one open transaction.
#[async_trait::async_trait]
pub(crate) trait ApplySql: Send {
    /// The versions stored for those of `rows` that exist, unlocked.
    async fn held_versions(&mut self, rows: &[Vente]) -> Result<HashMap<VenteId, Version>, StoreError>;
    /// Moves the region's clock past every version in `rows`, holding the clock row until commit
    /// (clock first, then rows: the order local writes lock in too).
    async fn advance_clock(&mut self, rows: &[Vente]) -> Result<(), StoreError>;
    /// The stored rows among `ids`, locked until the transaction ends; rows that cannot be
    /// decoded are quarantined and returned apart (by id), to be judged by their version alone.
    async fn stored(&mut self, ids: &[VenteId]) -> Result<(HashMap<VenteId, Vente>, Vec<VenteId>), StoreError>;
    /// Releases from quarantine those of `ids` (rows of this region) that now decode.
    async fn release_readable(&mut self, ids: &[VenteId]) -> Result<(), StoreError>;
    /// Writes rows judged newer, each only if still greater than the stored version (the SQL
    /// guard that agrees with `Version`'s `Ord`); returns the number written.
    async fn upsert_newer(&mut self, rows: &[Vente]) -> Result<u64, StoreError>;
    /// Logs conflicts, each once (deduplicated by row, winner and loser); returns those new.
    async fn log_conflicts(&mut self, conflicts: &[Conflict]) -> Result<u64, StoreError>;
    /// Moves this database's cursor on `source`'s feed forward to `end` (never back), recording
    /// the source's `epoch` the rows were read under (kept as it was when `None`).
    async fn move_cursor(
        &mut self,
        source: &Source,
        end: FeedPosition,
        epoch: Option<uuid::Uuid>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Records in the apply log that the `written` rows this transaction wrote are copies read
    /// from `source`'s feed up to `end` (see `store::skip`). Called only when rows were written.
    async fn log_applied(&mut self, source: &Source, end: FeedPosition, written: u64) -> Result<(), StoreError>;
}

/// What an apply knows of the stored versions before it locks anything.
#[derive(Clone, Copy)]
pub(crate) enum Held<'h> {
    /// Read (`ApplySql::held_versions`): rows held at exactly their version are left out first.
    Versions(&'h HashMap<VenteId, Version>),
    /// Not read, as the last batches found every row present (an update stream): every row is
    /// read locked, and judged `Same` when it is held at its version.
    Unknown,
}

/// Applies `rows` (one version per id, see `dedupe_by_id`) whose stored versions are `held`, as
/// received from `from` by `region` at `now`. Also returns whether every row was found stored.
pub(crate) async fn apply_rows(
    sql: &mut impl ApplySql,
    rows: &[Vente],
    held: Held<'_>,
    from: Option<&(Source, FeedPosition)>,
    epoch: Option<uuid::Uuid>,
    region: &RegionName,
    now: DateTime<Utc>,
) -> Result<(Applied, bool), StoreError> {
    let total = rows.len();
    // Rows held at exactly their version (a change coming back through another region's feed, a
    // replay) change nothing: leave them out before locking anything. Every stored version is
    // already below the clock, so the clock moves only for what is left.
    let is_held = |v: &Vente| matches!(held, Held::Versions(held) if held.get(&v.id) == Some(&v.version));
    let rows: Cow<'_, [Vente]> =
        if rows.iter().any(is_held) { Cow::Owned(rows.iter().filter(|v| !is_held(v)).cloned().collect()) } else { Cow::Borrowed(rows) };
    let mut stored = HashMap::new();
    let mut unreadable = Vec::new();
    if !rows.is_empty() {
        sql.advance_clock(&rows).await?;
        // Only rows stored at another version need reading, locked for the judgement. A stored
        // row that cannot be decoded (quarantined) is left out of it: the incoming version
        // replaces it if greater (the upsert's guard), with no conflict logged.
        let ids: Vec<VenteId> = match held {
            Held::Versions(held) => rows.iter().map(|v| v.id).filter(|id| held.contains_key(id)).collect(),
            Held::Unknown => rows.iter().map(|v| v.id).collect(),
        };
        if !ids.is_empty() {
            (stored, unreadable) = sql.stored(&ids).await?;
        }
    }
    let (writes, conflicts) = plan_apply(&rows, &stored, region, now);
    let written = if writes.is_empty() { 0 } else { sql.upsert_newer(&writes).await? };
    let logged = if conflicts.is_empty() { 0 } else { sql.log_conflicts(&conflicts).await? };
    if !unreadable.is_empty() {
        sql.release_readable(&unreadable).await?;
    }
    if let Some((source, end)) = from {
        sql.move_cursor(source, *end, epoch, now).await?;
        if written > 0 {
            sql.log_applied(source, *end, written).await?;
        }
    }
    let all_present = match held {
        Held::Versions(held) => held.len() == total,
        Held::Unknown => stored.len() + unreadable.len() == total,
    };
    Ok((Applied { rows: written, conflicts: logged }, all_present))
}
