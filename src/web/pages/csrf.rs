//! Cross-site request forgery protection of the forms. Owns: the token and its checks.
//!
//! Every page visitor holds a random nonce in an `HttpOnly`, `SameSite=Lax` cookie (`dsms_csrf`,
//! set by `ensure_nonce` on the first page). Each form carries `HMAC-SHA256(secret, nonce)` in a
//! hidden `csrf` field; the secret is random per process and never leaves it. A write is accepted
//! only when the field is the HMAC of the cookie's nonce (compared in constant time), so another
//! site can neither read a token nor forge one, even if it could plant a cookie. As a second
//! line, a request a browser marks as cross-site (`Sec-Fetch-Site`) or whose `Origin` is another
//! host is refused. A restart changes the secret: open forms then fail with a page asking to reload.
//! Once logged in, the nonce is the session's (`SessionNonce`), so tokens are bound to the session.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, HOST, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use super::error::PageError;
use super::flash::cookie;

const COOKIE: &str = "dsms_csrf";

/// The per-process key of the tokens.
static SECRET: LazyLock<[u8; 32]> = LazyLock::new(rand::random);

/// The visitor's nonce, put in the request by `ensure_nonce`.
#[derive(Clone, Debug)]
struct Nonce {
    value: String,
    /// False when minted for this request: no form can have been rendered for it yet.
    from_cookie: bool,
}

#[allow(clippy::expect_used, reason = "HMAC accepts keys of any length")]
fn keyed(purpose: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_slice()).expect("HMAC accepts keys of any length");
    mac.update(purpose);
    mac
}

fn mac() -> Hmac<Sha256> {
    keyed(b"dsms-csrf-v1\0")
}

/// A tag proving this process wrote `data` (the flash cookie): the key is the per-process
/// secret, kept apart from the form tokens by `purpose`.
pub fn sign(purpose: &str, data: &str) -> String {
    let mut mac = keyed(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(data.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// True when `tag` is `sign(purpose, data)` (constant-time comparison).
pub fn signed(purpose: &str, data: &str, tag: &str) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else { return false };
    let mut mac = keyed(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(data.as_bytes());
    mac.verify_slice(&tag).is_ok()
}

/// The form token bound to `nonce`.
pub fn token_for(nonce: &str) -> String {
    let mut mac = mac();
    mac.update(nonce.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// True when `token` is the token of `nonce` (constant-time comparison).
pub fn verify(nonce: &str, token: &str) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(token.trim()) else { return false };
    let mut mac = mac();
    mac.update(nonce.as_bytes());
    mac.verify_slice(&tag).is_ok()
}

fn well_formed(nonce: &str) -> bool {
    (20..=64).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The nonce of a logged-in visitor's session (set by `web::auth`): their forms' tokens are bound
/// to the session rather than to the `dsms_csrf` cookie, and change at each login.
#[derive(Clone, Debug)]
pub struct SessionNonce(pub String);

/// Middleware of the pages: gives each request a nonce (the session's, the visitor's, or a new one
/// that the answer then sets as the cookie).
pub async fn ensure_nonce(mut request: Request, next: Next) -> Response {
    let session = request.extensions().get::<SessionNonce>().filter(|n| well_formed(&n.0)).map(|n| n.0.clone());
    let nonce = match session.or_else(|| cookie(request.headers(), COOKIE).filter(|n| well_formed(n)).map(str::to_owned)) {
        Some(value) => Nonce { value, from_cookie: true },
        None => Nonce { value: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>()), from_cookie: false },
    };
    request.extensions_mut().insert(nonce.clone());
    let mut response = next.run(request).await;
    if !nonce.from_cookie {
        let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax", nonce.value);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

/// The token to put in the forms of the page being rendered.
pub struct CsrfToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let nonce = parts.extensions.get::<Nonce>().ok_or_else(|| PageError::Internal("ensure_nonce n'est pas installé".into()))?;
        Ok(Self(token_for(&nonce.value)))
    }
}

/// False for a request the browser says comes from another site, or whose `Origin` names
/// another host than the one addressed.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if matches!(header("sec-fetch-site"), Some("cross-site" | "same-site")) {
        return false;
    }
    match (header(ORIGIN.as_str()), header(HOST.as_str())) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

#[derive(Deserialize)]
struct TokenField {
    #[serde(default)]
    csrf: String,
}

/// A URL-encoded form body whose CSRF token and origin were checked; else a 403 page.
pub struct CheckedForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for CheckedForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !same_origin(request.headers()) {
            return Err(PageError::Forbidden);
        }
        let nonce = request.extensions().get::<Nonce>().filter(|n| n.from_cookie).map(|n| n.value.clone());
        let is_form = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")));
        if !is_form {
            return Err(PageError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => PageError::PayloadTooLarge,
            _ => PageError::BadRequest("corps du formulaire illisible".into()),
        })?;
        let token: TokenField = serde_urlencoded::from_bytes(&bytes).map_err(|_| PageError::BadRequest("formulaire mal formé".into()))?;
        if !nonce.is_some_and(|nonce| verify(&nonce, &token.csrf)) {
            return Err(PageError::Forbidden);
        }
        serde_urlencoded::from_bytes(&bytes).map(Self).map_err(|_| PageError::BadRequest("formulaire mal formé".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_bound_to_its_nonce() {
        let token = token_for("nonce-de-test-0123456789");
        assert!(verify("nonce-de-test-0123456789", &token));
        assert!(!verify("autre-nonce-0123456789ab", &token));
        assert!(!verify("nonce-de-test-0123456789", ""));
        assert!(!verify("nonce-de-test-0123456789", "pas du base64 !"));
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, HeaderValue::from_static(v));
            }
            map
        };
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example")])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "null")])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")])));
    }
}
