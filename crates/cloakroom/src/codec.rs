//! The cookie codec: finding the session ID in `Cookie` headers and writing `Set-Cookie`.

use std::fmt;
use std::ops::ControlFlow;
use std::time::Duration;

use http::HeaderValue;

use crate::config::{CookieConfig, SameSite};
use crate::id::{IdFormat, SessionId};
use crate::record::Record;

/// How many distinct candidates for the session a request's cookies are searched for at
/// most: well-formed session IDs for server-side sessions, values for client-side ones.
///
/// Browsers send more than one cookie of a name when several paths or domains set one
/// (a sibling subdomain can plant one in front of ours: "cookie tossing"), so more than
/// the first must be tried: a planted value that names no session then does not hide
/// ours. A planted value that names a live session (the attacker's own) does win, being
/// first; only [`CookieConfig::with_host_prefix`] (`__Host-`) stops sibling subdomains
/// from setting the cookie at all. The bound keeps the work a request can cause small: a
/// header with a hundred duplicates costs at most this many store look-ups or decryptions.
pub const MAX_CANDIDATES: usize = 4;

/// Calls `found` with the value of every cookie called `name`, in order across all header
/// lines, until it says stop.
///
/// The header is read pair by pair, as bytes: a pair that is malformed, or not text, costs
/// only itself, never the other cookies. Values wrapped in double quotes (RFC 6265) are
/// unwrapped.
fn each_value<'h>(
    headers: impl IntoIterator<Item = &'h [u8]>,
    name: &str,
    mut found: impl FnMut(&'h [u8]) -> ControlFlow<()>,
) {
    for header in headers {
        for pair in header.split(|&byte| byte == b';') {
            let Some(equals) = pair.iter().position(|&byte| byte == b'=') else {
                continue;
            };
            if pair[..equals].trim_ascii() != name.as_bytes() {
                continue;
            }
            let value = pair[equals + 1..].trim_ascii();
            let value = match value {
                [b'"', inner @ .., b'"'] => inner,
                _ => value,
            };
            if found(value).is_break() {
                return;
            }
        }
    }
}

/// The session IDs a request's `Cookie` headers carry under `name`, to be tried in order:
/// the well-formed ones, without repeats, at most [`MAX_CANDIDATES`].
///
/// An ID is only a candidate: the caller adopts the first one its store knows, so a cookie
/// with an unknown ID planted in front of ours does not hide our session, and an unknown
/// ID is still never adopted. A planted ID the store does know (an attacker's own live
/// session) is adopted, being first: only a `__Host-` cookie
/// ([`CookieConfig::with_host_prefix`]) keeps sibling subdomains from planting one.
/// Malformed values, and bytes that are not text elsewhere in the header, are skipped. No
/// candidate is an anonymous request, never an error.
///
/// ```
/// use cloakroom::{codec::session_id_candidates, SessionId};
/// let (planted, ours) = (SessionId::generate(), SessionId::generate());
/// let header = format!("id={}; theme=dark; id=garbage; id={}", planted.to_cookie_value(), ours.to_cookie_value());
/// assert_eq!(session_id_candidates([header.as_bytes()], "id"), [planted, ours]);
/// assert!(session_id_candidates([&b"id=short; x=\xff"[..]], "id").is_empty());
/// ```
pub fn session_id_candidates<'h>(
    headers: impl IntoIterator<Item = &'h [u8]>,
    name: &str,
) -> Vec<SessionId> {
    IdCandidates::parse(headers, name).iter().cloned().collect()
}

/// The candidates of [`session_id_candidates`], held inline: a request with a session
/// cookie parses them on every request, with no allocation.
#[derive(Clone, Default)]
pub(crate) struct IdCandidates {
    ids: [Option<SessionId>; MAX_CANDIDATES],
    len: usize,
    /// A value under the name was not a session ID (for the bad-cookie metric).
    malformed: bool,
}

