//! Devices people recognise: "Chrome 131 on Linux" in place of a raw `User-Agent` header,
//! for device lists ("Your devices") and admin output. Feature `devices`.
//!
//! The description is for people, not for decisions: a user agent is whatever the client
//! chose to send. Keep showing the raw header next to it (a tooltip, a JSON field) for
//! anyone who needs the detail.

use woothee::parser::{Parser, WootheeResult};

/// What woothee answers when it does not know a field.
const UNKNOWN: &str = "UNKNOWN";

/// A short description of the device behind `user_agent`: the browser, its major version
/// where known, and the operating system, such as `"Chrome 131 on Linux"` or
/// `"Safari 18 on iPhone"`. A client that is not a browser is named by its own product
/// token (`"curl 8"`); a header that says nothing recognisable gives `"Unknown device"`.
/// Never fails, and never returns more than 64 characters, whatever the input.
///
/// ```
/// use cloakroom::device::describe;
/// let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// assert_eq!(describe(chrome), "Chrome 131 on Linux");
/// assert_eq!(describe(""), "Unknown device");
/// ```
pub fn describe(user_agent: &str) -> String {
    let parsed = Parser::new().parse(user_agent);
    let browser = parsed.as_ref().and_then(browser);
    let os = parsed.as_ref().and_then(|result| known(result.os));
    let mut text = match (browser, os) {
        (Some(browser), Some(os)) => format!("{browser} on {os}"),
        (Some(browser), None) => browser,
        (None, Some(os)) => format!("Unknown browser on {os}"),
        (None, None) => product(user_agent).unwrap_or_else(|| "Unknown device".to_owned()),
    };
    if text.chars().count() > 64 {
        text = text.chars().take(63).collect();
        text.push('…');
    }
    text
}

/// The browser's name and major version, if woothee knows the browser. Clients it files
/// under the generic "HTTP Library" (curl, wget, language libraries) are left to
/// [`product`], which names them.
fn browser(result: &WootheeResult<'_>) -> Option<String> {
    let name = known(result.name).filter(|name| *name != "HTTP Library")?;
    Some(with_major(name, known(result.version)))
}

/// The client's own product token (`curl/8.5` gives `curl 8`), for clients that are not
/// browsers. Only a plain name of letters, digits, `.`, `_` and `-` is shown.
fn product(user_agent: &str) -> Option<String> {
    let token = user_agent.split_whitespace().next()?;
    let (name, version) = token.split_once('/').unwrap_or((token, ""));
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 32 || !name.chars().all(plain) || name == "Mozilla" {
        return None;
    }
    Some(with_major(name, Some(version)))
}

/// `name` and the major part of `version`, if it has a numeric one.
fn with_major(name: &str, version: Option<&str>) -> String {
    let major = version
        .and_then(|version| version.split('.').next())
        .filter(|major| !major.is_empty() && major.len() <= 6)
        .filter(|major| major.chars().all(|c| c.is_ascii_digit()));
    match major {
        Some(major) => format!("{name} {major}"),
        None => name.to_owned(),
    }
}

fn known(field: &str) -> Option<&str> {
    Some(field.trim()).filter(|field| !field.is_empty() && *field != UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn common_browsers_read_as_people_name_them() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
                "Chrome 156 on Linux",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari 18 on iPhone",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox 133 on Windows 10",
            ),
        ];
        for (agent, expected) in cases {
            assert_eq!(describe(agent), expected, "{agent}");
        }
    }

    #[test]
    fn anything_else_gives_a_short_answer() {
        assert_eq!(describe("curl/8.5"), "curl 8");
        assert_eq!(describe("TestAgent/1.0"), "TestAgent 1");
        assert_eq!(describe("Mozilla/5.0"), "Unknown device");
        assert_eq!(describe("<script>/1"), "Unknown device");
        assert_eq!(describe(""), "Unknown device");
        assert_eq!(describe("\u{0}\u{ffff}"), "Unknown device");
        let long = "x".repeat(10_000);
        assert!(describe(&long).chars().count() <= 64);
    }
}
