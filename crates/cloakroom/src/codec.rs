//! The cookie codec: finding the session ID in `Cookie` headers and writing `Set-Cookie`.

use std::time::Duration;

use http::HeaderValue;

use crate::config::CookieConfig;
use crate::id::SessionId;

/// Finds the session ID among `Cookie` header values.
///
/// Every cookie named `name` is considered in order (browsers send the most specific path
/// first); the first whose value is a well-formed ID wins, and malformed ones are skipped.
/// Values may be wrapped in double quotes (RFC 6265). No match, or headers that are not
/// text, give `None`: an anonymous request, never an error.
///
/// ```
/// use cloakroom::{codec::find_session_id, SessionId};
/// let id = SessionId::generate();
/// let header = format!("theme=dark; id=garbage; id={}", id.to_cookie_value());
/// assert_eq!(find_session_id([header.as_bytes()], "id"), Some(id));
/// assert_eq!(find_session_id([&b"id=short"[..]], "id"), None);
/// ```
pub fn find_session_id<'a>(
    headers: impl IntoIterator<Item = &'a [u8]>,
    name: &str,
) -> Option<SessionId> {
    headers.into_iter().find_map(|header| {
        let header = std::str::from_utf8(header).ok()?;
        header.split(';').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            if key.trim() != name {
                return None;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            SessionId::parse(value)
        })
    })
}

/// Every value of the cookie called `name`, in header order, unquoted (for client-side
/// sessions, whose values are tried in turn).
pub fn cookie_values<'a>(headers: impl IntoIterator<Item = &'a [u8]>, name: &str) -> Vec<String> {
    let mut values = Vec::new();
    for header in headers {
        let Ok(header) = std::str::from_utf8(header) else {
            continue;
        };
        for pair in header.split(';') {
            if let Some((key, value)) = pair.split_once('=') {
                if key.trim() == name {
                    let value = value.trim();
                    let value = value
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(value);
                    values.push(value.to_owned());
                }
            }
        }
    }
    values
}

/// The `Set-Cookie` value carrying an arbitrary (already sealed) `value`.
pub fn value_cookie(config: &CookieConfig, value: &str, max_age: Option<Duration>) -> HeaderValue {
    render(config, value, max_age.map(Some))
}

/// The `Set-Cookie` value that hands `id` to the browser. `max_age` makes it persistent;
/// `None` makes it a browser-session cookie.
pub fn session_cookie(
    config: &CookieConfig,
    id: &SessionId,
    max_age: Option<Duration>,
) -> HeaderValue {
    render(config, &id.to_cookie_value(), max_age.map(Some))
}

/// The `Set-Cookie` value that removes the session cookie: same name, path, domain and flags,
/// empty value, `Max-Age=0` and an `Expires` in the past.
pub fn removal_cookie(config: &CookieConfig) -> HeaderValue {
    render(config, "", Some(None))
}

/// `max_age`: `None` no Max-Age; `Some(None)` removal; `Some(Some(d))` persistent.
fn render(config: &CookieConfig, value: &str, max_age: Option<Option<Duration>>) -> HeaderValue {
    let mut cookie = cookie::Cookie::new(config.full_name(), value.to_owned());
    cookie.set_path(config.path().to_owned());
    if let Some(domain) = config.domain() {
        cookie.set_domain(domain.to_owned());
    }
    cookie.set_secure(config.secure());
    cookie.set_http_only(config.http_only());
    cookie.set_same_site(config.same_site());
    match max_age {
        None => {}
        Some(None) => {
            cookie.set_max_age(cookie::time::Duration::ZERO);
            cookie.set_expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
        }
        Some(Some(age)) => {
            let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
            cookie.set_max_age(cookie::time::Duration::seconds(secs));
        }
    }
    // Name, path and domain were validated as header-safe; the value is base64url or empty.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SameSite;

    #[test]
    fn first_well_formed_duplicate_wins() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        let header = format!(
            "id=bad; id=\"{}\"; id={}",
            a.to_cookie_value(),
            b.to_cookie_value()
        );
        assert_eq!(find_session_id([header.as_bytes()], "id"), Some(a));
        assert_eq!(find_session_id([&b"xid=1; idx=2"[..]], "id"), None);
        assert_eq!(find_session_id([&[0xff, 0xfe][..]], "id"), None);
        let second_header = format!("id={}", b.to_cookie_value());
        assert_eq!(
            find_session_id([&b"other=1"[..], second_header.as_bytes()], "id"),
            Some(b)
        );
    }

    #[test]
    fn cookies_carry_the_configured_flags() {
        let config = CookieConfig::default().with_host_prefix(true);
        let id = SessionId::generate();
        let set = session_cookie(&config, &id, None);
        let text = set.to_str().unwrap();
        assert!(text.starts_with(&format!("__Host-id={}", id.to_cookie_value())));
        for flag in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(text.contains(flag), "{text} lacks {flag}");
        }
        assert!(!text.contains("Max-Age"));
        let persistent = session_cookie(&config, &id, Some(Duration::from_secs(60)));
        assert!(persistent.to_str().unwrap().contains("Max-Age=60"));
        let removal = removal_cookie(&config.clone().with_same_site(SameSite::Strict));
        let text = removal.to_str().unwrap();
        assert!(text.starts_with("__Host-id=;"));
        assert!(text.contains("Max-Age=0") && text.contains("SameSite=Strict"));
    }
}
