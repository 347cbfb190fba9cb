//! Hiding the secrets a store URL carries, for every message and log line that shows one.

use percent_encoding::percent_decode_str;

/// Query parameters whose value is a secret: any name containing one of these, in any case.
const SECRET_PARAMETERS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
];

/// The URL with every secret replaced by `***`, for messages and logs: the password in the
/// authority (`user:***@host`) and the value of any query parameter whose name looks like
/// a secret (`?password=***`, `?auth_token=***`, percent-encoded names too).
///
/// It errs on the side of hiding: a password holding an unescaped `/`, `?` or `@` is still
/// hidden, at the price of hiding a little more of such a URL.
///
/// ```
/// assert_eq!(
///     cloakroom_stores::redact("postgres://app:hunter2@db/sessions?sslmode=require&password=x"),
///     "postgres://app:***@db/sessions?sslmode=require&password=***"
/// );
/// ```
pub fn redact(url: &str) -> String {
    let (scheme, rest) = split_scheme(url);
    // Secret parameter values first, so an '@' inside one is not read as the end of the
    // user information below.
    let rest = redact_query(rest);
    match split_userinfo(&rest) {
        Some((userinfo, location)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}{user}:***@{location}"),
            None => format!("{scheme}{rest}"),
        },
        None => format!("{scheme}{rest}"),
    }
}

/// `text` with every secret `url` carries replaced by `***`: for a driver's error message,
/// which may quote the URL or a part of it in its own way.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let mut secrets = secrets(url);
    // Longest first, so a secret containing another is replaced whole.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    let mut text = text.to_owned();
    for secret in secrets {
        text = text.replace(&secret, "***");
    }
    scrub_urls(&text)
}

/// The secrets in `url`, as written and percent-decoded.
fn secrets(url: &str) -> Vec<String> {
    let (_, rest) = split_scheme(url);
    let mut raw = Vec::new();
    if let Some((_, query)) = rest.split_once('?') {
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                if is_secret_parameter(name) {
                    raw.push(value.to_owned());
                }
            }
        }
    }
    let without_query = redact_query(rest);
    if let Some((userinfo, _)) = split_userinfo(&without_query) {
        if let Some((_, password)) = userinfo.split_once(':') {
            raw.push(password.to_owned());
        }
    }
    let mut secrets = Vec::new();
    for secret in raw.into_iter().filter(|s| !s.is_empty() && s != "***") {
        let decoded = percent_decode_str(&secret).decode_utf8_lossy().into_owned();
        if decoded != secret {
            secrets.push(decoded);
        }
        secrets.push(secret);
    }
    secrets
}

/// `text` with any URL in it redacted, where the URL itself is not at hand.
pub(crate) fn scrub_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains("://") && (word.contains('@') || word.contains('?')) {
                redact(word)
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn split_scheme(url: &str) -> (&str, &str) {
    match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    }
}

/// The user information and what follows it: the last '@' ends it, even when the
/// password holds '/' or '?'.
fn split_userinfo(rest: &str) -> Option<(&str, &str)> {
    rest.rfind('@').map(|at| (&rest[..at], &rest[at + 1..]))
}

/// `text` with the values of secret query parameters replaced by `***`.
fn redact_query(text: &str) -> String {
    let Some((before, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _value)) if is_secret_parameter(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before}?{}", pairs.join("&"))
}

fn is_secret_parameter(name: &str) -> bool {
    let name = percent_decode_str(name)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|secret| name.contains(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_secret_parameters_are_redacted() {
        // (URL, as shown): one table, so a new case is one line.
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("sqlite://a.db", "sqlite://a.db"),
            ("sqlite://a.db?table=t", "sqlite://a.db?table=t"),
            ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
            (
                "postgres://u@h/db?sslmode=disable&password=pw&table=t",
                "postgres://u@h/db?sslmode=disable&password=***&table=t",
            ),
            (
                "cached+mysql://u:pw@h/db?Auth_Token=x&p%61ss=y",
                "cached+mysql://u:***@h/db?Auth_Token=***&p%61ss=***",
            ),
            // Unescaped characters in a password still leave nothing of it behind.
            ("postgres://u:p/w?d@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p@w@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u@h/db?password=p@w",
                "postgres://u@h/db?password=***",
            ),
            (
                "redis-cluster://:pw@a:1,:pw@b:2",
                "redis-cluster://:***@b:2",
            ),
            ("nats:x?token=t", "nats:x?token=***"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn driver_messages_lose_the_secrets_of_the_url() {
        let url = "postgres://u:p%40ss@h/db?password=hunter2";
        let message = "bad password p@ss (or p%40ss, or hunter2) for postgres://u:p@ss@h/db";
        let scrubbed = scrub(message, url);
        for secret in ["p@ss", "p%40ss", "hunter2"] {
            assert!(!scrubbed.contains(secret), "{scrubbed}");
        }
        assert_eq!(scrub("no secret here", url), "no secret here");
        assert_eq!(scrub("plain", "memory://"), "plain");
    }
}
