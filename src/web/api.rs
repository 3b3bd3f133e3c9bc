//! The sales API handlers: extract, call `Ventes`, map. No SQL, no rules.

use axum::Json;
use axum::extract::State;
use axum::http::header::{ETAG, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, IdPath, IfMatch, Member, QueryOf, Unknown, truncate, unknown_fields};
use super::list_query::{DateForm, ListText, ReadList, read_limit};
use super::{AppState, openapi};
use crate::domain::ListQuery;
use crate::domain::montant::MontantError;
use crate::domain::vente::VenteFields;
use crate::domain::{FieldError, Montant, NewVente, Vente, VenteId};

pub const MAX_LIMIT: u32 = 500;
pub const DEFAULT_LIMIT: u32 = 50;
/// Longest `q` accepted, in characters.
pub use super::list_query::MAX_Q_CHARS;

/// A sale as the API shows it (the guide's Spring entity, camelCase).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VenteJson {
    pub id: Uuid,
    #[schema(example = "Riz brisé 50 kg")]
    pub produit: String,
    #[schema(schema_with = openapi::montant_output_schema)]
    pub montant: Box<RawValue>,
    pub date_vente: NaiveDate,
    #[schema(example = "Dakar")]
    pub region: String,
    /// Time of the last write, UTC.
    pub updated_at: DateTime<Utc>,
    pub deleted: bool,
}

impl From<&Vente> for VenteJson {
    fn from(v: &Vente) -> Self {
        let montant = RawValue::from_string(v.montant.to_string()).unwrap_or_else(|_| Box::<RawValue>::default());
        Self {
            id: v.id.0,
            produit: v.produit.to_string(),
            montant,
            date_vente: v.date_vente.get(),
            region: v.region.to_string(),
            updated_at: v.updated_at,
            deleted: v.deleted,
        }
    }
}

/// A sale to create or replace, as sent. Each member keeps its JSON type until `read`, so every
/// field's error is reported at once, in French; unknown members are refused, each named.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VenteInput {
    /// Optional on create: makes the request idempotent. On replace, must equal the path id (else 409).
    #[serde(default)]
    #[schema(value_type = Option<Uuid>)]
    pub id: Member,
    #[serde(default)]
    #[schema(required = true, schema_with = openapi::produit_schema)]
    pub produit: Member,
    #[serde(default)]
    #[schema(required = true, schema_with = openapi::montant_input_schema)]
    pub montant: Member,
    /// Calendar date of the sale, from 1900-01-01 to tomorrow (UTC).
    #[serde(default)]
    #[schema(required = true, value_type = NaiveDate)]
    pub date_vente: Member,
    /// A configured region. Names are also matched ignoring case, accents and punctuation (`saint louis`).
    #[serde(default)]
    #[schema(required = true, value_type = String, example = "Dakar")]
    pub region: Member,
    /// Ignored (set by the server); accepted so that a sale read from the API can be sent back.
    #[serde(default)]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub updated_at: Member,
    /// Only `false` (or absent): to delete a sale, use `DELETE`.
    #[serde(default)]
    #[schema(schema_with = openapi::not_deleted_schema)]
    pub deleted: Member,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// One page of sales.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VentePage {
    pub items: Vec<VenteJson>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Listing filters. Every parameter is optional; an empty one is the same as an absent one.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 500 (default 50).
    #[param(schema_with = openapi::limit_schema)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page.
    #[param(schema_with = openapi::cursor_schema)]
    pub cursor: Option<String>,
    /// Only sales of this region (names also matched ignoring case, accents and punctuation).
    pub region: Option<String>,
    /// Product name contains this text (case and accents ignored), at most 200 characters.
    #[param(schema_with = openapi::q_schema)]
    pub q: Option<String>,
    /// Sales dated on or after this day (YYYY-MM-DD).
    #[param(schema_with = openapi::date_filter_schema)]
    pub from: Option<String>,
    /// Sales dated on or before this day (YYYY-MM-DD).
    #[param(schema_with = openapi::date_filter_schema)]
    pub to: Option<String>,
}

/// The `If-Match` request header.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "documents the header; the `IfMatch` extractor reads it")]
pub struct IfMatchHeader {
    /// ETag attendu, ou `*` : sinon 412.
    #[param(rename = "If-Match", schema_with = openapi::if_match_schema)]
    pub if_match: Option<String>,
}

/// The `ETag` of a sale: its version, which changes with every write.
pub fn etag(vente: &Vente) -> String {
    format!("\"{}\"", vente.version)
}

fn with_etag(vente: &Vente, status: StatusCode, location: bool) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&etag(vente)) {
        headers.insert(ETAG, value);
    }
    if location {
        if let Ok(value) = HeaderValue::from_str(&format!("/api/ventes/{}", vente.id)) {
            headers.insert(LOCATION, value);
        }
    }
    (status, headers, Json(VenteJson::from(vente))).into_response()
}

