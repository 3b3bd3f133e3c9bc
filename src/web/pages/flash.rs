//! Cookies of the pages: reading the `Cookie` header, and the one-shot flash message shown after a
//! write's 303 redirect (Post/Redirect/Get). Owns: the flash cookie's format. Leaves: CSRF (csrf.rs).
//!
//! The cookie holds the message itself (`tone.base64(text).tag`, or with a link
//! `tone.base64(text).base64(href).base64(label).tag`), signed with the process's
//! secret: a planted or edited cookie is ignored, so the page only ever says what this server said.

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::csrf;

const FLASH: &str = "dsms_flash";
/// Keeps the cookie well under the 4 KiB browsers accept.
const MAX_CHARS: usize = 700;

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

/// What a sale write did, said once on the next page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flash {
    Added,
    Updated,
    Deleted,
}

impl Flash {
    fn verb(self) -> &'static str {
        match self {
            Self::Added => "ajoutée",
            Self::Updated => "modifiée",
            Self::Deleted => "supprimée",
        }
    }

    /// A 303 to `to` that leaves this message (naming the product) for the next page.
    pub fn redirect(self, to: &str, produit: &str) -> Response {
        let produit = crate::web::extract::truncate(produit, 200);
        Notice::success(format!("Vente « {produit} » {}.", self.verb())).redirect(to)
    }

    /// The message left by the previous write, if any; the page must then `clear` it.
    pub fn take(headers: &HeaderMap) -> Option<Notice> {
        let (tone, rest) = cookie(headers, FLASH)?.split_once('.')?;
        let (parts, tag) = rest.rsplit_once('.')?;
        if !csrf::signed(FLASH, &format!("{tone}.{parts}"), tag) {
            return None;
        }
        let tone = [Tone::Success, Tone::Warning].into_iter().find(|t| t.code() == tone)?;
        let decode = |part: &str| String::from_utf8(URL_SAFE_NO_PAD.decode(part).ok()?).ok();
        let mut parts = parts.split('.');
        let text = decode(parts.next()?)?;
        let link = match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => None,
            (Some(href), Some(label), None) => Some(Link { href: decode(href)?, label: decode(label)? }),
            _ => return None,
        };
        Some(Notice { text, tone, link })
    }

    /// Expires the flash cookie on `response` (after it was shown once).
    pub fn clear(response: &mut Response) {
        response.headers_mut().append(SET_COOKIE, HeaderValue::from_static("dsms_flash=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"));
    }
}

/// How a message reads: it went well, or look at this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Success,
    Warning,
}

impl Tone {
    fn code(self) -> &'static str {
        match self {
            Self::Success => "ok",
            Self::Warning => "attention",
        }
    }
}

/// A message shown once at the top of the next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub tone: Tone,
    /// A link shown after the text (an address of this site).
    pub link: Option<Link>,
}

/// A link of a message: where, and its words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// An address of this site (starts with `/`).
    pub href: String,
    pub label: String,
}

impl Notice {
    pub fn success(text: impl Into<String>) -> Self {
        Self { text: text.into(), tone: Tone::Success, link: None }
    }

    pub fn warning(text: impl Into<String>) -> Self {
        Self { text: text.into(), tone: Tone::Warning, link: None }
    }

    /// The message with a link after it; `href` must be an address of this site (else no link).
    pub fn with_link(self, href: impl Into<String>, label: impl Into<String>) -> Self {
        let href = href.into();
        let link = (href.starts_with('/') && !href.starts_with("//")).then(|| Link { href, label: label.into() });
        Self { link, ..self }
    }

    /// The CSS class of the message (`flash-ok`, `flash-attention`).
    pub fn class(&self) -> &'static str {
        match self.tone {
            Tone::Success => "flash-ok",
            Tone::Warning => "flash-attention",
        }
    }

    /// A 303 to `to` that leaves this message for the next page.
    pub fn redirect(self, to: &str) -> Response {
        let text = crate::web::extract::truncate(&self.text, MAX_CHARS);
        let mut payload = format!("{}.{}", self.tone.code(), URL_SAFE_NO_PAD.encode(text));
        if let Some(link) = &self.link {
            payload.push_str(&format!(".{}.{}", URL_SAFE_NO_PAD.encode(&link.href), URL_SAFE_NO_PAD.encode(&link.label)));
        }
        let tag = csrf::sign(FLASH, &payload);
        let value = format!("{FLASH}={payload}.{tag}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax");
        let mut response = (StatusCode::SEE_OTHER, [(axum::http::header::LOCATION, to.to_owned())]).into_response();
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(SET_COOKIE, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carried(response: &Response) -> HeaderMap {
        let set = response.headers()[SET_COOKIE].to_str().unwrap();
        let pair = set.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&format!("autre=1; {pair}")).unwrap());
        headers
    }

    #[test]
    fn a_flash_round_trips_through_its_cookie() {
        let response = Flash::Added.redirect("/", "Riz brisé");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let shown = Flash::take(&carried(&response)).unwrap();
        assert_eq!((shown.text.as_str(), shown.tone), ("Vente « Riz brisé » ajoutée.", Tone::Success));
        let warning = Notice::warning("Synchronisation partielle").redirect("/stats");
        assert_eq!(Flash::take(&carried(&warning)).unwrap().class(), "flash-attention");
        let linked = Notice::warning("En cours").with_link("/stats#historique-titre", "Voir l'historique");
        assert_eq!(Flash::take(&carried(&linked.clone().redirect("/"))), Some(linked));
        assert_eq!(Notice::success("x").with_link("https://ailleurs.example", "y").link, None, "only this site's addresses");
    }

    #[test]
    fn a_planted_or_edited_flash_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("dsms_flash=piratee.eA"));
        assert_eq!(Flash::take(&headers), None);
        let planted = format!("dsms_flash=ok.{}.AAAA", URL_SAFE_NO_PAD.encode("Synchronisation réussie"));
        headers.insert(COOKIE, HeaderValue::from_str(&planted).unwrap());
        assert_eq!(Flash::take(&headers), None);
        let genuine = carried(&Notice::warning("x").redirect("/"));
        let edited = genuine[COOKIE].to_str().unwrap().replace("attention.", "ok.");
        headers.insert(COOKIE, HeaderValue::from_str(&edited).unwrap());
        assert_eq!(Flash::take(&headers), None, "the tone is signed too");
    }
}
