//! A store URL taken apart: the scheme, the parameters this crate reads, and the rest for
//! the store's driver.

use crate::error::OpenError;
use crate::redact::redact;
use crate::schemes::Query;

/// A store URL, ready for a scheme's open function. `Debug` shows the URL with its
/// secrets hidden, never [`url`](Self::url) itself.
#[derive(Clone)]
pub struct Target {
    /// The scheme, lower case (`postgres` in `postgres://…`).
    pub scheme: String,
    /// The URL without this crate's own parameters, for the store's driver.
    pub url: String,
    /// `?table=NAME`: the SQL stores' table.
    pub table: Option<String>,
    /// `?prefix=PREFIX`: the key prefix of the Redis and Memcached stores.
    pub prefix: Option<String>,
    /// The URL as messages show it, secrets hidden.
    pub shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The whole URL as shown says the rest: the scheme and this crate's parameters.
        f.debug_tuple("Target").field(&self.shown).finish()
    }
}

impl Target {
    /// Takes `url` apart. `None` when it has no `scheme://`.
    pub fn parse(url: &str) -> Result<Option<Self>, OpenError> {
        let shown = redact(url);
        let invalid = |reason| OpenError::Invalid {
            url: shown.clone(),
            reason,
        };
        let (base, table) = split_param(url, "table").map_err(invalid)?;
        let (base, prefix) = split_param(&base, "prefix").map_err(invalid)?;
        let Some((scheme, _)) = base.split_once("://") else {
            return Ok(None);
        };
        Ok(Some(Self {
            scheme: scheme.to_ascii_lowercase(),
            url: base.clone(),
            table,
            prefix,
            shown,
        }))
    }

    /// What follows `scheme://` in [`Target::url`].
    pub fn rest(&self) -> &str {
        self.url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest)
    }

    /// Refuses a query parameter the scheme does not take (`query`): one it would drop,
    /// or pass on as part of a file name (`sqlite://s.db?tabel=x`), so that a typo opens
    /// another store than the one meant, silently.
    pub fn check_query(&self, query: Query) -> Result<(), OpenError> {
        for (name, given) in [("table", &self.table), ("prefix", &self.prefix)] {
            if given.is_some() && !query.own.contains(&name) {
                return Err(self.invalid(format!("{}:// takes no ?{name}=", self.scheme)));
            }
        }
        match self.url.split_once('?') {
            Some((_, rest)) if !query.driver => {
                let takes = match query.own {
                    [] => "none".to_owned(),
                    own => own
                        .iter()
                        .map(|name| format!("?{name}="))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                Err(self.invalid(format!(
                    "unknown query parameter {rest:?}: {}:// takes {takes}",
                    self.scheme
                )))
            }
            _ => Ok(()),
        }
    }

    /// An [`OpenError::Invalid`] for this URL.
    pub fn invalid(&self, reason: impl Into<String>) -> OpenError {
        OpenError::Invalid {
            url: self.shown.clone(),
            reason: crate::redact::scrub(&reason.into(), &self.url),
        }
    }

    /// An [`OpenError::Setup`] for this URL: the store could not be set up.
    pub fn setup(&self, error: impl std::fmt::Display) -> OpenError {
        OpenError::Setup {
            url: self.shown.clone(),
            reason: crate::redact::scrub(&error.to_string(), &self.url),
        }
    }
}

/// Splits off this crate's own query parameter `name`, keeping the rest for the driver.
fn split_param(url: &str, name: &str) -> Result<(String, Option<String>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut found = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((key, value)) if key == name && !value.is_empty() => {
                found = Some(value.to_owned())
            }
            Some((key, _)) if key == name => return Err(format!("{name}= needs a value")),
            _ => rest.push(pair),
        }
    }
    let base = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((base, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate promises that every URL it prints goes through `redact`; a derived
    /// `Debug` printed the driver's URL, password and all.
    #[test]
    fn debug_never_shows_a_password() {
        let target = Target::parse("postgres://app:hunter2@db/sessions?table=t&sslpassword=s3cret")
            .unwrap()
            .unwrap();
        let printed = format!("{target:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("s3cret"),
            "{printed}"
        );
        assert!(
            printed.contains("postgres") && printed.contains("db/sessions"),
            "{printed}"
        );
    }

    #[test]
    fn our_parameters_are_split_off() {
        assert_eq!(
            split_param("postgres://h/db?table=t&sslmode=disable", "table").unwrap(),
            ("postgres://h/db?sslmode=disable".into(), Some("t".into()))
        );
        assert_eq!(
            split_param("sqlite://x.db", "table").unwrap(),
            ("sqlite://x.db".into(), None)
        );
        assert!(split_param("sqlite://x.db?table=", "table").is_err());
        assert_eq!(
            split_param("redis://h:1/2?prefix=app:", "prefix").unwrap(),
            ("redis://h:1/2".into(), Some("app:".into()))
        );
    }

    #[test]
    fn a_target_keeps_the_driver_url_and_shows_it_redacted() {
        let target = Target::parse("Postgres://u:pw@h/db?table=t&password=pw")
            .unwrap()
            .unwrap();
        assert_eq!(target.scheme, "postgres");
        assert_eq!(target.url, "Postgres://u:pw@h/db?password=pw");
        assert_eq!(target.table.as_deref(), Some("t"));
        assert_eq!(target.rest(), "u:pw@h/db?password=pw");
        assert_eq!(target.shown, "Postgres://u:***@h/db?table=t&password=***");
        assert!(Target::parse("no-scheme").unwrap().is_none());
    }
}
