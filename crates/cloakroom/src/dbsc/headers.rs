//! The protocol's header names, the response headers cloakroom sends, reading the request
//! headers Chrome sends, and the session-configuration JSON.
//!
//! Header values follow RFC 9651 (structured fields) where the draft says so; Chrome 156
//! sends `Secure-Session-Response` and `Sec-Secure-Session-Id` as bare values rather than
//! quoted strings, so both forms are read.

use http::{HeaderName, HeaderValue};
use serde::Serialize;

use super::Algorithm;

/// Response header on login: offers the browser to bind the session.
pub const REGISTRATION: HeaderName = HeaderName::from_static("secure-session-registration");
/// Response header: a challenge for the next proof, with the binding's identifier.
pub const CHALLENGE: HeaderName = HeaderName::from_static("secure-session-challenge");
/// Request header: the browser's signed proof (a compact JWS).
pub const RESPONSE: HeaderName = HeaderName::from_static("secure-session-response");
/// Request header on refresh: which binding the browser refreshes.
pub const SESSION_ID: HeaderName = HeaderName::from_static("sec-secure-session-id");
/// Request header: the browser skipped a refresh (quota, server error). Attacker-controlled:
/// for logs and metrics only, never a reason to relax a check.
pub const SKIPPED: HeaderName = HeaderName::from_static("secure-session-skipped");

/// The longest `Sec-Secure-Session-Id` read, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// A value that cannot go into a structured-field string (a control or non-ASCII
/// character).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} holds a character a header string cannot carry")]
pub struct InvalidHeaderValue(pub &'static str);

/// `value` as an RFC 9651 string: quoted, `"` and `\` escaped; only printable ASCII.
fn sf_string(value: &str, what: &'static str) -> Result<String, InvalidHeaderValue> {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for character in value.chars() {
        match character {
            '"' | '\\' => {
                out.push('\\');
                out.push(character);
            }
            ' '..='~' => out.push(character),
            _ => return Err(InvalidHeaderValue(what)),
        }
    }
    out.push('"');
    Ok(out)
}

fn header_value(text: String) -> Result<HeaderValue, InvalidHeaderValue> {
    // Only printable ASCII is ever written above, which is always a valid header value.
    HeaderValue::try_from(text).map_err(|_| InvalidHeaderValue("the header"))
}

/// `Secure-Session-Registration`, offering `algorithms` (in order of preference),
/// registration at `path`, the `challenge` to sign and an optional `authorization` value
/// the browser copies into its proof.
///
/// Always send a challenge: without one Chrome sends no proof at all.
pub fn registration(
    algorithms: &[Algorithm],
    path: &str,
    challenge: &str,
    authorization: Option<&str>,
) -> Result<HeaderValue, InvalidHeaderValue> {
    let names: Vec<&str> = algorithms.iter().map(|alg| alg.as_str()).collect();
    let mut text = format!(
        "({});path={};challenge={}",
        names.join(" "),
        sf_string(path, "the registration path")?,
        sf_string(challenge, "the challenge")?
    );
    if let Some(authorization) = authorization {
        text.push_str(";authorization=");
        text.push_str(&sf_string(authorization, "the authorization value")?);
    }
    header_value(text)
}

/// `Secure-Session-Challenge: "<challenge>";id="<binding id>"`. Chrome ignores a
/// challenge without `id`, so it is always there.
pub fn challenge(challenge: &str, binding_id: &str) -> Result<HeaderValue, InvalidHeaderValue> {
    header_value(format!(
        "{};id={}",
        sf_string(challenge, "the challenge")?,
        sf_string(binding_id, "the binding identifier")?
    ))
}

/// Reads a request header that may come bare or as one quoted string: the bytes between
/// one pair of surrounding double quotes, or the whole value. `None` for a value longer
/// than `max`, empty, or holding anything but printable ASCII without quotes or
/// backslashes (no escape is ever needed in the values this protocol carries).
pub fn bare_or_quoted(value: &[u8], max: usize) -> Option<&str> {
    if value.len() > max.saturating_add(2) {
        return None;
    }
    let inner = match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    };
    if inner.is_empty()
        || inner.len() > max
        || !inner
            .iter()
            .all(|&byte| byte.is_ascii_graphic() && byte != b'"' && byte != b'\\')
    {
        return None;
    }
    std::str::from_utf8(inner).ok()
}

/// Reads `Sec-Secure-Session-Id`.
pub fn session_id(value: &[u8]) -> Option<&str> {
    bare_or_quoted(value, MAX_SESSION_ID_LEN)
}

