//! The client-side path: a session sealed whole in its cookie, with no store to write.

use std::time::Duration;

use http::HeaderValue;
use time::OffsetDateTime;

use super::state::{Origin, View};
use super::Session;
use crate::codec;
use crate::error::SessionError;
use crate::id::{SessionId, StoreKey};
use crate::record::Record;
use crate::sealed::CookieCodec;
use crate::telemetry::{self, names, BadCookie};

/// The largest `Set-Cookie` value browsers keep.
const MAX_SET_COOKIE: usize = 4096;

impl Session {
    /// The session in the first of `values` that opens, if it is still live; otherwise
    /// why there is none.
    pub(super) fn open_cookie(
        &self,
        sessions: &dyn CookieCodec,
        values: &[String],
        time: OffsetDateTime,
    ) -> Result<View, BadCookie> {
        let name = self.config().cookie.full_name();
        let mut reason = BadCookie::Malformed;
        // Duplicates: the first value that verifies wins; the rest are ignored.
        let opened = values
            .iter()
            .find_map(|value| match sessions.open_checked(&name, value) {
                Ok(opened) => Some(opened),
                Err(why) => {
                    // One value that is a sealed session under a wrong key says more than
                    // junk beside it.
                    if why == BadCookie::Tampered {
                        reason = why;
                    }
                    None
                }
            })
            .ok_or(reason)?;
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
            record.version += 1;
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
        let value = sessions
            .seal(&config.full_name(), key, record)
            .map_err(SessionError::Serialize)?;
        Ok(codec::value_cookie(config, &value, max_age))
    }
}
