//! Why a store URL could not be opened.

/// Why a store URL could not be opened, with what to do. Every URL and store message in it
/// has its secrets hidden ([`crate::redact`]).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The scheme names no store.
    #[error("unknown store URL scheme in {url:?}: use one of {}", crate::known_urls().join(", "))]
    UnknownScheme {
        /// The URL, secrets hidden.
        url: String,
    },
    /// The URL is malformed.
    #[error("store URL {url:?} is not valid: {reason}")]
    Invalid {
        /// The URL, secrets hidden.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The store could not be set up (unreachable, no rights...).
    #[error("cannot open {url}: {reason}")]
    Setup {
        /// The URL, secrets hidden.
        url: String,
        /// The store's error, secrets hidden.
        reason: String,
    },
    /// The store's schema could not be created.
    #[error("cannot create the schema in {url}: {reason}")]
    Migrate {
        /// The URL, secrets hidden.
        url: String,
        /// The store's error, secrets hidden.
        reason: String,
    },
    /// Client-side sessions keep nothing on a server to manage.
    #[error("{url} sessions live in browsers' cookies: there is nothing on a server to list or revoke (bump a user's epoch to log them out)")]
    ClientSide {
        /// The URL, secrets hidden.
        url: String,
    },
}