impl ListParams {
    fn into_query(self, state: &AppState) -> Result<ListQuery, ApiError> {
        let limit = read_limit(self.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT);
        let text = ListText {
            region: self.region.as_deref(),
            q: self.q.as_deref(),
            from: self.from.as_deref(),
            to: self.to.as_deref(),
            cursor: self.cursor.as_deref(),
        };
        let ReadList { mut query, mut errors, bad_cursor } = text.read(DEFAULT_LIMIT, state.ventes.regions(), DateForm::Iso);
        if bad_cursor {
            return Err(ApiError::Malformed("curseur de pagination invalide".into()));
        }
        match limit {
            Ok(limit) => query.limit = limit,
            Err(error) => errors.insert(0, error),
        }
        if !errors.is_empty() {
            return Err(ApiError::Invalid(errors));
        }
        Ok(query)
    }
}

impl VenteInput {
    /// The sale asked for (and its optional `id`), or every field's error, type errors first.
    fn read(self, state: &AppState) -> Result<(Option<VenteId>, NewVente), ApiError> {
        let mut errors = unknown_fields(&self.unknown);
        let mut text = |name: &str, member: Member| match member {
            Member::Absent | Member::Null => None,
            Member::Text(text) => {
                // A valid amount written another way (" 1500", "1.5e3") is refused as text.
                if name == "montant" && Montant::parse_plain(&text) == Err(MontantError::NotPlain) {
                    errors.push(FieldError::new(name, MontantError::NotPlain.to_string()));
                }
                Some(text)
            }
            Member::Number(text) if name == "montant" => Some(text),
            Member::Bool(_) | Member::Other if name == "montant" => {
                errors.push(FieldError::new(name, "doit être un nombre ou une chaîne décimale"));
                None
            }
            Member::Number(_) | Member::Bool(_) | Member::Other => {
                errors.push(FieldError::new(name, "doit être une chaîne de caractères"));
                None
            }
        };
        let produit = text("produit", self.produit);
        let montant = text("montant", self.montant);
        let date_vente = text("dateVente", self.date_vente);
        let region = text("region", self.region);
        let id = match self.id {
            Member::Absent | Member::Null => None,
            Member::Text(text) => VenteId::parse_hyphenated(&text).or_else(|| {
                errors.push(FieldError::new("id", format!("« {} » n'est pas un UUID", truncate(&text, 64))));
                None
            }),
            _ => {
                errors.push(FieldError::new("id", "doit être un UUID en chaîne"));
                None
            }
        };
        match self.updated_at {
            Member::Absent | Member::Null => {}
            Member::Text(text) if DateTime::parse_from_rfc3339(&text).is_ok() => {}
            _ => errors.push(FieldError::new("updatedAt", "date-heure RFC 3339 attendue (ce champ est ignoré)")),
        }
        match self.deleted {
            Member::Absent | Member::Null | Member::Bool(false) => {}
            Member::Bool(true) => errors.push(FieldError::new("deleted", "pour supprimer une vente, utilisez DELETE")),
            _ => errors.push(FieldError::new("deleted", "doit valoir false")),
        }
        let fields = VenteFields {
            produit: produit.as_deref(),
            montant: montant.as_deref(),
            date_vente: date_vente.as_deref(),
            region: region.as_deref(),
        };
        match NewVente::parse(&fields, state.ventes.regions(), state.ventes.today()) {
            Ok(vente) if errors.is_empty() => Ok((id, vente)),
            Ok(_) => Err(ApiError::Invalid(one_per_field(errors))),
            Err(found) => {
                errors.extend(found);
                Err(ApiError::Invalid(one_per_field(errors)))
            }
        }
    }
}

/// The first error of each field (the stable sort keeps type errors before rule errors), by name.
fn one_per_field(mut errors: Vec<FieldError>) -> Vec<FieldError> {
    errors.sort_by(|a, b| a.field.cmp(&b.field));
    errors.dedup_by(|later, first| later.field == first.field);
    errors
}

