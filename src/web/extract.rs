//! Request parsing at the edge: JSON bodies into wire types whose members keep their JSON type
//! (exact amounts, every error named),
//! `If-Match`, path ids. Nothing past this file sees raw text.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONTENT_TYPE, IF_MATCH};
use axum::http::request::Parts;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::error::ApiError;
use crate::domain::Expect;
use crate::domain::{FieldError, VenteId};

/// A JSON body read into `T`, a wire type whose members are `Member`s (so a member of the wrong
/// JSON type is a field error, reported with the others, not a failure of the whole body).
/// The content type must be JSON; the body must be UTF-8 and a JSON object.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::Malformed("corps illisible".into())
            }
        })?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(ApiError::Malformed("le corps n'est pas de l'UTF-8 valide".into()));
        }
        serde_json::from_slice(&bytes).map(Self).map_err(|e| {
            use serde_json::error::Category;
            let at = format!("ligne {}, colonne {}", e.line(), e.column());
            ApiError::Malformed(match e.classify() {
                Category::Data if e.to_string().starts_with("duplicate field") => format!("champ en double ({at})"),
                Category::Data => "le corps doit être un objet JSON".into(),
                Category::Eof => format!("JSON incomplet ({at})"),
                Category::Syntax | Category::Io => format!("JSON invalide ({at})"),
            })
        })
    }
}

/// True when the body is declared JSON (`application/json` or `application/…+json`).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| {
            let essence = essence.trim().to_ascii_lowercase();
            essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// A request declared JSON, whatever its (ignored) body: a cross-site HTML form cannot send one
/// without a CORS preflight, so actions without a body (`POST /api/sync`) cannot be forged. Else 415.
pub struct DeclaredJson;

impl<S: Send + Sync> FromRequestParts<S> for DeclaredJson {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if is_json(&parts.headers) { Ok(Self) } else { Err(ApiError::UnsupportedMediaType) }
    }
}

/// One member of a JSON body, with its JSON type, for field rules: numbers are kept as written
/// (never read as floats), so amounts stay exact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Member {
    #[default]
    Absent,
    Null,
    Text(String),
    /// A JSON number, as written.
    Number(String),
    Bool(bool),
    /// An array or an object.
    Other,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get().trim();
        Ok(match text.as_bytes().first() {
            Some(b'n') => Self::Null,
            Some(b't') => Self::Bool(true),
            Some(b'f') => Self::Bool(false),
            Some(b'"') => serde_json::from_str::<String>(text).map_or(Self::Other, Self::Text),
            Some(b'-' | b'0'..=b'9') => Self::Number(text.to_owned()),
            _ => Self::Other,
        })
    }
}

/// Members of a wire type that it does not know (`#[serde(flatten)]` into this), refused as
/// `deny_unknown_fields` would, but each named, with the body's other errors.
pub type Unknown = BTreeMap<String, IgnoredAny>;

/// Every unknown member, as errors naming it (a very long name is cut).
pub fn unknown_fields(unknown: &Unknown) -> Vec<FieldError> {
    unknown.keys().map(|k| FieldError::new(truncate(k, 64), "champ inconnu")).collect()
}

/// `If-Match`: absent, `*`, or a comma-separated list of entity tags (RFC 9110 `#entity-tag`,
/// so empty elements and an empty list are allowed; they match nothing). Weak tags never match
/// (strong comparison). A value of another form is a 400, not a silent 412.
pub struct IfMatch(pub Expect);

impl IfMatch {
    /// The exact syntax accepted, as an ECMA-262 regular expression (for the API document).
    pub const PATTERN: &str = r#"^[ \t]*(?:\*|(?:(?:W/)?"[\x21\x23-\x7E]*")?(?:[ \t]*,[ \t]*(?:(?:W/)?"[\x21\x23-\x7E]*")?)*)[ \t]*$"#;

