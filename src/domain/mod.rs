//! Values that cannot be invalid: once a `Produit`, a `Montant`, a `DateVente` or a `RegionName`
//! exists, it satisfies the contract. Parsing from the wire happens here, once. Versions and the
//! LWW rule are domain values too: every layer above uses them, none of them owns them.
//! Owns: validation rules and their French messages, versions (version.rs), the replication rule
//! (lww.rs), the local-write rule (write.rs), the import rule (import.rs), reader requests and pages (query.rs).
//! Leaves: storage encodings (store/), JSON shape (web/). Imports nothing of the layers above.

pub mod import;
pub mod lww;
pub mod montant;
pub mod produit;
pub mod quarantine;
pub mod query;
pub mod region;
pub mod vente;
pub mod version;
pub mod write;

pub use montant::Montant;
pub use produit::Produit;
pub use query::{Cursor, DaySales, ListQuery, Page, RegionSales};
pub use region::{Backend, RegionName, Regions};
pub use vente::{DateVente, NewVente, Vente, VenteId, Version};
pub use write::{Expect, LocalWrite, WriteOutcome};

/// A field that failed validation, with a French message for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, utoipa::ToSchema)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The JSON field name, e.g. `montant`.
    pub field: String,
    /// What is wrong, in French.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Folds text for search and matching: Unicode decomposition, combining marks dropped, lower case.
/// `"Thiès"`, `"THIES"` and `"thies"` fold to the same key.
pub fn fold(text: &str) -> String {
    use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};
    text.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}
