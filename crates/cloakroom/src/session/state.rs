//! What one request knows of its session: whether it was loaded, and once it is, the
//! record as this request sees it and what it will commit.

use crate::change::ChangeSet;
use crate::id::{SessionHandle, SessionId, StoreKey};
use crate::record::Record;

/// A request's session, behind the handle's lock.
pub(super) struct Slot {
    pub(super) status: Status,
    /// Committed for the response: writes are refused from then on.
    pub(super) finished: bool,
}

impl Slot {
    pub(super) const fn new() -> Self {
        Self {
            status: Status::Untouched,
            finished: false,
        }
    }

    /// The loaded view, if the session was loaded.
    pub(super) fn view(&mut self) -> Option<&mut View> {
        match &mut self.status {
            Status::Loaded(view) => Some(view),
            Status::Untouched | Status::LoadFailed => None,
        }
    }

    /// Whether the request read the session (or tried to): only then is there anything to
    /// commit, and does the response vary by cookie.
    pub(super) fn touched(&self) -> bool {
        !matches!(self.status, Status::Untouched)
    }
}

/// How far a request got with its session.
// One per request, inline in the handle's mutex: boxing the view would cost every request
// that touches its session an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Status {
    /// The handler has not touched it: nothing loaded, nothing to commit.
    Untouched,
    /// Loading failed under the fail-closed policy: the response becomes a 503.
    LoadFailed,
    /// Loaded (or, under the fail-open policy, degraded to anonymous).
    Loaded(View),
}

/// A loaded session as this request sees it.
pub(super) struct View {
    /// The stored record with this request's changes applied (a new, empty one for an
    /// anonymous visitor).
    pub(super) record: Record,
    /// Where the record lives.
    pub(super) origin: Origin,
    /// What this request has yet to commit.
    pub(super) pending: Pending,
    /// Loading failed under the fail-open policy: act anonymous and write nothing.
    pub(super) degraded: bool,
    /// The session was destroyed in this request (the record is already deleted).
    pub(super) destroyed: bool,
    /// The cookie must be (re)sent: a new or rotated ID, a moved persistent expiry, or a
    /// changed client-side session.
    pub(super) send_cookie: bool,
    /// For the request's span: the handle the session had when loaded, and what this
    /// request saved (changes, a rotation).
    pub(super) loaded_handle: Option<SessionHandle>,
    pub(super) wrote: bool,
    pub(super) rotated: bool,
    /// Headers for the response once the session is saved (feature `dbsc`: a login's
    /// device-binding offer).
    #[cfg(feature = "dbsc")]
    pub(super) headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// Where a loaded session's record lives.
pub(super) enum Origin {
    /// Nowhere yet: the first commit with data creates it.
    New,
    /// Server-side, under this ID, at this version when last seen.
    Stored { id: SessionId, version: u64 },
    /// Client-side, sealed in the cookie; `reissue`: it was sealed under a fallback key.
    Sealed { key: StoreKey, reissue: bool },
}

/// The writes a request has yet to commit.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) changes: ChangeSet,
    /// A new ID is due (`cycle_id`, `login`).
    pub(super) rotate: bool,
    /// A login is due; once it is saved, the per-user cap is enforced.
    pub(super) logging_in: bool,
    /// The serialized size of the record's data, computed on the first write.
    pub(super) data_size: Option<usize>,
    /// The remember-me choice this request made (even one the session already had): a
    /// login as another user starts a fresh session, which keeps it.
    pub(super) remember: Option<bool>,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.changes.is_empty() && !self.rotate
    }
}

impl View {
    /// A session no store holds yet, starting from `record`.
    pub(super) fn new(record: Record) -> Self {
        Self {
            record,
            origin: Origin::New,
            pending: Pending::default(),
            degraded: false,
            destroyed: false,
            send_cookie: false,
            loaded_handle: None,
            wrote: false,
            rotated: false,
            #[cfg(feature = "dbsc")]
            headers: Vec::new(),
        }
    }

    /// The key naming the existing session, server- or client-side.
    pub(super) fn key(&self) -> Option<StoreKey> {
        match &self.origin {
            Origin::New => None,
            Origin::Stored { id, .. } => Some(id.store_key()),
            Origin::Sealed { key, .. } => Some(*key),
        }
    }

    /// The server-side ID, if the session is stored.
    pub(super) fn id(&self) -> Option<&SessionId> {
        match &self.origin {
            Origin::Stored { id, .. } => Some(id),
            Origin::New | Origin::Sealed { .. } => None,
        }
    }

    /// The version of the stored record as this request last saw it.
    pub(super) fn stored_version(&self) -> u64 {
        match self.origin {
            Origin::Stored { version, .. } => version,
            Origin::New | Origin::Sealed { .. } => 0,
        }
    }

    /// What the request did with its session, for its span: `failed` (the store failed
    /// the load, and the fail-open policy served the request anonymously), `rotated`,
    /// `destroyed`, `written` or `read`.
    pub(super) fn outcome(&self) -> &'static str {
        if self.degraded {
            "failed"
        } else if self.rotated {
            "rotated"
        } else if self.destroyed && self.key().is_none() {
            "destroyed"
        } else if self.wrote {
            "written"
        } else {
            "read"
        }
    }

    /// Starts over as a new anonymous session from `record`: after a logout, or when the
    /// record turned out to be deleted. What the request did (destroyed, degraded) stays.
    pub(super) fn reset(&mut self, record: Record) {
        self.record = record;
        self.origin = Origin::New;
        self.pending = Pending::default();
        self.send_cookie = false;
    }
}
