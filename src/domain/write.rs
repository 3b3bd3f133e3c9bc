//! A client's write in one region and the local-write rule: what a create, an update or a delete
//! does given the row the region holds. Owns: `If-Match` matching, idempotent creates, stamping a
//! planned write with its version. Leaves: the transaction and the clock row (store/).

use chrono::{DateTime, Utc};

use super::lww::Seen;
use super::version::{Hlc, Version};
use super::{NewVente, RegionName, Vente, VenteId};

/// What a conditional write expects to find (HTTP `If-Match`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Nothing,
    /// `If-Match: *` — any live version.
    AnyVersion,
    /// One of these version tags (`Version`'s `Display`).
    OneOf(Vec<String>),
}

impl Expect {
    pub fn accepts(&self, current: &Vente) -> bool {
        match self {
            Self::Nothing | Self::AnyVersion => true,
            Self::OneOf(tags) => {
                let tag = current.version.to_string();
                tags.contains(&tag)
            }
        }
    }
}

/// A write made by a client in this region; the store stamps the version in the same transaction.
#[derive(Clone, Debug)]
pub enum LocalWrite {
    /// Create a sale with this id; a replay with the same content returns the existing sale.
    Create { id: VenteId, vente: NewVente },
    /// Replace a live sale's content.
    Update { id: VenteId, vente: NewVente, expect: Expect },
    /// Soft-delete a live sale.
    Delete { id: VenteId, expect: Expect },
}

impl LocalWrite {
    pub fn id(&self) -> VenteId {
        match self {
            Self::Create { id, .. } | Self::Update { id, .. } | Self::Delete { id, .. } => *id,
        }
    }
}

/// What came of a local write.
#[derive(Clone, Debug)]
pub enum WriteOutcome {
    /// Written; the sale as now stored.
    Written(Vente),
    /// A create replayed with the same content: nothing written, the existing sale.
    Unchanged(Vente),
    /// A create whose id is taken by a different (or deleted) sale.
    IdTaken(Vente),
    /// Update or delete of a sale this region does not hold alive.
    NotFound,
    /// `If-Match` did not match; the current sale.
    PreconditionFailed(Vente),
}

/// Rows to stamp with consecutive clock values ending at `last`: the first gets `last - n + 1`
/// (saturating: the store handed out `n` values up to `last`, so it never has to).
pub fn first_of(last: i64, n: usize) -> i64 {
    last.saturating_sub(i64::try_from(n).unwrap_or(i64::MAX)).saturating_add(1)
}

/// The last clock value of `n` consecutive stamps starting at `first`, checked.
pub fn last_of(first: super::version::Hlc, n: usize) -> Result<super::version::Hlc, super::version::ClockOverflow> {
    first.checked_add(i64::try_from(n).unwrap_or(i64::MAX).saturating_sub(1))
}

/// A local write of `new` as sale `id`, stamped by `region` at `now` with clock value `hlc`, on
/// top of `base` (what the region held of the row).
pub fn local_vente(region: &RegionName, id: VenteId, new: &NewVente, now: DateTime<Utc>, hlc: i64, base: Option<&Seen>) -> Vente {
    let version = Version { hlc: Hlc(hlc), origin: region.clone() };
    Vente {
        seen: Seen::after(base, &version),
        id,
        produit: new.produit.clone(),
        montant: new.montant,
        date_vente: new.date_vente,
        region: new.region.clone(),
        updated_at: super::vente::to_micros(now),
        deleted: false,
        version,
    }
}

/// Stamps a planned local write with its version (on top of what it replaces) and time.
pub fn stamp(planned: Vente, region: &RegionName, now: DateTime<Utc>, hlc: i64, base: Option<&Seen>) -> Vente {
    let version = Version { hlc: Hlc(hlc), origin: region.clone() };
    Vente { seen: Seen::after(base, &version), version, updated_at: super::vente::to_micros(now), ..planned }
}

/// What a local write does given the row currently stored (the same rule in both stores).
/// `Written` carries the planned row; the caller stamps its version and time in the transaction.
pub fn decide(write: &LocalWrite, current: Option<Vente>) -> WriteOutcome {
    let planned = |id: VenteId, new: &NewVente| local_vente(&new.region, id, new, DateTime::<Utc>::MIN_UTC, 0, None);
    match (write, current) {
        (LocalWrite::Create { id, vente }, None) => WriteOutcome::Written(planned(*id, vente)),
        (LocalWrite::Create { vente, .. }, Some(current)) if !current.deleted && current.same_content(vente) => {
            WriteOutcome::Unchanged(current)
        }
        (LocalWrite::Create { .. }, Some(current)) => WriteOutcome::IdTaken(current),
        (LocalWrite::Update { .. } | LocalWrite::Delete { .. }, None) => WriteOutcome::NotFound,
        (LocalWrite::Update { .. } | LocalWrite::Delete { .. }, Some(current)) if current.deleted => WriteOutcome::NotFound,
        (LocalWrite::Update { expect, .. } | LocalWrite::Delete { expect, .. }, Some(current)) if !expect.accepts(&current) => {
            WriteOutcome::PreconditionFailed(current)
        }
        (LocalWrite::Update { id, vente, .. }, Some(_)) => WriteOutcome::Written(planned(*id, vente)),
        (LocalWrite::Delete { .. }, Some(current)) => WriteOutcome::Written(Vente { deleted: true, ..current }),
    }
}
