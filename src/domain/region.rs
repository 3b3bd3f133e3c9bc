//! Region names. Regions come from the configuration (2 to 16), so a region is a validated name,
//! not a closed enum. Owns: the display name, the matching key, the file-name slug.

use std::fmt;
use std::sync::Arc;

/// A configured region's display name (`"Saint-Louis"`). Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionName(Arc<str>);

impl RegionName {
    /// A name as configured; only `Regions` and the config loader make these from text.
    pub(crate) fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key names are matched by: folded, letters and digits only (`"Saint Louis"` → `saintlouis`).
    pub fn key_of(text: &str) -> String {
        super::fold(text).chars().filter(|c| c.is_alphanumeric()).collect()
    }

    /// A file-name and URL friendly form: `"Saint-Louis"` → `saint-louis`, `"Thiès"` → `thies`.
    pub fn slug(&self) -> String {
        let folded = super::fold(&self.0);
        let mut slug = String::with_capacity(folded.len());
        for c in folded.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c);
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        slug.trim_end_matches('-').to_owned()
    }
}

impl fmt::Display for RegionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The configured regions, in configuration order (the first reachable one serves reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regions(Arc<[RegionName]>);

impl Regions {
    /// Names must be distinct by matching key and by slug; the config loader checks that first.
    pub(crate) fn new(names: Vec<RegionName>) -> Self {
        Self(names.into())
    }

    pub fn iter(&self) -> impl Iterator<Item = &RegionName> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Finds a region case-, accent- and punctuation-insensitively:
    /// `saint-louis`, `Saint Louis` and `SAINT-LOUIS` all name `Saint-Louis`.
    pub fn resolve(&self, text: &str) -> Option<&RegionName> {
        let key = RegionName::key_of(text);
        if key.is_empty() {
            return None;
        }
        self.0.iter().find(|r| RegionName::key_of(r.as_str()) == key)
    }

    /// The French list of accepted names, for error messages.
    pub fn describe(&self) -> String {
        self.0.iter().map(RegionName::as_str).collect::<Vec<_>>().join(", ")
    }
}

/// Which engine serves a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn senegal() -> Regions {
        Regions::new(["Dakar", "Thies", "Saint-Louis"].map(RegionName::new).to_vec())
    }

    #[test]
    fn resolves_names_loosely() {
        let regions = senegal();
        for text in ["saint-louis", "Saint Louis", "SAINT-LOUIS", " saint_louis "] {
            assert_eq!(regions.resolve(text).unwrap().as_str(), "Saint-Louis", "{text}");
        }
        assert_eq!(regions.resolve("Thiès").unwrap().as_str(), "Thies");
        assert!(regions.resolve("Ziguinchor").is_none());
        assert!(regions.resolve("--").is_none());
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(RegionName::new("Saint-Louis").slug(), "saint-louis");
        assert_eq!(RegionName::new("Thiès").slug(), "thies");
        assert_eq!(RegionName::new(" Grand  Dakar ").slug(), "grand-dakar");
    }
}
