//! Restores and rewinds: a region whose database went back in time (a file copied back, a
//! `.backup` put in place, pg_dump/pg_restore into a recreated database, PITR, a volume snapshot)
//! keeps its identity (`dsms_meta.db_id`) but not its history. Its peers' cursors have passed feed
//! positions it will hand out again (its new writes would never be read), and they hold, marked
//! `via` its identity, rows it lost (they would never be sent back to it). Owns: detecting it at
//! each contact and healing it. Leaves: the SQL (`Store::contact`, `cursor_rows`, `open_epoch`,
//! `rotate_identity`), the round's shape (engine.rs).
//!
//! Detection, by a mark a restore cannot keep, checked in the round's first contact with each
//! region (`Store::contact`: one round trip, with its identity and horizon). At each round, every source records an epoch (a
//! random id, only when its feed moved since the last one), and each target records, in its cursor
//! row on that source and in the same transaction as each applied batch, the epoch it read under.
//! Every change the target read had committed before that epoch was recorded (`Epoch::below`), so
//! a source that still holds the epoch still holds all of it; a source restored to an earlier
//! point has lost the epoch. A witness made of the last row read (its id and version) would not
//! do: the restored region may write that row again, at a version as great, before the next
//! contact. Second evidence: a cursor at or beyond the source's feed horizon (its counter, or its
//! server's transaction counter, went back). A restore of the *target* rolls its cursors back
//! together with its data: its witnesses are older epochs, still held, so it raises no false
//! alarm; its own peers detect it when they read it.
//!
//! Healing: the restored database gets a new identity (conditional on the old one, so that two
//! servers detecting it at once rotate it once). Every peer then reads it from the start (as for a
//! recreated database: LWW skips what they hold, and its writes made after the restore at reused
//! positions are read), and its own reads of its peers no longer leave out rows marked `via` its
//! old identity, so every version it lost comes back, LWW deciding. Writes pushed at once
//! (`Batch::push`) need no epoch: the receiving region's feed carries them on unmarked, so they come
//! back to a restored writer through the feed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;

use super::engine::Reached;
use super::report::RestoreDetected;
use crate::domain::RegionName;
use crate::store::Witness;

/// Epochs are forgotten after this (the latest of each database excepted): a region that has not
/// read a source for longer finds its epoch missing and the source is read again by everyone, as
/// after a restore. Safe, and rare.
const FORGET_EPOCHS_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// Epochs older than this, at `now`, may be forgotten (`Store::open_epoch`).
pub(super) fn forget_before(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::Duration::from_std(FORGET_EPOCHS_AFTER).unwrap_or(chrono::Duration::MAX)
}

/// What the check found: regions found restored (and healed), regions it could not heal (with the
/// error: they sit this round out).
#[derive(Default)]
pub(super) struct Checked {
    pub restored: Vec<RestoreDetected>,
    pub failed: Vec<(RegionName, String)>,
}

/// Checks every reached source against what every reached target remembers of it (their cursor
/// rows, read before the contact that told which epochs the source holds), and heals those that
/// went back in time: a new identity, and a new epoch when this round reads them.
pub(super) async fn check(reached: &mut [Reached], now: DateTime<Utc>) -> Checked {
    let mut checked = Checked::default();
    let found: Vec<Option<String>> = reached
        .iter()
        .map(|source| {
            let witnesses: Vec<(&RegionName, &Witness)> = reached
                .iter()
                .filter(|target| target.source.region != source.source.region)
                .filter_map(|target| Some((&target.source.region, target.witness_of(&source.source)?)))
                .collect();
            evidence(source.horizon, &source.held, &witnesses)
        })
        .collect();
    let healed = join_all(reached.iter().zip(found).map(|(contact, evidence)| async move {
        let evidence = evidence?;
        let healed = match contact.store.rotate_identity(contact.source.db_id).await {
            Ok(fresh) if contact.epoch.is_some() => contact.store.open_epoch(forget_before(now)).await.map(|epoch| (fresh, Some(epoch.id))),
            Ok(fresh) => Ok((fresh, None)),
            Err(e) => Err(e),
        };
        Some((evidence, healed))
    }))
    .await;
    for (contact, healed) in reached.iter_mut().zip(healed) {
        let Some((evidence, healed)) = healed else { continue };
        let region = contact.source.region.clone();
        match healed {
            Ok((fresh, epoch)) => {
                tracing::warn!(region = %region, %evidence, ancienne = %contact.source.db_id, nouvelle = %fresh,
                    "région restaurée ou revenue en arrière : nouvelle identité, ses pairs la relisent en entier et elle relit tout ce qu'elle avait envoyé");
                contact.source.db_id = fresh;
                contact.epoch = epoch;
                checked.restored.push(RestoreDetected { region, evidence });
            }
            Err(e) => checked.failed.push((region, e.to_string())),
        }
    }
    checked
}

/// Why a source went back in time, by what its readers remember (`None`: it did not, as far as
/// they can tell): `horizon` its feed horizon, `held` those of their epochs it holds.
fn evidence(horizon: i64, held: &[uuid::Uuid], witnesses: &[(&RegionName, &Witness)]) -> Option<String> {
    let mut found = Vec::new();
    for (target, witness) in witnesses {
        if witness.cursor.pos > 0 && witness.cursor.pos >= horizon {
            found.push(format!(
                "{target} a déjà lu jusqu'à la position {} de son journal, qui s'arrête avant {horizon}",
                witness.cursor.pos
            ));
        }
    }
    for (target, witness) in witnesses {
        if let Some(epoch) = witness.epoch.filter(|e| !held.contains(e)) {
            found.push(format!("l'époque {epoch} lue par {target} n'y figure plus"));
        }
    }
    if found.is_empty() { None } else { Some(found.join(" ; ")) }
}
