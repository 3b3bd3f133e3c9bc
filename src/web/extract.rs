//! Request parsing at the edge: JSON bodies read field by field (exact amounts, every error named),
//! `If-Match`, path ids. Nothing past this file sees raw text.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, IF_MATCH};
use axum::http::request::Parts;
use serde_json::value::RawValue;

use super::error::ApiError;
use crate::domain::{FieldError, VenteId};
use crate::store::Expect;

/// A JSON object body with each member kept as raw text, so numbers are never read as floats.
pub struct JsonObject(pub BTreeMap<String, Box<RawValue>>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|essence| {
                let essence = essence.trim().to_ascii_lowercase();
                essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
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
        serde_json::from_slice(&bytes).map(Self).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::Malformed("le corps doit être un objet JSON".into()),
            _ => ApiError::Malformed(format!("JSON invalide ({e})")),
        })
    }
}

/// What a raw JSON member holds, for field rules.
pub enum Member<'a> {
    Absent,
    Null,
    Text(String),
    /// A JSON number, as written.
    Number(&'a str),
    Other,
}

impl JsonObject {
    pub fn member(&self, name: &str) -> Member<'_> {
        let Some(raw) = self.0.get(name) else { return Member::Absent };
        let text = raw.get().trim();
        match text.as_bytes().first() {
            Some(b'n') => Member::Null,
            Some(b'"') => serde_json::from_str::<String>(text).map_or(Member::Other, Member::Text),
            Some(b'-' | b'0'..=b'9') => Member::Number(text),
            _ => Member::Other,
        }
    }

    /// Every member not in `known`, as errors naming it.
    pub fn unknown_fields(&self, known: &[&str]) -> Vec<FieldError> {
        self.0.keys().filter(|k| !known.contains(&k.as_str())).map(|k| FieldError::new(k.clone(), "champ inconnu")).collect()
    }
}

/// `If-Match`: absent, `*`, or a list of entity tags. Weak tags never match (strong comparison).
pub struct IfMatch(pub Expect);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let values: Vec<&str> = parts.headers.get_all(IF_MATCH).iter().filter_map(|v| v.to_str().ok()).collect();
        if parts.headers.get_all(IF_MATCH).iter().next().is_none() {
            return Ok(Self(Expect::Nothing));
        }
        let mut tags = Vec::new();
        for item in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
            if item == "*" {
                return Ok(Self(Expect::AnyVersion));
            }
            if let Some(tag) = item.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                tags.push(tag.to_owned());
            }
        }
        Ok(Self(Expect::OneOf(tags)))
    }
}

/// A sale id from the path; anything but a UUID is a 400.
pub fn parse_id(text: &str) -> Result<VenteId, ApiError> {
    text.parse().map_err(|_| ApiError::Malformed(format!("identifiant de vente invalide « {} » (UUID attendu)", truncate(text, 64))))
}

/// Cuts user text quoted in messages.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}