impl IdCandidates {
    pub(crate) fn parse<'h>(headers: impl IntoIterator<Item = &'h [u8]>, name: &str) -> Self {
        Self::parse_with(headers, name, None)
    }

    /// The same, with the IDs written as `format` says (plain when `None`).
    pub(crate) fn parse_with<'h>(
        headers: impl IntoIterator<Item = &'h [u8]>,
        name: &str,
        format: Option<&dyn IdFormat>,
    ) -> Self {
        let mut found = Self::default();
        // A format's decode may verify a MAC, so each distinct value it decodes counts
        // against the bound, not only those that verify; the plain shape check costs too
        // little to need one.
        let mut decoded = [&b""[..]; MAX_CANDIDATES];
        let mut attempts = 0;
        each_value(headers, name, |value| {
            if format.is_some() {
                if decoded[..attempts].contains(&value) {
                    return ControlFlow::Continue(());
                }
                decoded[attempts] = value;
                attempts += 1;
            }
            let id = std::str::from_utf8(value)
                .ok()
                .and_then(|value| SessionId::decode_with(value, format));
            found.malformed |= id.is_none();
            if let Some(id) = id.filter(|id| !found.iter().any(|seen| seen == id)) {
                found.ids[found.len] = Some(id);
                found.len += 1;
            }
            if found.len == MAX_CANDIDATES || attempts == MAX_CANDIDATES {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        found
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a value under the name was not a well-formed session ID.
    pub(crate) fn saw_malformed(&self) -> bool {
        self.malformed
    }

    /// The candidates, in header order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &SessionId> {
        self.ids[..self.len].iter().flatten()
    }
}

/// The first well-formed session ID among the `Cookie` headers: the first of
/// [`session_id_candidates`]. Whether the store knows it is for the caller to find out.
///
/// ```
/// use cloakroom::{codec::find_session_id, SessionId};
/// let id = SessionId::generate();
/// let header = format!("theme=dark; id=garbage; id={}", id.to_cookie_value());
/// assert_eq!(find_session_id([header.as_bytes()], "id"), Some(id));
/// assert_eq!(find_session_id([&b"id=short"[..]], "id"), None);
/// ```
pub fn find_session_id<'h>(
    headers: impl IntoIterator<Item = &'h [u8]>,
    name: &str,
) -> Option<SessionId> {
    session_id_candidates(headers, name).into_iter().next()
}

/// The values of the cookie called `name`, in header order, unquoted, without repeats and
/// at most [`MAX_CANDIDATES`]: for client-side sessions, whose values are tried in turn
/// until one opens. Empty values and values that are not text are skipped.
///
/// ```
/// use cloakroom::codec::cookie_values;
/// assert_eq!(cookie_values([&b"id=a; x=\xff; id=\"b\"; id=a; id="[..]], "id"), ["a", "b"]);
/// ```
pub fn cookie_values<'h>(headers: impl IntoIterator<Item = &'h [u8]>, name: &str) -> Vec<String> {
    let mut values = Vec::new();
    find_cookie_value(headers, name, |value| {
        values.push(value.to_owned());
        None::<()>
    });
    values
}

