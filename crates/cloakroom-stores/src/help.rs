//! Help texts made from the table, so they list exactly the schemes that open.

use crate::schemes::SCHEMES;

/// Every URL form, as the "unknown scheme" message lists them.
pub fn known_urls() -> Vec<&'static str> {
    SCHEMES.iter().map(|scheme| scheme.usage).collect()
}

/// The store URL section of a `--help` text: a heading, then one aligned line per scheme.
///
/// ```
/// let help = cloakroom_stores::help();
/// assert!(help.starts_with("Store URLs:\n"));
/// assert!(help.contains("sqlite://PATH"));
/// ```
pub fn help() -> String {
    let width = SCHEMES
        .iter()
        .map(|scheme| scheme.usage.len())
        .max()
        .unwrap_or(0);
    let mut text = String::from("Store URLs:\n");
    for scheme in SCHEMES {
        text.push_str(&format!("  {:width$}  {}\n", scheme.usage, scheme.about));
    }
    text.pop();
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_scheme_once_per_line() {
        let help = help();
        assert_eq!(help.lines().count(), SCHEMES.len() + 1);
        for scheme in SCHEMES {
            assert!(help.contains(scheme.usage), "{help}");
            assert!(help.contains(scheme.about), "{help}");
        }
    }
}
