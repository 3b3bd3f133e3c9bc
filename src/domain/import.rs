//! The import rule: a CSV line is a write dated by its `updated_at`, judged under LWW against what
//! a region holds, so that re-importing an old export never reverts newer work nor revives a
//! deleted sale. Owns: the version a dated line gets, and the verdict on each line. Leaves: CSV
//! (csvio.rs), routing and counting (ventes/import.rs), SQL (store/, through `apply`).

use chrono::{DateTime, Utc};

use super::lww::Seen;
use super::version::{Hlc, Version};
use super::{NewVente, RegionName, Vente, VenteId};

/// What came of one import line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportVerdict {
    /// The region held no such sale: created.
    Created,
    /// The line is newer than what the region held: the sale now holds the line.
    Updated,
    /// The region already holds this content, alive: nothing written.
    Unchanged,
    /// The region holds a newer version (an edit or a deletion made after the line's date): the
    /// line is skipped.
    Older,
}

impl ImportVerdict {
    /// Why a skipped line was skipped, as the import report says it.
    pub const OLDER_MESSAGE: &str = "ignorée : version plus récente en base";
}

/// The sale a line dated `at` writes in `region` on top of `base` (what the region holds): its
/// version is the smallest clock value at that date, stamped by `region`. The date is capped at
/// `now`, so a line from the future cannot move a region's clock ahead of time.
pub fn dated_vente(region: &RegionName, id: VenteId, new: &NewVente, at: DateTime<Utc>, now: DateTime<Utc>, base: Option<&Seen>) -> Vente {
    let at = super::vente::to_micros(at.min(now));
    let version = Version { hlc: Hlc::from_wall_ms(at.timestamp_millis()), origin: region.clone() };
    Vente {
        seen: Seen::after(base, &version),
        id,
        produit: new.produit.clone(),
        montant: new.montant,
        date_vente: new.date_vente,
        region: new.region.clone(),
        updated_at: at,
        deleted: false,
        version,
    }
}

/// The verdict on a line (as the sale `line` it would write) given what the region holds: a line
/// wins only with a greater version (the LWW rule: a deletion made after the line's date stands);
/// content already held alive is left alone whatever the dates.
pub fn judge(line: &Vente, current: Option<&Vente>) -> ImportVerdict {
    match current {
        None => ImportVerdict::Created,
        Some(current) if !current.deleted && same_content(current, line) => ImportVerdict::Unchanged,
        Some(current) if line.version > current.version => ImportVerdict::Updated,
        Some(_) => ImportVerdict::Older,
    }
}

fn same_content(a: &Vente, b: &Vente) -> bool {
    a.produit == b.produit && a.montant == b.montant && a.date_vente == b.date_vente && a.region == b.region
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::vente::VenteFields;
    use crate::domain::{Regions, Version};

    fn new(produit: &str) -> NewVente {
        let regions = Regions::new(vec![RegionName::new("Dakar"), RegionName::new("Thies")]);
        let fields = VenteFields { produit: Some(produit), montant: Some("1500"), date_vente: Some("2026-01-15"), region: Some("Dakar") };
        NewVente::parse(&fields, &regions, chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn an_older_line_loses_to_an_edit_and_to_a_deletion_a_newer_one_wins() {
        let dakar = RegionName::new("Dakar");
        let id = VenteId::generate();
        let now = at("2026-06-01T12:00:00Z");
        let line = dated_vente(&dakar, id, &new("Mil"), at("2026-05-01T10:00:00Z"), now, None);
        let edited = Vente {
            produit: new("Riz").produit,
            version: Version { hlc: Hlc::from_wall_ms(at("2026-05-02T10:00:00Z").timestamp_millis()), origin: RegionName::new("Thies") },
            ..line.clone()
        };
        assert_eq!(judge(&line, None), ImportVerdict::Created);
        assert_eq!(judge(&line, Some(&edited)), ImportVerdict::Older);
        let deleted = Vente { deleted: true, produit: line.produit.clone(), ..edited.clone() };
        assert_eq!(judge(&line, Some(&deleted)), ImportVerdict::Older, "a deleted sale is not revived by an older line");
        let newer = dated_vente(&dakar, id, &new("Mil"), at("2026-05-03T10:00:00Z"), now, None);
        assert_eq!(judge(&newer, Some(&edited)), ImportVerdict::Updated);
        assert_eq!(judge(&newer, Some(&line)), ImportVerdict::Unchanged);
    }

    #[test]
    fn a_line_from_the_future_is_dated_now() {
        let now = at("2026-06-01T12:00:00Z");
        let line = dated_vente(&RegionName::new("Dakar"), VenteId::generate(), &new("Mil"), at("2027-06-01T00:00:00Z"), now, None);
        assert_eq!(line.updated_at, now);
        assert_eq!(line.version.hlc, Hlc::from_wall_ms(now.timestamp_millis()));
    }
}
