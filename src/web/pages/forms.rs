//! What the pages read from forms and query strings. Owns: the French spellings the forms accept
//! (`1 500,50`, `24/11/2026`) and the listing filters. Leaves: the rules themselves to the domain
//! (`NewVente::parse`, the same as the API's), so a form and a JSON body are judged alike.

use chrono::NaiveDate;
use serde::Deserialize;

use super::error::PageError;
use crate::domain::vente::VenteFields;
use crate::domain::{Cursor, Expect, FieldError, ListQuery, NewVente, Regions, VenteId};
pub use crate::web::list_query::french_date;
use crate::web::list_query::{DateForm, ListText, ReadList};

/// How many sales one page of the list shows.
pub const PAGE_SIZE: u32 = 20;

/// The add and edit forms, as typed. Every field may be missing; `NewVente::parse` names the gaps.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct VenteForm {
    /// Add form only: an id minted when the form was rendered, so a double submit records one sale.
    pub id: String,
    pub produit: String,
    pub montant: String,
    #[serde(rename = "dateVente")]
    pub date_vente: String,
    pub region: String,
    /// Edit form only: the version the user saw (its `If-Match`).
    pub version: String,
}

impl VenteForm {
    /// The same validation as the API, after reading French amounts and dates.
    pub fn parse(&self, regions: &Regions, today: NaiveDate) -> Result<NewVente, Vec<FieldError>> {
        let montant = french_montant(&self.montant);
        let date_vente = french_date(&self.date_vente);
        let fields = VenteFields {
            produit: present(&self.produit),
            montant: present(&montant),
            date_vente: present(&date_vente),
            region: present(&self.region),
        };
        NewVente::parse(&fields, regions, today)
    }

    /// The id minted for this add form; a tampered one is ignored (the server mints another).
    pub fn id(&self) -> Option<VenteId> {
        self.id.parse().ok()
    }

    pub fn expect(&self) -> Expect {
        expect(&self.version)
    }
}

/// The delete form: the version the user saw, and whether they confirmed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeleteForm {
    pub version: String,
    /// `oui` once confirmed (by the confirmation page, or by the script's `confirm()`).
    pub confirme: String,
}

impl DeleteForm {
    pub fn confirmed(&self) -> bool {
        self.confirme == "oui"
    }

    pub fn expect(&self) -> Expect {
        expect(&self.version)
    }
}

fn expect(version: &str) -> Expect {
    match version.trim() {
        "" => Expect::Nothing,
        tag => Expect::OneOf(vec![tag.to_owned()]),
    }
}

/// An empty or blank field counts as missing ("ce champ est obligatoire").
fn present(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|t| !t.is_empty())
}

/// French amounts: spaces between digit groups (`1 500`, also no-break spaces) and a decimal comma
/// (`1500,50`) are read as `1500.50`. Anything else is left for `Montant` to judge.
pub fn french_montant(text: &str) -> String {
    let compact: String = text.chars().filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}')).collect();
    if compact.matches(',').count() == 1 && !compact.contains('.') { compact.replacen(',', ".", 1) } else { compact }
}

/// The listing's search and filters, as in the address bar (`/?q=riz&region=Dakar&from=…`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListFilters {
    pub q: String,
    pub region: String,
    pub from: String,
    pub to: String,
    pub cursor: String,
}

impl ListFilters {
    /// Reads the query string; a repeated or undecodable parameter is a 400 page.
    pub fn from_query(raw: Option<&str>) -> Result<Self, PageError> {
        serde_urlencoded::from_str(raw.unwrap_or_default()).map_err(|_| PageError::BadRequest("adresse mal formée".into()))
    }

    /// The store query, and what was wrong with the filters (those filters are then not applied).
    /// An unreadable cursor starts again from the first page.
    pub fn to_query(&self, regions: &Regions) -> (ListQuery, Vec<FieldError>) {
        let text = ListText {
            region: Some(&self.region),
            q: Some(&self.q),
            from: Some(&self.from),
            to: Some(&self.to),
            cursor: Some(&self.cursor),
        };
        let ReadList { mut query, mut errors, .. } = text.read(PAGE_SIZE, regions, DateForm::French);
        if query.from.zip(query.to).is_some_and(|(from, to)| from > to) {
            errors.push(FieldError::new("to", "la date de fin précède la date de début"));
            (query.from, query.to) = (None, None);
        }
        (query, errors)
    }

    /// True when any search or filter is set (the cursor aside).
    pub fn active(&self) -> bool {
        [&self.q, &self.region, &self.from, &self.to].iter().any(|v| !v.trim().is_empty())
    }

    /// The address of the list with these filters, at `cursor` (or the first page).
    pub fn url(&self, cursor: Option<&Cursor>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [("q", &self.q), ("region", &self.region), ("from", &self.from), ("to", &self.to)] {
            if !value.trim().is_empty() {
                query.append_pair(name, value.trim());
            }
        }
        if let Some(cursor) = cursor {
            query.append_pair("cursor", &cursor.encode());
        }
        match query.finish() {
            q if q.is_empty() => "/".to_owned(),
            q => format!("/?{q}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_amounts_are_read_exactly() {
        assert_eq!(french_montant("1 500,50"), "1500.50");
        assert_eq!(french_montant("1500,50"), "1500.50");
        assert_eq!(french_montant("1\u{202f}500\u{a0}000"), "1500000");
        assert_eq!(french_montant("750000.5"), "750000.5");
        assert_eq!(french_montant("1.500,50"), "1.500,50");
        assert_eq!(french_montant("1,5,0"), "1,5,0");
    }

    #[test]
    fn french_dates_become_iso() {
        assert_eq!(french_date("24/11/2026"), "2026-11-24");
        assert_eq!(french_date(" 4/1/2026 "), "2026-01-04");
        assert_eq!(french_date("2026-11-24"), "2026-11-24");
        assert_eq!(french_date("24/11/26"), "24/11/26");
    }

    #[test]
    fn filter_urls_keep_filters_and_drop_blanks() {
        let filters = ListFilters { q: "riz & mil".into(), region: "Dakar".into(), ..ListFilters::default() };
        assert_eq!(filters.url(None), "/?q=riz+%26+mil&region=Dakar");
        assert_eq!(ListFilters::default().url(None), "/");
    }
}
