//! Restores and rewinds: a region whose database went back in time (a file copied back, a
//! `.backup` put in place, pg_dump/pg_restore into a recreated database, PITR, a volume snapshot)
//! keeps its identity (`dsms_meta.db_id`) but not its history. Its peers' cursors have passed feed
//! positions it will hand out again (its new writes would never be read), and they hold, marked
//! `via` its identity, rows it lost (they would never be sent back to it). Owns: detecting it at
//! each contact and healing it. Leaves: the SQL (`Store::open_epoch`, `witness`, `held_epochs`,
//! `rotate_identity`), the round's shape (engine.rs).
//!
//! Detection, by a mark a restore cannot keep. At each round, every source records an epoch (a
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
use crate::store::{Store, StoreError, Witness};

/// Epochs are forgotten after this (the latest of each database excepted): a region that has not
/// read a source for longer finds its epoch missing and the source is read again by everyone, as
/// after a restore. Safe, and rare.
const FORGET_EPOCHS_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the check found: regions found restored (and healed), regions it could not check or
/// prepare (with the error: they sit this round out).
#[derive(Default)]
pub(super) struct Checked {
    pub restored: Vec<RestoreDetected>,
    pub failed: Vec<(RegionName, String)>,
}

/// Checks every reached source against what every other reached region remembers of it, heals
/// those that went back in time, then opens this round's epoch on every source.
///
/// `targets[i]`: whether this round pulls into `reached[i]` (with a home, only home is filled).
pub(super) async fn check_and_open_epochs(reached: &mut [Reached], targets: &[bool], now: DateTime<Utc>) -> Checked {
    let mut checked = Checked::default();
    // What each target remembers of each source (errors are left to the pairs, which report them).
    let contacts = &*reached;
    let asks = contacts.iter().zip(targets).filter(|(_, pulled)| **pulled).map(|(target, _)| target).flat_map(|target| {
        contacts
            .iter()
            .enumerate()
            .filter(|(_, s)| s.source.region != target.source.region)
            .map(move |(i, source)| async move { (i, target.source.region.clone(), target.store.witness(&source.source).await) })
    });
    let witnesses: Vec<(usize, RegionName, Witness)> = join_all(asks)
        .await
        .into_iter()
        .filter_map(|(i, target, witness)| match witness {
            Ok(Some(witness)) => Some((i, target, witness)),
            _ => None,
        })
        .collect();
    let verdicts = join_all(contacts.iter().enumerate().map(|(i, source)| {
        let mine: Vec<&(usize, RegionName, Witness)> = witnesses.iter().filter(|(s, _, _)| *s == i).collect();
        async move { evidence(source.store.as_ref(), source.horizon, &mine).await }
    }))
    .await;
    for (contact, verdict) in reached.iter_mut().zip(verdicts) {
        let region = contact.source.region.clone();
        let evidence = match verdict {
            Ok(None) => None,
            Ok(Some(evidence)) => Some(evidence),
            Err(e) => {
                checked.failed.push((region, e.to_string()));
                continue;
            }
        };
        if let Some(evidence) = evidence {
            match contact.store.rotate_identity(contact.source.db_id).await {
                Ok(fresh) => {
                    tracing::warn!(region = %region, %evidence, ancienne = %contact.source.db_id, nouvelle = %fresh,
                        "région restaurée ou revenue en arrière : nouvelle identité, ses pairs la relisent en entier et elle relit tout ce qu'elle avait envoyé");
                    contact.source.db_id = fresh;
                    checked.restored.push(RestoreDetected { region: region.clone(), evidence });
                }
                Err(e) => {
                    checked.failed.push((region, e.to_string()));
                    continue;
                }
            }
        }
    }
    // This round's epoch on every source some target of this round reads.
    let forget_before = now - chrono::Duration::from_std(FORGET_EPOCHS_AFTER).unwrap_or(chrono::Duration::MAX);
    let read = |i: usize| targets.iter().enumerate().any(|(t, pulled)| *pulled && t != i);
    let opened = join_all(
        reached
            .iter()
            .enumerate()
            .map(|(i, c)| async move { if read(i) { c.store.open_epoch(forget_before).await.map(Some) } else { Ok(None) } }),
    )
    .await;
    for (contact, opened) in reached.iter_mut().zip(opened) {
        match opened {
            Ok(None) => {}
            Ok(Some(epoch)) => {
                // Not `horizon.min(epoch.below)`: on a shared PostgreSQL server other databases'
                // short transactions keep `below` just under the horizon at almost every round, and
                // the changes they hold back would wait a round (lag) far more often than the rare
                // case it guards against: a transaction still running when the epoch is recorded,
                // committed before the feed is read, and a backup taken in between. Known limit.
                contact.epoch = Some(epoch.id);
            }
            Err(e) => {
                let region = contact.source.region.clone();
                if !checked.failed.iter().any(|(r, _)| *r == region) {
                    checked.failed.push((region, e.to_string()));
                }
            }
        }
    }
    checked
}

/// Why `source` went back in time, by what its readers remember (`None`: it did not, as far as
/// they can tell).
async fn evidence(source: &dyn Store, horizon: i64, witnesses: &[&(usize, RegionName, Witness)]) -> Result<Option<String>, StoreError> {
    let mut found = Vec::new();
    for (_, target, witness) in witnesses {
        if witness.cursor.pos > 0 && witness.cursor.pos >= horizon {
            found.push(format!(
                "{target} a déjà lu jusqu'à la position {} de son journal, qui s'arrête avant {horizon}",
                witness.cursor.pos
            ));
        }
    }
    let epochs: Vec<uuid::Uuid> = witnesses.iter().filter_map(|(_, _, w)| w.epoch).collect();
    let held = source.held_epochs(&epochs).await?;
    for (_, target, witness) in witnesses {
        if let Some(epoch) = witness.epoch.filter(|e| !held.contains(e)) {
            found.push(format!("l'époque {epoch} lue par {target} n'y figure plus"));
        }
    }
    Ok(if found.is_empty() { None } else { Some(found.join(" ; ")) })
}