/// Lists live sales, newest write first.
#[utoipa::path(get, path = "/api/ventes", tag = "ventes", params(ListParams),
    responses(
        (status = 200, description = "Une page de ventes", body = VentePage),
        (status = 400, description = "Curseur ou requête mal formés", body = ErrorBody),
        (status = 422, description = "Filtre invalide", body = ErrorBody),
        (status = 503, description = "Aucune région joignable", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, QueryOf(params): QueryOf<ListParams>) -> Result<Json<VentePage>, ApiError> {
    let query = params.into_query(&state)?;
    let page = state.ventes.list(&query).await?;
    Ok(Json(VentePage { items: page.items.iter().map(VenteJson::from).collect(), next_cursor: page.next.map(|c| c.encode()) }))
}

/// Records a sale in its region's database (or another reachable one if it is down).
#[utoipa::path(post, path = "/api/ventes", tag = "ventes", request_body = VenteInput,
    responses(
        (status = 201, description = "Vente créée (ou rejouée à l'identique)", body = VenteJson,
            headers(("Location" = String, description = "Adresse de la vente"), ("ETag" = String, description = "Version"))),
        (status = 400, description = "JSON mal formé", body = ErrorBody),
        (status = 409, description = "Identifiant déjà pris par une autre vente", body = ErrorBody),
        (status = 413, description = "Corps trop grand (64 Kio)", body = ErrorBody),
        (status = 415, description = "Corps non JSON", body = ErrorBody),
        (status = 422, description = "Champ invalide", body = ErrorBody),
        (status = 503, description = "Aucune région joignable", body = ErrorBody),
    ))]
pub async fn create(State(state): State<AppState>, AppJson(body): AppJson<VenteInput>) -> Result<Response, ApiError> {
    let (id, vente) = body.read(&state)?;
    let created = state.ventes.create(id, vente).await?;
    Ok(with_etag(&created.vente, StatusCode::CREATED, true))
}

/// One live sale.
#[utoipa::path(get, path = "/api/ventes/{id}", tag = "ventes", params(("id" = Uuid, Path, description = "Identifiant")),
    responses(
        (status = 200, description = "La vente", body = VenteJson, headers(("ETag" = String, description = "Version"))),
        (status = 400, description = "Identifiant invalide", body = ErrorBody),
        (status = 404, description = "Vente introuvable ou supprimée", body = ErrorBody),
        (status = 503, description = "Aucune région joignable", body = ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, IdPath(id): IdPath) -> Result<Response, ApiError> {
    let vente = state.ventes.get(id).await?;
    Ok(with_etag(&vente, StatusCode::OK, false))
}

/// Replaces a live sale's content. Honours `If-Match`.
#[utoipa::path(put, path = "/api/ventes/{id}", tag = "ventes", request_body = VenteInput,
    params(("id" = Uuid, Path, description = "Identifiant"),
           IfMatchHeader),
    responses(
        (status = 200, description = "Vente modifiée", body = VenteJson, headers(("ETag" = String, description = "Version"))),
        (status = 400, description = "Identifiant, If-Match ou JSON mal formé", body = ErrorBody),
        (status = 404, description = "Vente introuvable ou supprimée", body = ErrorBody),
        (status = 409, description = "L'identifiant du corps diffère de celui de l'adresse", body = ErrorBody),
        (status = 412, description = "If-Match ne correspond pas", body = ErrorBody),
        (status = 413, description = "Corps trop grand (64 Kio)", body = ErrorBody),
        (status = 415, description = "Corps non JSON", body = ErrorBody),
        (status = 422, description = "Champ invalide", body = ErrorBody),
        (status = 503, description = "Aucune région joignable", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    IfMatch(expect): IfMatch,
    AppJson(body): AppJson<VenteInput>,
) -> Result<Response, ApiError> {
    let (body_id, vente) = body.read(&state)?;
    if body_id.is_some_and(|b| b != id) {
        // RFC 9110 §9.3.4: a representation inconsistent with the target resource is a 409.
        return Err(ApiError::Conflict(
            "l'identifiant du corps diffère de celui de l'adresse".into(),
            serde_json::json!({ "id": id.to_string(), "fields": [FieldError::new("id", "diffère de l'identifiant de l'adresse")] }),
        ));
    }
    let vente = state.ventes.update(id, vente, expect).await?;
    Ok(with_etag(&vente, StatusCode::OK, false))
}

/// Deletes a sale (a tombstone that replicates). Honours `If-Match`.
#[utoipa::path(delete, path = "/api/ventes/{id}", tag = "ventes",
    params(("id" = Uuid, Path, description = "Identifiant"),
           IfMatchHeader),
    responses(
        (status = 204, description = "Vente supprimée"),
        (status = 400, description = "Identifiant ou If-Match mal formé", body = ErrorBody),
        (status = 404, description = "Vente introuvable ou déjà supprimée", body = ErrorBody),
        (status = 412, description = "If-Match ne correspond pas", body = ErrorBody),
        (status = 503, description = "Aucune région joignable", body = ErrorBody),
    ))]
pub async fn delete(State(state): State<AppState>, IdPath(id): IdPath, IfMatch(expect): IfMatch) -> Result<StatusCode, ApiError> {
    state.ventes.delete(id, expect).await?;
    Ok(StatusCode::NO_CONTENT)
}
