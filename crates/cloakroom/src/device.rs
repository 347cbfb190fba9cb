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
/// `"Safari 18 on iPhone"`. A client that is not a browser is named as such (`"curl 8"`);
/// a header that says nothing recognisable gives `"Unknown device"`. Never fails, and
/// never returns more than 64 characters, whatever the input.
///
/// ```
/// use cloakroom::device::describe;
/// let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// assert_eq!(describe(chrome), "Chrome 131 on Linux");
/// assert_eq!(describe(""), "Unknown device");
/// ```
pub fn describe(user_agent: &str) -> String {
    let Some(result) = Parser::new().parse(user_agent) else {
        return "Unknown device".to_owned();
    };
    let mut text = browser(&result).unwrap_or_else(|| "Unknown browser".to_owned());
    if let Some(os) = known(result.os) {
        text.push_str(" on ");
        text.push_str(os);
    } else if text == "Unknown browser" {
        return "Unknown device".to_owned();
    }
    if text.chars().count() > 64 {
        text = text.chars().take(63).collect();
        text.push('…');
    }
    text
}

/// The browser's name and major version, if woothee knows the name.
fn browser(result: &WootheeResult<'_>) -> Option<String> {
    let name = known(result.name)?;
    let major = known(result.version)
        .and_then(|version| version.split('.').next())
        .filter(|major| !major.is_empty() && major.chars().all(|c| c.is_ascii_digit()));
    Some(match major {
        Some(major) => format!("{name} {major}"),
        None => name.to_owned(),
    })
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
        assert_eq!(describe(""), "Unknown device");
        assert_eq!(describe("\u{0}\u{ffff}"), "Unknown device");
        let long = "x".repeat(10_000);
        assert!(describe(&long).chars().count() <= 64);
    }
}
