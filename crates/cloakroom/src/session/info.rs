//! The public facts a session hands out: what the layer must do to the response, and
//! what device lists and handlers read about a session.

use http::HeaderValue;
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::SessionError;
use crate::id::SessionHandle;
use crate::record::ClientMeta;

/// What the layer must do to the response once the session is committed. `Debug` hides
/// the cookie's value (a bearer secret).
#[derive(Default)]
#[must_use]
pub struct Finish {
    /// A `Set-Cookie` to send (new, rotated, refreshed or removal).
    pub set_cookie: Option<HeaderValue>,
    /// Whether the session was read, so the response varies by `Cookie`.
    pub vary_cookie: bool,
    /// A failure to load or save, for the failure policy.
    pub error: Option<SessionError>,
    /// Further response headers (feature `dbsc`): the device-binding offer of a login.
    #[cfg(feature = "dbsc")]
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for Finish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finish")
            .field(
                "set_cookie",
                &self
                    .set_cookie
                    .as_ref()
                    .map(crate::codec::RedactedSetCookie),
            )
            .field("vary_cookie", &self.vary_cookie)
            .field("error", &self.error)
            .finish()
    }
}

/// A user's session as shown in a device list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionSummary {
    /// The public handle.
    pub handle: SessionHandle,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was last active.
    #[serde(with = "time::serde::rfc3339")]
    pub last_active_at: OffsetDateTime,
    /// When it dies unless used.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The IP recorded at creation or login.
    pub ip: Option<String>,
    /// The user agent recorded at creation or login.
    pub user_agent: Option<String>,
    /// Whether this is the session of the request that asked.
    pub current: bool,
}

/// Facts about the current session, once it exists in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMetadata {
    /// The public handle.
    pub handle: SessionHandle,
    /// The logged-in user.
    pub user: Option<String>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was last active.
    pub last_active_at: OffsetDateTime,
    /// The idle deadline.
    pub idle_deadline: Option<OffsetDateTime>,
    /// The absolute deadline.
    pub absolute_deadline: Option<OffsetDateTime>,
    /// Whether the cookie is persistent.
    pub persistent: bool,
    /// The IP and user agent recorded at creation or login.
    pub client: ClientMeta,
}
