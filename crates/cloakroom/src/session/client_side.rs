//! The client-side path: a session sealed whole in its cookie, with no store to write.

use std::time::Duration;

use http::HeaderValue;
use time::OffsetDateTime;

use super::manager::Incoming;
use super::state::{Origin, View};
use super::Session;
use crate::codec;
use crate::error::SessionError;
use crate::id::{SessionId, StoreKey};
use crate::record::Record;
use crate::sealed::{CookieCodec, OpenedCookie};
use crate::telemetry::{self, names, BadCookie};

/// The largest `Set-Cookie` value browsers keep.
const MAX_SET_COOKIE: usize = 4096;

impl Session {
    /// The session in the first of the cookie's values (`incoming`, or the header lines
    /// the session keeps) that opens, if it is still live; otherwise why there is none.
    /// `None` when the request brought no value of our cookie at all.
    pub(super) fn open_cookie(
        &self,
        sessions: &dyn CookieCodec,
        incoming: &Incoming,
        time: OffsetDateTime,
    ) -> Option<Result<View, BadCookie>> {
        let name = self.config().cookie.full_name();
        let mut reason = None;
        // Duplicates: the first value that verifies wins; the rest are ignored.
        let mut open = |value: &str| match sessions.open_checked(&name, value) {
            Ok(opened) => Some(opened),
            Err(why) => {
                // One value that is a sealed session under a wrong key says more than
                // junk beside it.
                if why == BadCookie::Tampered {
                    reason = Some(why);
                } else if reason.is_none() {
                    reason = Some(BadCookie::Malformed);
                }
                None
            }
        };
        let opened = match incoming {
            Incoming::Sealed(values) => values.iter().find_map(|value| open(value)),
            Incoming::SealedInLines => {
                codec::find_cookie_value(self.inner.cookies.iter(), &name, open)
            }
            Incoming::None | Incoming::Malformed | Incoming::Ids(_) => None,
        };
        Some(match opened {
            Some(opened) => self.live_view(opened, time),
            None => Err(reason?),
        })
    }

    /// The view of a session its cookie brought, if it is still live.
    fn live_view(&self, opened: OpenedCookie, time: OffsetDateTime) -> Result<View, BadCookie> {
        if !opened.record.is_live_at(time) {
            return Err(BadCookie::Expired);
        }
        let mut view = View::new(opened.record);
        view.origin = Origin::Sealed {
            key: opened.key,
            reissue: opened.under_fallback,
        };
        Ok(view)
    }

    /// Whether the request brought a cookie a removal cookie should clear: one that could
    /// name a session. Junk is left alone, as it always was.
    pub(super) fn cookie_present(&self) -> bool {
        match self.incoming() {
            Incoming::SealedInLines => {
                let name = self.config().cookie.full_name();
                codec::find_cookie_value(self.inner.cookies.iter(), &name, |_| Some(())).is_some()
            }
            Incoming::None | Incoming::Malformed => false,
            Incoming::Ids(_) | Incoming::Sealed(_) => true,
        }
    }

    /// Fails a write, before it happens, if its cookie would not fit.
    pub(super) fn check_cookie_size(
        &self,
        sessions: &dyn CookieCodec,
        view: &View,
        record: &Record,
    ) -> Result<(), SessionError> {
        let key = view.key().unwrap_or(StoreKey::from_bytes([0; 32]));
        let attributes = self.inner.manager.cookie_attributes_len;
        let name = self.config().cookie.full_name();
        let value = sessions
            .sealed_len(
                &name,
                &key,
                record,
                MAX_SET_COOKIE.saturating_sub(attributes),
            )
            .map_err(SessionError::Serialize)?;
        let size = attributes + value;
        if size > MAX_SET_COOKIE {
            return Err(SessionError::CookieTooLarge {
                size,
                limit: MAX_SET_COOKIE,
            });
        }
        Ok(())
    }

    /// The commit: no store to write, only decide whether the cookie must be (re)issued,
    /// and with which times.
    pub(super) fn commit_cookie(&self, view: &mut View, time: OffsetDateTime) {
        let expiry = &self.config().expiry;
        let changed = !view.pending.is_empty();
        let reissue = match &mut view.origin {
            Origin::Sealed { reissue, .. } => std::mem::take(reissue),
            Origin::New | Origin::Stored { .. } => {
                let record = &mut view.record;
                if !changed || (record.data.is_empty() && record.user_id.is_none()) {
                    view.pending.changes.clear();
                    return;
                }
                self.start_record(record, time);
                record.version = 0;
                view.origin = Origin::Sealed {
                    key: SessionId::generate().store_key(),
                    reissue: false,
                };
                telemetry::count(names::SESSIONS_CREATED);
                false
            }
        };
        view.wrote |= changed;
        if changed || reissue || view.send_cookie {
            let record = &mut view.record;
            record.last_active_at = time;
            record.idle_deadline = expiry.idle_deadline(time);
            record.version = record.version.wrapping_add(1);
            view.send_cookie = true;
        } else if let Some(touch) = expiry.touch_due(&view.record, time) {
            view.record.apply_touch(&touch);
            view.send_cookie = true;
        }
        view.pending.changes.clear();
        view.pending.rotate = false;
    }

    /// The `Set-Cookie` carrying the sealed session.
    pub(super) fn sealed_cookie(
        &self,
        sessions: &dyn CookieCodec,
        key: &StoreKey,
        record: &Record,
        max_age: Option<Duration>,
    ) -> Result<HeaderValue, SessionError> {
        let config = &self.config().cookie;
        let name = config.full_name();
        // The value goes from the codec's buffer straight into the header's.
        let mut cookie = None;
        sessions
            .seal_with(&name, key, record, &mut |value| {
                cookie = Some(codec::value_cookie(config, value, max_age));
            })
            .map_err(SessionError::Serialize)?;
        match cookie {
            Some(cookie) => Ok(cookie),
            // A codec whose `seal_with` wrote nothing: its `seal` is the contract.
            None => {
                let value = sessions
                    .seal(&name, key, record)
                    .map_err(SessionError::Serialize)?;
                Ok(codec::value_cookie(config, &value, max_age))
            }
        }
    }
}