/// The first `Some` that `try_value` answers for the values [`cookie_values`] would
/// return, tried in the same order, without collecting them: a client-side session is
/// opened straight from the header's bytes, with no copy of its value.
pub(crate) fn find_cookie_value<'h, T>(
    headers: impl IntoIterator<Item = &'h [u8]>,
    name: &str,
    mut try_value: impl FnMut(&'h str) -> Option<T>,
) -> Option<T> {
    let mut seen = [""; MAX_CANDIDATES];
    let mut tried = 0;
    let mut found = None;
    each_value(headers, name, |value| {
        let text = std::str::from_utf8(value)
            .ok()
            .filter(|text| !text.is_empty());
        let Some(text) = text.filter(|text| !seen[..tried].contains(text)) else {
            return ControlFlow::Continue(());
        };
        seen[tried] = text;
        tried += 1;
        found = try_value(text);
        if found.is_some() || tried == MAX_CANDIDATES {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    found
}

/// A `Set-Cookie` header for `Debug` output: its attributes, with the cookie's value (a
/// session ID or a sealed session: a bearer secret) replaced by `<redacted>`.
///
/// ```
/// use cloakroom::{codec::{session_cookie, RedactedSetCookie}, CookieConfig, SessionId};
/// let id = SessionId::generate();
/// let header = session_cookie(&CookieConfig::default(), &id, None);
/// let printed = format!("{:?}", RedactedSetCookie(&header));
/// assert!(printed.starts_with("\"id=<redacted>; HttpOnly"));
/// assert!(!printed.contains(&id.to_cookie_value()));
/// ```
pub struct RedactedSetCookie<'a>(pub &'a HeaderValue);

impl fmt::Debug for RedactedSetCookie<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::str::from_utf8(self.0.as_bytes()).unwrap_or_default();
        let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
        let Some((name, value)) = pair.split_once('=') else {
            return f.write_str("\"<redacted>\"");
        };
        // An empty value (a removal cookie) is no secret, and says what the header does.
        let value = if value.is_empty() { "" } else { "<redacted>" };
        let separator = if attributes.is_empty() { "" } else { ";" };
        write!(f, "\"{name}={value}{separator}{attributes}\"")
    }
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

/// The same, with the ID written as `format` says (plain when `None`).
pub(crate) fn session_cookie_with(
    config: &CookieConfig,
    id: &SessionId,
    format: Option<&dyn IdFormat>,
    max_age: Option<Duration>,
) -> HeaderValue {
    render(config, &id.encode_with(format), max_age.map(Some))
}

/// The longest `Max-Age` a session cookie is sent with: what browsers keep a cookie at most.
const MAX_COOKIE_AGE: Duration = Duration::from_secs(400 * 24 * 60 * 60);

/// The `Max-Age` of the cookie of the session `record` holds: until its first deadline
/// for a persistent ("remember me") session, none for a browser-session one. Browsers
/// keep a cookie 400 days at most (RFC 6265bis), so a longer life is sent as that: the
/// cookie's size was checked with a `Max-Age` of ten digits, which a deadline centuries
/// away would outgrow.
pub(crate) fn max_age(record: &Record) -> Option<Duration> {
    record.persistent.then(|| {
        record.expires_at().map_or(MAX_COOKIE_AGE, |deadline| {
            Duration::try_from(deadline - crate::record::now())
                .unwrap_or_default()
                .min(MAX_COOKIE_AGE)
        })
    })
}

/// The `Set-Cookie` value that removes the session cookie: same name, path, domain and flags,
/// empty value, `Max-Age=0` and an `Expires` in the past.
pub fn removal_cookie(config: &CookieConfig) -> HeaderValue {
    render(config, "", Some(None))
}

/// The `Set-Cookie` of a removal: `Max-Age=0` and an `Expires` in the past.
const REMOVAL: &str = "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT";

/// `max_age`: `None` no Max-Age; `Some(None)` removal; `Some(Some(d))` persistent.
///
/// Written straight into one buffer of exactly the header's length, attributes in the
/// order the `cookie` crate writes them: building a `cookie::Cookie` took an owned copy of
/// every part and formatted it back, a few thousand instructions on every response that
/// sets a cookie. Exactly sized, the buffer becomes the `HeaderValue`'s bytes as it is;
/// with spare capacity `bytes` would allocate a second block to share it.
fn render(config: &CookieConfig, value: &str, max_age: Option<Option<Duration>>) -> HeaderValue {
    let name = config.full_name();
    let path = config.path();
    let domain = config
        .domain()
        .map(|domain| domain.strip_prefix('.').unwrap_or(domain));
    let same_site = match config.same_site() {
        SameSite::Strict => "Strict",
        SameSite::Lax => "Lax",
        SameSite::None => "None",
    };
    let max_age = max_age.map(|age| {
        age.map(|age| {
            let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
            let mut digits = [0; 20];
            let len = decimal(secs.unsigned_abs(), &mut digits);
            (digits, len)
        })
    });
    let len = name.len()
        + 1
        + value.len()
        + if config.http_only() {
            "; HttpOnly".len()
        } else {
            0
        }
        + "; SameSite=".len()
        + same_site.len()
        + if config.secure() { "; Secure".len() } else { 0 }
        + "; Path=".len()
        + path.len()
        + domain.map_or(0, |domain| "; Domain=".len() + domain.len())
        + match &max_age {
            None => 0,
            Some(None) => REMOVAL.len(),
            Some(Some((_, digits))) => "; Max-Age=".len() + digits,
        };
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    if config.http_only() {
        out.extend_from_slice(b"; HttpOnly");
    }
    out.extend_from_slice(b"; SameSite=");
    out.extend_from_slice(same_site.as_bytes());
    if config.secure() {
        out.extend_from_slice(b"; Secure");
    }
    out.extend_from_slice(b"; Path=");
    out.extend_from_slice(path.as_bytes());
    if let Some(domain) = domain {
        out.extend_from_slice(b"; Domain=");
        out.extend_from_slice(domain.as_bytes());
    }
    match &max_age {
        None => {}
        Some(None) => out.extend_from_slice(REMOVAL.as_bytes()),
        Some(Some((digits, len))) => {
            out.extend_from_slice(b"; Max-Age=");
            out.extend_from_slice(&digits[digits.len() - len..]);
        }
    }
    debug_assert_eq!(out.len(), out.capacity(), "the length is counted exactly");
    // Name, path and domain were validated as header-safe; the value is base64url or empty.
    HeaderValue::try_from(out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Writes `n` in decimal at the end of `out`; returns how many digits.
fn decimal(mut n: u64, out: &mut [u8; 20]) -> usize {
    let mut at = out.len();
    loop {
        at -= 1;
        // A digit: the cast loses nothing.
        out[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return out.len() - at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_well_formed_duplicate_is_a_candidate_in_order() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        let header = format!(
            "id=bad; id=\"{}\"; id={}",
            a.to_cookie_value(),
            b.to_cookie_value()
        );
        assert_eq!(
            session_id_candidates([header.as_bytes()], "id"),
            [a.clone(), b.clone()]
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

    /// An ID format that verifies a signature, counting how many values it was asked to.
    struct CountingFormat(std::sync::atomic::AtomicUsize);

    impl IdFormat for CountingFormat {
        fn decode<'v>(&self, value: &'v str) -> Option<std::borrow::Cow<'v, str>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            value.strip_prefix("signed.").map(Into::into)
        }

        fn encode(&self, id: &str) -> String {
            format!("signed.{id}")
        }
    }

    /// A format's decode (a MAC check, say) is the costly step, so every distinct value it
    /// is asked to decode counts against the bound, well-formed or not: a header of
    /// duplicates that never verify costs at most [`MAX_CANDIDATES`] checks, not one each.
    #[test]
    fn a_format_decodes_at_most_max_candidates_values() {
        let format = CountingFormat(Default::default());
        let header: String = (0..1_000).map(|n| format!("id=forged{n}; ")).collect();
        let found = IdCandidates::parse_with([header.as_bytes()], "id", Some(&format));
        assert!(found.is_empty() && found.saw_malformed());
        let decoded = format.0.load(std::sync::atomic::Ordering::Relaxed);
        assert!(decoded <= MAX_CANDIDATES, "{decoded} values decoded");

        let id = SessionId::generate();
        let header = format!(
            "id=forged; id=forged; id=junk; id={}",
            format.encode(&id.to_cookie_value())
        );
        let found = IdCandidates::parse_with([header.as_bytes()], "id", Some(&format));
        assert_eq!(found.iter().collect::<Vec<_>>(), [&id], "repeats are free");
    }

    #[test]
    fn a_bad_byte_costs_only_its_own_pair() {
        let id = SessionId::generate();
        let value = id.to_cookie_value();
        for header in [
            [&b"a=\xff\xfe; id="[..], value.as_bytes()].concat(),
            [&b"id="[..], value.as_bytes(), b"; b=\xc3"].concat(),
            [&b"\xff; id="[..], value.as_bytes()].concat(),
            [&b"id=\xff; id="[..], value.as_bytes()].concat(),
        ] {
            assert_eq!(
                session_id_candidates([header.as_slice()], "id"),
                std::slice::from_ref(&id),
                "{}",
                String::from_utf8_lossy(&header)
            );
        }
        let sealed = [&b"a=\xff; id=sealed"[..]];
        assert_eq!(cookie_values(sealed, "id"), ["sealed"]);
    }

    #[test]
    fn candidates_are_distinct_and_bounded() {
        let ids: Vec<SessionId> = (0..10).map(|_| SessionId::generate()).collect();
        let header: String = ids
            .iter()
            .flat_map(|id| [id, id])
            .map(|id| format!("id={}; ", id.to_cookie_value()))
            .collect();
        assert_eq!(
            session_id_candidates([header.as_bytes()], "id"),
            ids[..MAX_CANDIDATES]
        );
        let values = "id=x; ".repeat(100) + "id=y; id=z";
        assert_eq!(cookie_values([values.as_bytes()], "id"), ["x", "y", "z"]);
        let many: String = (0..100).map(|n| format!("id=v{n};")).collect();
        assert_eq!(cookie_values([many.as_bytes()], "id").len(), MAX_CANDIDATES);
    }

    proptest::proptest! {
        #[test]
        fn any_header_bytes_give_a_bounded_answer(
            lines in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..4)
        ) {
            let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
            proptest::prop_assert!(session_id_candidates(lines.iter().copied(), "id").len() <= MAX_CANDIDATES);
            proptest::prop_assert!(cookie_values(lines.iter().copied(), "id").len() <= MAX_CANDIDATES);
        }

        #[test]
        fn junk_around_our_cookie_never_hides_it(
            before in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            after in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let id = SessionId::generate();
            let header = [&before[..], b"; id=", id.to_cookie_value().as_bytes(), b";", &after[..]].concat();
            proptest::prop_assert_eq!(session_id_candidates([header.as_slice()], "id"), vec![id]);
        }
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

    /// The hand-written rendering says exactly what the `cookie` crate's did, for every
    /// combination of attributes.
    #[test]
    fn rendering_matches_the_cookie_crate() {
        let reference = |config: &CookieConfig, value: &str, max_age: Option<Option<Duration>>| {
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
            cookie.to_string()
        };
        for same_site in [SameSite::Strict, SameSite::Lax, SameSite::None] {
            for (secure, http_only) in [(true, true), (false, true), (true, false), (false, false)]
            {
                for domain in [None, Some("example.com"), Some(".example.com")] {
                    for host_prefix in [false, true] {
                        let mut config = CookieConfig::default()
                            .with_same_site(same_site)
                            .with_secure(secure)
                            .with_http_only(http_only)
                            .with_path("/app");
                        if let Some(domain) = domain {
                            config = config.with_domain(Some(domain.to_owned()));
                        }
                        if host_prefix && domain.is_none() && secure {
                            config = config.with_host_prefix(true).with_path("/");
                        }
                        for max_age in [
                            None,
                            Some(None),
                            Some(Some(Duration::from_secs(0))),
                            Some(Some(Duration::from_secs(86_400))),
                            Some(Some(Duration::from_secs(u64::MAX))),
                        ] {
                            for value in ["", "AQHQJVN1-_x"] {
                                assert_eq!(
                                    render(&config, value, max_age).to_str().unwrap(),
                                    reference(&config, value, max_age),
                                    "{same_site:?} secure {secure} http_only {http_only} {domain:?} {max_age:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
