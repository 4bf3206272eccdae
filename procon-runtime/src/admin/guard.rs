//! Who may change state through the admin server. Pure: the handlers pass the request's
//! headers in.
//!
//! An action needs the configured `admin.token`, from the session cookie the login form sets
//! (`HttpOnly`, `SameSite=Strict`) or an `Authorization: Bearer` header (scripts), and must come
//! from the admin page itself: a browser's `Origin` (or `Sec-Fetch-Site`) naming another site
//! is refused, so a page elsewhere cannot make a signed-in operator's browser act. With no
//! token configured every action is refused.

/// The session cookie's name.
pub(crate) const COOKIE: &str = "procon_admin";

/// What an action request carries.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) host: Option<&'a str>,
    pub(crate) origin: Option<&'a str>,
    pub(crate) sec_fetch_site: Option<&'a str>,
    pub(crate) cookie: Option<&'a str>,
    pub(crate) authorization: Option<&'a str>,
}

/// Why an action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `admin.token` is configured: actions are off.
    NoTokenConfigured,
    /// The request carries no token, or a wrong one.
    NotSignedIn,
    /// The request comes from another site.
    CrossSite,
}

impl Refusal {
    /// What the operator reads.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::NoTokenConfigured => {
                "actions are off: set admin.token (PROCON_ADMIN_TOKEN) to enable them"
            }
            Refusal::NotSignedIn => "sign in with the admin token first",
            Refusal::CrossSite => "refused: the request did not come from the admin page",
        }
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// The session cookie's value in a `Cookie` header.
pub(crate) fn session(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// True when `request` carries `token` (cookie or bearer).
pub(crate) fn signed_in(request: &Request<'_>, token: &str) -> bool {
    let bearer = request
        .authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim(), token));
    let cookie = request
        .cookie
        .and_then(session)
        .is_some_and(|t| same(t, token));
    bearer || cookie
}

/// May `request` change state?
pub(crate) fn check(request: &Request<'_>, token: Option<&str>) -> Result<(), Refusal> {
    let Some(token) = token else {
        return Err(Refusal::NoTokenConfigured);
    };
    if let Some(site) = request.sec_fetch_site {
        if site != "same-origin" && site != "none" {
            return Err(Refusal::CrossSite);
        }
    }
    if let Some(origin) = request.origin {
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        if request.host != Some(origin_host) {
            return Err(Refusal::CrossSite);
        }
    }
    if !signed_in(request, token) {
        return Err(Refusal::NotSignedIn);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret-token-0123456789";

    fn from_page() -> Request<'static> {
        Request {
            host: Some("127.0.0.1:9464"),
            origin: Some("http://127.0.0.1:9464"),
            sec_fetch_site: Some("same-origin"),
            cookie: Some("other=1; procon_admin=s3cret-token-0123456789"),
            authorization: None,
        }
    }

    #[test]
    fn the_signed_in_page_may_act() {
        assert_eq!(check(&from_page(), Some(TOKEN)), Ok(()));
        let script = Request {
            authorization: Some("Bearer s3cret-token-0123456789"),
            ..Request::default()
        };
        assert_eq!(check(&script, Some(TOKEN)), Ok(()));
    }

    #[test]
    fn no_token_a_wrong_one_or_none_configured_is_refused() {
        let anonymous = Request {
            cookie: None,
            ..from_page()
        };
        assert_eq!(check(&anonymous, Some(TOKEN)), Err(Refusal::NotSignedIn));
        let wrong = Request {
            cookie: Some("procon_admin=s3cret-token-0123456788"),
            ..from_page()
        };
        assert_eq!(check(&wrong, Some(TOKEN)), Err(Refusal::NotSignedIn));
        assert_eq!(check(&from_page(), None), Err(Refusal::NoTokenConfigured));
    }

    #[test]
    fn another_site_is_refused_even_with_the_cookie() {
        let forged = Request {
            origin: Some("https://evil.example"),
            sec_fetch_site: None,
            ..from_page()
        };
        assert_eq!(check(&forged, Some(TOKEN)), Err(Refusal::CrossSite));
        let cross = Request {
            sec_fetch_site: Some("cross-site"),
            origin: None,
            ..from_page()
        };
        assert_eq!(check(&cross, Some(TOKEN)), Err(Refusal::CrossSite));
    }
}
