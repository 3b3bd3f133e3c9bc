//! The pages' templates (askama, compiled, auto-escaped) and the view models they read. Owns:
//! how a sale, an amount, a date and a count are shown in French, and the headers of every HTML
//! answer. Leaves: what to show (pages.rs), the markup (templates/).

use askama::Template;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Days, NaiveDate};

use super::forms::{ListFilters, VenteForm, french_date};
use crate::domain::{FieldError, Montant, Regions, Vente, VenteId};

/// Scripts, styles and images come from this server only; forms post only to it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML answer: UTF-8, never cached (pages carry CSRF tokens), with the security headers.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    let body = match page.render() {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "rendu d'un gabarit impossible");
            let text = "Erreur interne : la page n'a pas pu être affichée.";
            return (StatusCode::INTERNAL_SERVER_ERROR, [(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response();
        }
    };
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (HeaderName::from_static("content-security-policy"), HeaderValue::from_static(CSP)),
        (HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff")),
        (HeaderName::from_static("referrer-policy"), HeaderValue::from_static("same-origin")),
    ];
    (status, headers, body).into_response()
}

/// `24/11/2026`.
pub fn date_fr(date: NaiveDate) -> String {
    date.format("%d/%m/%Y").to_string()
}

/// A date input's value: `YYYY-MM-DD`, or empty when the text is no date (a date input cannot
/// hold anything else; the message beside it says what was wrong).
pub fn date_value(text: &str) -> String {
    NaiveDate::parse_from_str(&french_date(text), "%Y-%m-%d").map(|d| d.to_string()).unwrap_or_default()
}

/// An amount as typed in a form: `1500`, `750000,50` (no grouping, decimal comma).
pub fn montant_input(montant: Montant) -> String {
    match (montant.cents() / 100, montant.cents() % 100) {
        (units, 0) => units.to_string(),
        (units, cents) => format!("{units},{cents:02}"),
    }
}

/// A count with French digit groups: `12 345`.
pub fn count_fr(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() * 2);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(digit);
    }
    out
}

/// A sale as a row of the list (or the summary of the delete page).
pub struct Row {
    pub id: String,
    pub produit: String,
    pub montant: String,
    pub region: String,
    pub date_iso: String,
    pub date_fr: String,
    /// The version tag, sent back by the delete form (its `If-Match`).
    pub version: String,
}

impl From<&Vente> for Row {
    fn from(v: &Vente) -> Self {
        Self {
            id: v.id.to_string(),
            produit: v.produit.to_string(),
            montant: v.montant.to_fcfa(),
            region: v.region.to_string(),
            date_iso: v.date_vente.to_string(),
            date_fr: date_fr(v.date_vente.get()),
            version: v.version.to_string(),
        }
    }
}

/// The add or edit form: the values to show (as typed, on error) and the messages beside them.
pub struct FormView {
    pub id: String,
    pub produit: String,
    pub montant: String,
    pub date_vente: String,
    pub region: String,
    /// The latest date a sale may carry (tomorrow), for the date picker.
    pub max_date: String,
    pub errors: Vec<FieldError>,
    /// A message about the whole form (a concurrent change, a reused form).
    pub notice: Option<String>,
}

/// Field names in form order, with their labels.
const FIELDS: [(&str, &str); 4] = [("produit", "Produit"), ("montant", "Montant"), ("dateVente", "Date"), ("region", "Région")];

impl FormView {
    /// A fresh add form: a new id (a double submit records one sale), today's date.
    pub fn blank(today: NaiveDate) -> Self {
        let form = VenteForm { id: VenteId::generate().to_string(), date_vente: today.to_string(), ..VenteForm::default() };
        Self::kept(form, Vec::new(), today)
    }

    /// The edit form of a sale.
    pub fn of(vente: &Vente, today: NaiveDate) -> Self {
        let form = VenteForm {
            produit: vente.produit.to_string(),
            montant: montant_input(vente.montant),
            date_vente: vente.date_vente.to_string(),
            region: vente.region.to_string(),
            ..VenteForm::default()
        };
        Self::kept(form, Vec::new(), today)
    }

