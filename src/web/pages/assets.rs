//! The UI's static files, embedded in the binary and served under `/static/`. Owns: their
//! content types and caching. Pages link them as `/static/app.css?v=<hash>`: an address whose
//! `v` matches the content is cached for a year, any other revalidates with its `ETag`.

use std::sync::LazyLock;

use axum::extract::{Path, RawQuery};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::PageError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 4] = [
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", bytes: include_bytes!("../../../static/app.css") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../../../static/app.js") },
    Asset { name: "stats.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../../../static/stats.js") },
    Asset { name: "icon.svg", content_type: "image/svg+xml", bytes: include_bytes!("../../../static/icon.svg") },
];

/// The first 16 hex digits of each asset's SHA-256, in `ASSETS` order.
static HASHES: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| Sha256::digest(a.bytes).iter().take(8).map(|b| format!("{b:02x}")).collect()).collect());

fn find(name: &str) -> Option<(&'static Asset, &'static str)> {
    ASSETS.iter().zip(HASHES.iter()).find(|(a, _)| a.name == name).map(|(a, h)| (a, h.as_str()))
}

/// The address of a static file, with its content hash (for templates).
pub fn url(name: &str) -> String {
    match find(name) {
        Some((asset, hash)) => format!("/static/{}?v={hash}", asset.name),
        None => format!("/static/{name}"),
    }
}

/// `GET /static/{file}`.
pub async fn serve(Path(name): Path<String>, RawQuery(query): RawQuery, headers: HeaderMap) -> Result<Response, PageError> {
    let (asset, hash) = find(&name).ok_or_else(|| PageError::NotFound("Ce fichier n'existe pas.".into()))?;
    let versioned = query.as_deref().is_some_and(|q| q.split('&').any(|pair| pair == format!("v={hash}")));
    Ok(respond(asset, hash, versioned, &headers))
}

/// `GET /favicon.ico`: the icon, for browsers that ask for it without reading the page.
pub async fn favicon(headers: HeaderMap) -> Result<Response, PageError> {
    let (asset, hash) = find("icon.svg").ok_or_else(|| PageError::Internal("icône absente".into()))?;
    Ok(respond(asset, hash, false, &headers))
}

fn respond(asset: &Asset, hash: &str, versioned: bool, request: &HeaderMap) -> Response {
    let etag = format!("\"{hash}\"");
    let cache = if versioned { "public, max-age=31536000, immutable" } else { "public, max-age=0, must-revalidate" };
    let mut headers = HeaderMap::new();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, value);
    }
    let fresh = request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim().trim_start_matches("W/") == etag || tag.trim() == "*");
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    (StatusCode::OK, headers, asset.bytes).into_response()
}