/// The bound cookie's attributes as the session configuration must state them: they must
/// match the cookie's `Set-Cookie` on Domain, Path, Secure, HttpOnly and SameSite, and must
/// **not** carry `Max-Age`/`Expires` (Chrome 156 silently drops the binding if they do),
/// which is why this builds them rather than taking a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieAttributes {
    /// `Path`.
    pub path: String,
    /// `Domain`, if any.
    pub domain: Option<String>,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite`.
    pub same_site: crate::SameSite,
}

impl CookieAttributes {
    /// The attributes of the session cookie `config` describes, always `HttpOnly`: the
    /// bound cookie travels wherever the session cookie does.
    pub fn like(config: &crate::CookieConfig) -> Self {
        Self {
            path: config.path().to_owned(),
            domain: config.domain().map(str::to_owned),
            secure: config.secure(),
            http_only: true,
            same_site: config.same_site(),
        }
    }

    /// The attribute string, in `Set-Cookie` syntax without the name and value.
    pub fn render(&self) -> String {
        let mut parts = vec![format!("Path={}", self.path)];
        if let Some(domain) = &self.domain {
            parts.push(format!("Domain={domain}"));
        }
        if self.secure {
            parts.push("Secure".to_owned());
        }
        if self.http_only {
            parts.push("HttpOnly".to_owned());
        }
        parts.push(format!("SameSite={}", self.same_site));
        parts.join("; ")
    }
}

/// The session configuration sent as the registration response's body (and on a refresh
/// whose configuration changed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionConfiguration {
    /// The binding's identifier; Chrome sends it back in `Sec-Secure-Session-Id`.
    pub session_identifier: String,
    /// Where Chrome refreshes (relative to the registration URL, or absolute same-site).
    pub refresh_url: String,
    /// Which requests the binding covers.
    pub scope: Scope,
    /// The bound cookies.
    pub credentials: Vec<Credential>,
}

/// The scope of a binding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// The origin; omitted means the registration's origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Whether the whole site (eTLD+1) is covered, not just the origin.
    pub include_site: bool,
    /// Include/exclude rules, evaluated last to first; none here.
    pub scope_specification: Vec<serde_json::Value>,
}

/// One bound credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Credential {
    /// Always `"cookie"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The cookie's name.
    pub name: String,
    /// The cookie's attributes (see [`CookieAttributes`]).
    pub attributes: String,
}

impl SessionConfiguration {
    /// A binding `binding_id` of the registering origin, refreshed at `refresh_url`, with
    /// one bound cookie.
    pub fn new(
        binding_id: impl Into<String>,
        refresh_url: impl Into<String>,
        cookie_name: impl Into<String>,
        attributes: &CookieAttributes,
    ) -> Self {
        Self {
            session_identifier: binding_id.into(),
            refresh_url: refresh_url.into(),
            scope: Scope {
                origin: None,
                include_site: false,
                scope_specification: Vec::new(),
            },
            credentials: vec![Credential {
                kind: "cookie",
                name: cookie_name.into(),
                attributes: attributes.render(),
            }],
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings and booleans always serialise")
    }
}

/// The refresh body that ends the browser's binding cleanly (an unknown or ended session).
pub const END_SESSION_JSON: &str = r#"{"continue":false}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_header_as_chrome_reads_it() {
        let header =
            registration(&Algorithm::ALL, "/dbsc/register", "BBXie-_x", Some("in1")).unwrap();
        assert_eq!(
            header,
            r#"(ES256 RS256);path="/dbsc/register";challenge="BBXie-_x";authorization="in1""#
        );
        let header = registration(&[Algorithm::Rs256], "/r", "c", None).unwrap();
        assert_eq!(header, r#"(RS256);path="/r";challenge="c""#);
    }

    #[test]
    fn header_strings_are_escaped_or_refused() {
        let header = registration(&Algorithm::ALL, r#"/a"b\c"#, "c", None).unwrap();
        assert_eq!(header, r#"(ES256 RS256);path="/a\"b\\c";challenge="c""#);
        assert_eq!(
            registration(&Algorithm::ALL, "/a\r\nSet-Cookie: x", "c", None),
            Err(InvalidHeaderValue("the registration path"))
        );
        assert!(challenge("c", "é").is_err());
    }

    #[test]
    fn challenge_header_always_names_the_binding() {
        assert_eq!(challenge("F_qF", "WXu3p").unwrap(), r#""F_qF";id="WXu3p""#);
    }

    #[test]
    fn session_id_bare_or_quoted() {
        assert_eq!(session_id(b"WXu3p-3_pq8"), Some("WXu3p-3_pq8"));
        assert_eq!(session_id(b"\"WXu3p-3_pq8\""), Some("WXu3p-3_pq8"));
        for bad in [
            &b""[..],
            b"\"\"",
            b"\"",
            b"a b",
            b"a\"b",
            b"\xff",
            &[b'a'; MAX_SESSION_ID_LEN + 1],
        ] {
            assert_eq!(session_id(bad), None, "{bad:?}");
        }
        assert!(session_id(&[b'a'; MAX_SESSION_ID_LEN]).is_some());
    }

    #[test]
    fn session_configuration_json() {
        let attributes = CookieAttributes {
            path: "/".to_owned(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: crate::SameSite::Lax,
        };
        let json =
            SessionConfiguration::new("WXu3p", "/dbsc/refresh", "bound", &attributes).to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "session_identifier": "WXu3p",
                "refresh_url": "/dbsc/refresh",
                "scope": {"include_site": false, "scope_specification": []},
                "credentials": [{"type": "cookie", "name": "bound",
                                 "attributes": "Path=/; Secure; HttpOnly; SameSite=Lax"}],
            })
        );
        assert!(!json.contains("Max-Age") && !json.contains("Expires"));
    }
}
