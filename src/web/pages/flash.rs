//! Cookies of the pages: reading the `Cookie` header, and the one-shot flash message shown after a
//! write's 303 redirect (Post/Redirect/Get). Owns: the flash cookie's format. Leaves: CSRF (csrf.rs).

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const FLASH: &str = "dsms_flash";

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// What a write did, said once on the next page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flash {
    Added,
    Updated,
    Deleted,
}

impl Flash {
    fn code(self) -> &'static str {
        match self {
            Self::Added => "ajoutee",
            Self::Updated => "modifiee",
            Self::Deleted => "supprimee",
        }
    }

    /// A 303 to `to` that leaves this message (naming the product) for the next page.
    pub fn redirect(self, to: &str, produit: &str) -> Response {
        let value = format!("{FLASH}={}.{}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax", self.code(), URL_SAFE_NO_PAD.encode(produit));
        let mut response = (StatusCode::SEE_OTHER, [(axum::http::header::LOCATION, to.to_owned())]).into_response();
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(SET_COOKIE, value);
        }
        response
    }

    /// The message left by the previous write, if any; the page must then `clear` it.
    pub fn take(headers: &HeaderMap) -> Option<String> {
        let (code, produit) = cookie(headers, FLASH)?.split_once('.')?;
        let produit = String::from_utf8(URL_SAFE_NO_PAD.decode(produit).ok()?).ok()?;
        let produit = crate::web::extract::truncate(&produit, 200);
        let verb = [Self::Added, Self::Updated, Self::Deleted].into_iter().find(|f| f.code() == code)?.verb();
        Some(format!("Vente « {produit} » {verb}."))
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Added => "ajoutée",
            Self::Updated => "modifiée",
            Self::Deleted => "supprimée",
        }
    }

    /// Expires the flash cookie on `response` (after it was shown once).
    pub fn clear(response: &mut Response) {
        response.headers_mut().append(SET_COOKIE, HeaderValue::from_static("dsms_flash=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flash_round_trips_through_its_cookie() {
        let response = Flash::Added.redirect("/", "Riz brisé");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set = response.headers()[SET_COOKIE].to_str().unwrap();
        let pair = set.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&format!("autre=1; {pair}")).unwrap());
        assert_eq!(Flash::take(&headers).as_deref(), Some("Vente « Riz brisé » ajoutée."));
        headers.insert(COOKIE, HeaderValue::from_static("dsms_flash=piratee.eA"));
        assert_eq!(Flash::take(&headers), None);
    }
}