    fn parse(value: &str) -> Option<Expect> {
        const OWS: [char; 2] = [' ', '\t'];
        let mut rest = value.trim_matches(OWS);
        if rest == "*" {
            return Some(Expect::AnyVersion);
        }
        let mut tags = Vec::new();
        loop {
            rest = rest.trim_start_matches(OWS);
            if rest.is_empty() {
                return Some(Expect::OneOf(tags));
            }
            if let Some(after_empty_element) = rest.strip_prefix(',') {
                rest = after_empty_element;
                continue;
            }
            let (weak, quoted) = rest.strip_prefix("W/").map_or((false, rest), |r| (true, r));
            let quoted = quoted.strip_prefix('"')?;
            let end = quoted.find('"')?;
            let tag = &quoted[..end];
            if !tag.bytes().all(|b| b == 0x21 || (0x23..=0x7e).contains(&b)) {
                return None;
            }
            if !weak {
                tags.push(tag.to_owned());
            }
            rest = quoted[end + 1..].trim_start_matches(OWS);
            if !rest.is_empty() {
                rest = rest.strip_prefix(',')?;
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut values = Vec::new();
        for value in parts.headers.get_all(IF_MATCH) {
            values.push(value.to_str().map_err(|_| bad_if_match())?);
        }
        if values.is_empty() {
            return Ok(Self(Expect::Nothing));
        }
        Self::parse(&values.join(", ")).map(Self).ok_or_else(bad_if_match)
    }
}

fn bad_if_match() -> ApiError {
    ApiError::Malformed("en-tête If-Match invalide (attendu : * ou une liste d'ETag entre guillemets)".into())
}

/// A sale id from the path: exactly a hyphenated UUID, else a 400 (JSON, like every error).
pub struct IdPath(pub VenteId);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Malformed("identifiant de vente illisible dans l'adresse".into()))?;
        parse_id(&text).map(Self)
    }
}

/// Query parameters; a query string that cannot be read (e.g. a parameter given twice) is a
/// 400 in our JSON error shape, not axum's plain-text rejection.
pub struct QueryOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await.map_err(|e| {
            tracing::debug!(error = %e.body_text(), "paramètres de requête refusés");
            // With text-only parameters, the one way to fail is a parameter given twice.
            ApiError::Malformed("paramètres illisibles (un paramètre est-il répété ?)".into())
        })?;
        Ok(Self(value))
    }
}

/// A sale id from the path; anything but a hyphenated UUID is a 400.
pub fn parse_id(text: &str) -> Result<VenteId, ApiError> {
    VenteId::parse_hyphenated(text)
        .ok_or_else(|| ApiError::Malformed(format!("identifiant de vente invalide « {} » (UUID attendu)", truncate(text, 64))))
}

/// Cuts user text quoted in messages.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_reads_rfc_9110_lists_and_refuses_the_rest() {
        assert_eq!(IfMatch::parse(" * "), Some(Expect::AnyVersion));
        assert_eq!(IfMatch::parse(r#""1.dakar""#), Some(Expect::OneOf(vec!["1.dakar".into()])));
        assert_eq!(IfMatch::parse(r#"W/"x" , "a,b",""  "#), Some(Expect::OneOf(vec!["a,b".into(), String::new()])));
        assert_eq!(IfMatch::parse(r#" , "a",, "#), Some(Expect::OneOf(vec!["a".into()])));
        assert_eq!(IfMatch::parse(""), Some(Expect::OneOf(vec![])));
        let bad = ["null", "1.dakar", r#""a" "b""#, r#""a""b""#, r#""a"#, "*, \"a\"", "w/\"a\"", "\"a\u{7f}\"", "\"é\""];
        for text in bad {
            assert_eq!(IfMatch::parse(text), None, "{text}");
        }
        let good = ["*", " * ", "", " ", ",", r#""a""#, r#"W/"a""#, r#""a" ,W/"b", "c,d""#, "\t\"!\"\t", r#","a",,"#];
        let pattern = regex::Regex::new(IfMatch::PATTERN).unwrap();
        for text in bad.iter().chain(&good) {
            assert_eq!(pattern.is_match(text), IfMatch::parse(text).is_some(), "the pattern and the parser disagree on {text:?}");
        }
    }
}