    /// The form as the user sent it, with what is wrong, in form order.
    pub fn kept(form: VenteForm, mut errors: Vec<FieldError>, today: NaiveDate) -> Self {
        errors.sort_by_key(|e| FIELDS.iter().position(|(name, _)| *name == e.field));
        let max_date = today.checked_add_days(Days::new(1)).unwrap_or(today).to_string();
        Self {
            id: form.id,
            produit: form.produit,
            montant: form.montant,
            date_vente: date_value(&form.date_vente),
            region: form.region,
            max_date,
            errors,
            notice: None,
        }
    }

    pub fn with_notice(mut self, notice: impl Into<String>) -> Self {
        self.notice = Some(notice.into());
        self
    }

    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.iter().find(|e| e.field == field).map(|e| e.message.as_str())
    }

    /// True for the first field in error, which gets the focus.
    pub fn focus(&self, field: &str) -> bool {
        self.errors.first().is_some_and(|e| e.field == field)
    }

    pub fn label(&self, field: &str) -> &'static str {
        FIELDS.iter().find(|(name, _)| *name == field).map_or("Champ", |(_, label)| label)
    }

    pub fn region_is(&self, region: &str) -> bool {
        same_region(&self.region, region)
    }
}

fn same_region(typed: &str, region: &str) -> bool {
    !typed.trim().is_empty() && crate::domain::RegionName::key_of(typed) == crate::domain::RegionName::key_of(region)
}

/// The search and filter form, as typed, with its messages.
pub struct FilterView {
    pub q: String,
    pub region: String,
    pub from: String,
    pub to: String,
    pub errors: Vec<FieldError>,
}

impl FilterView {
    pub fn of(filters: &ListFilters, errors: Vec<FieldError>) -> Self {
        let (from, to) = (date_value(&filters.from), date_value(&filters.to));
        Self { q: filters.q.clone(), region: filters.region.clone(), from, to, errors }
    }

    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.iter().find(|e| e.field == field).map(|e| e.message.as_str())
    }

    pub fn active(&self) -> bool {
        [&self.q, &self.region, &self.from, &self.to].iter().any(|v| !v.trim().is_empty())
    }

    pub fn region_is(&self, region: &str) -> bool {
        same_region(&self.region, region)
    }
}

/// The quick statistics panel (the monitor's `totalVentes`, `totalSyncs`, `failedSyncs`).
pub struct QuickStats {
    /// Live sales in the first reachable region (the last count known when none answers).
    pub ventes: String,
    pub syncs: String,
    pub echecs: String,
}

pub fn region_names(regions: &Regions) -> Vec<String> {
    regions.iter().map(ToString::to_string).collect()
}

/// `/`: quick statistics, the add form, the list.
#[derive(Template)]
#[template(path = "index.html")]
pub struct IndexPage {
    pub csrf: String,
    pub flash: Option<super::flash::Notice>,
    pub stats: QuickStats,
    pub form: FormView,
    pub regions: Vec<String>,
    pub filters: FilterView,
    pub rows: Vec<Row>,
    pub next_url: Option<String>,
    pub first_url: Option<String>,
}

impl IndexPage {
    /// Where « Synchroniser maintenant » comes back to.
    pub fn sync_back(&self) -> &'static str {
        "/"
    }
}

/// `/ventes/{id}/modifier`.
#[derive(Template)]
#[template(path = "edit.html")]
pub struct EditPage {
    pub csrf: String,
    pub id: VenteId,
    pub version: String,
    pub form: FormView,
    pub regions: Vec<String>,
}

/// `/ventes/{id}/supprimer`: the confirmation asked when the script did not ask it.
#[derive(Template)]
#[template(path = "confirm_delete.html")]
pub struct ConfirmDeletePage {
    pub csrf: String,
    pub row: Row,
    pub notice: Option<String>,
}

/// Any error, in French.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub title: &'static str,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_the_french_way() {
        assert_eq!(count_fr(0), "0");
        assert_eq!(count_fr(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(montant_input(Montant::from_cents(150_000).unwrap()), "1500");
        assert_eq!(montant_input(Montant::from_cents(75_000_050).unwrap()), "750000,50");
        assert_eq!(date_fr(NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()), "24/11/2026");
    }

    #[test]
    fn templates_escape_user_text() {
        let page = ErrorPage { status: 404, title: "Page introuvable", message: "<script>alert(1)</script>".into() };
        let body = page.render().unwrap();
        assert!(!body.contains("<script>alert"), "{body}");
        assert!(body.contains("&#60;script&#62;") || body.contains("&lt;script&gt;"), "{body}");
    }
}
