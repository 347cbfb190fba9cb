//! The session record a store keeps, and the timestamp form stores persist.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::store::StoreError;

/// The session data: string keys to JSON values.
pub type Data = serde_json::Map<String, Value>;

/// The longest user id [`Session::login`](crate::Session::login) takes, in bytes. Every
/// store keeps ids up to it (MySQL's column holds 1,020 bytes, and PostgreSQL indexes a
/// few thousand), so a user's sessions are listed and revoked alike on every store. A
/// database key, an email address or a UUID fits many times over.
pub const MAX_USER_ID_BYTES: usize = 512;

/// The longest epoch an [`EpochSource`](crate::EpochSource) may give at login, in bytes
/// (MySQL's column holds 255).
pub const MAX_EPOCH_BYTES: usize = 255;

/// Why a user id or epoch cannot be stored, if it cannot: longer than `max` bytes, or
/// holding a NUL character (PostgreSQL's text refuses it). Checked at login, so that no
/// store answers such a value with an error of its own on every request of that user.
pub(crate) fn unstorable(value: &str, max: usize) -> Option<&'static str> {
    if value.len() > max {
        Some("it is too long")
    } else if value.contains('\0') {
        Some("it holds a NUL character")
    } else {
        None
    }
}

/// `at` plus `duration`, or the last instant a timestamp can hold (the end of the year
/// 9999) if the sum lies past it: a huge timeout, or a corrupt stored time, means "never"
/// rather than a panic.
pub fn saturating_add(at: OffsetDateTime, duration: std::time::Duration) -> OffsetDateTime {
    at.checked_add(time::Duration::try_from(duration).unwrap_or(time::Duration::MAX))
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
}

/// `at` minus `duration`, or the first instant a timestamp can hold if the difference
/// lies before it.
pub fn saturating_sub(at: OffsetDateTime, duration: std::time::Duration) -> OffsetDateTime {
    at.checked_sub(time::Duration::try_from(duration).unwrap_or(time::Duration::MAX))
        .unwrap_or(time::PrimitiveDateTime::MIN.assume_utc())
}

/// Client metadata recorded when a session is created or logs in, shown in device lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMeta {
    /// The client's IP address, as the layer was configured to read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The `User-Agent` header, truncated to [`ClientMeta::MAX_USER_AGENT`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl ClientMeta {
    /// The longest user agent kept, in bytes; longer ones are cut at a character boundary.
    pub const MAX_USER_AGENT: usize = 512;

    /// Builds metadata, truncating an overlong user agent.
    pub fn new(ip: Option<String>, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent.map(|ua| {
            let mut end = ua.len().min(Self::MAX_USER_AGENT);
            while !ua.is_char_boundary(end) {
                end -= 1;
            }
            ua[..end].to_owned()
        });
        Self { ip, user_agent }
    }
}

/// Everything a store keeps about one session.
///
/// Timestamps have millisecond precision ([`now`] truncates), so a record read back from
/// any store equals the one written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The session's values.
    pub data: Data,
    /// When the session was first stored.
    #[serde(with = "unix_ms")]
    pub created_at: OffsetDateTime,
    /// When the session was last written or refreshed.
    #[serde(with = "unix_ms")]
    pub last_active_at: OffsetDateTime,
    /// The session dies at this instant unless activity moves it; `None`: no idle timeout.
    #[serde(with = "unix_ms::option", default)]
    pub idle_deadline: Option<OffsetDateTime>,
    /// The session dies at this instant whatever the activity; `None`: no absolute timeout.
    #[serde(with = "unix_ms::option", default)]
    pub absolute_deadline: Option<OffsetDateTime>,
    /// `true`: a "remember me" cookie with `Max-Age`; `false`: a browser-session cookie.
    #[serde(default)]
    pub persistent: bool,
    /// The logged-in user, which feeds the per-user index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Client metadata for device lists.
    #[serde(default)]
    pub client: ClientMeta,
    /// The user's epoch at login, for revocation by epoch ([`EpochSource`](crate::EpochSource)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_epoch: Option<String>,
    /// The device binding (DBSC), kept opaque here so the record's shape does not depend
    /// on the `dbsc` feature: stores carry it like any other field, and records written
    /// before it existed load with `None`. Boxed: it is rarely present, and the record
    /// is moved around on every request, so it costs one pointer there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_binding: Option<Box<Value>>,
    /// Bumped by one on every successful [`update`](crate::SessionStore::update).
    pub version: u64,
}

impl Record {
    /// A new, empty record created at `now`, with the given deadlines and version 1.
    pub fn new(
        now: OffsetDateTime,
        idle_deadline: Option<OffsetDateTime>,
        absolute_deadline: Option<OffsetDateTime>,
    ) -> Self {
        Self {
            data: Data::new(),
            created_at: now,
            last_active_at: now,
            idle_deadline,
            absolute_deadline,
            persistent: false,
            user_id: None,
            client: ClientMeta::default(),
            auth_epoch: None,
            device_binding: None,
            version: 1,
        }
    }

    /// The earlier of the two deadlines: when the session dies. `None`: never.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        earliest(self.idle_deadline, self.absolute_deadline)
    }

    /// Whether the session is alive at `now` (strictly before its deadline).
    pub fn is_live_at(&self, now: OffsetDateTime) -> bool {
        is_live(self.expires_at(), now)
    }

    /// Applies a [`Touch`]: moves the activity time and idle deadline, nothing else.
    pub fn apply_touch(&mut self, touch: &Touch) {
        self.last_active_at = touch.last_active_at;
        self.idle_deadline = touch.idle_deadline;
    }

    /// Where the session's device binding (DBSC) stands, read from the opaque
    /// [`device_binding`](Self::device_binding) value. Works without the `dbsc` feature,
    /// so an admin tool can show it without the signature crates. `None`: no binding, or
    /// a value this version cannot read.
    ///
    /// ```
    /// use cloakroom::record::{now, DeviceBindingState, Record};
    /// let mut record = Record::new(now(), None, None);
    /// assert_eq!(record.device_binding_state(), None);
    /// record.device_binding = Some(Box::new(serde_json::json!(
    ///     {"id": "a", "state": "bound", "key": {"alg": "ES256", "kty": "EC"}}
    /// )));
    /// assert_eq!(
    ///     record.device_binding_state(),
    ///     Some(DeviceBindingState::Bound { algorithm: "ES256".into() })
    /// );
    /// ```
    pub fn device_binding_state(&self) -> Option<DeviceBindingState> {
        let binding = self.device_binding.as_deref()?;
        // The shape `dbsc::binding::DeviceBinding` serialises to: an internally tagged
        // `state`, and for a bound key its JOSE `alg` (checked against the real type in
        // the dbsc tests).
        match binding.get("state")?.as_str()? {
            "pending" => Some(DeviceBindingState::Pending),
            "bound" => Some(DeviceBindingState::Bound {
                algorithm: binding.get("key")?.get("alg")?.as_str()?.to_owned(),
            }),
            _ => None,
        }
    }
}

/// Where a session's device binding (DBSC) stands: see
/// [`Record::device_binding_state`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceBindingState {
    /// A binding was offered at login; the browser has not registered a key (a browser
    /// without DBSC never does). The session works as an unbound one.
    Pending,
    /// The browser registered a key: requests need a valid bound cookie.
    Bound {
        /// The key's JOSE algorithm: `ES256` or `RS256`.
        algorithm: String,
    },
}

impl std::fmt::Display for DeviceBindingState {
    /// `pending`, or `bound (ES256)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pending => f.write_str("pending"),
            Self::Bound { algorithm } => write!(f, "bound ({algorithm})"),
        }
    }
}

/// The new activity time and idle deadline that [`touch`](crate::SessionStore::touch) writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Touch {
    /// The new `last_active_at`.
    pub last_active_at: OffsetDateTime,
    /// The new idle deadline.
    pub idle_deadline: Option<OffsetDateTime>,
}

/// Whether a session whose deadline is `expires_at` (`None`: never) is alive at `now`:
/// strictly before the deadline. The one liveness rule, for stores that keep records in
/// another shape.
pub fn is_live(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    expires_at.is_none_or(|deadline| now < deadline)
}

/// The earlier of two optional deadlines, where `None` means "never".
pub fn earliest(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The current UTC time, truncated to whole milliseconds as stores keep it.
pub fn now() -> OffsetDateTime {
    let at = OffsetDateTime::now_utc();
    // Replacing the sub-second part leaves the date alone: no calendar arithmetic, no
    // 128-bit division, on a path every request takes.
    at.replace_millisecond(at.millisecond()).unwrap_or(at)
}

/// A timestamp as Unix milliseconds (rounded down), the form every store persists.
pub fn to_unix_ms(at: OffsetDateTime) -> i64 {
    // `unix_timestamp` rounds down and `millisecond` counts up from it, so this is the
    // floor for times before 1970 too; i64 milliseconds span ±292 million years.
    at.unix_timestamp() * 1000 + i64::from(at.millisecond())
}

/// Reads Unix milliseconds back; `None` for a value `time` cannot represent (a corrupt row).
pub fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    let millisecond = u16::try_from(ms.rem_euclid(1000)).ok()?;
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()?
        .replace_millisecond(millisecond)
        .ok()
}

/// Reads a timestamp a store kept as Unix milliseconds back into a record's time:
/// [`StoreError::Corrupt`] for one `time` cannot represent, so the store treats the record
/// as absent (as it does any corrupt record) instead of failing the request.
///
/// ```
/// use cloakroom::record::{stored_unix_ms, to_unix_ms, now};
/// let at = now();
/// assert_eq!(stored_unix_ms(to_unix_ms(at)).unwrap(), at);
/// assert!(stored_unix_ms(i64::MAX).is_err());
/// ```
pub fn stored_unix_ms(ms: i64) -> Result<OffsetDateTime, StoreError> {
    from_unix_ms(ms).ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

/// The length of `value` as JSON, counted without building the text.
pub(crate) fn json_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, serde_json::Error> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    Ok(count.0)
}

/// Serde helpers that persist timestamps as Unix milliseconds.
pub mod unix_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    /// Serializes as an integer of Unix milliseconds.
    pub fn serialize<S: Serializer>(at: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(super::to_unix_ms(*at))
    }

    /// Deserializes from an integer of Unix milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let ms = i64::deserialize(d)?;
        super::from_unix_ms(ms).ok_or_else(|| serde::de::Error::custom("timestamp out of range"))
    }

    /// The same for optional timestamps.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        /// Serializes `None` as null.
        pub fn serialize<S: Serializer>(
            at: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => s.serialize_some(&super::super::to_unix_ms(*at)),
                None => s.serialize_none(),
            }
        }

        /// Deserializes null as `None`.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            Option::<i64>::deserialize(d)?
                .map(|ms| {
                    super::super::from_unix_ms(ms)
                        .ok_or_else(|| serde::de::Error::custom("timestamp out of range"))
                })
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    /// Found by the `record_json` fuzz target: without correctly rounded float parsing, a
    /// number read back from a store differs from the one written, by one ulp per write.
    #[test]
    fn numbers_in_session_data_survive_every_store_round_trip() {
        for text in [
            "1000111111111111100007",
            "0.30000000000000004",
            "2.2250738585072014e-308",
        ] {
            let written: Data = serde_json::from_str(&format!(r#"{{"n": {text}}}"#)).unwrap();
            let mut data = written.clone();
            for _ in 0..3 {
                data = serde_json::from_str(&serde_json::to_string(&data).unwrap()).unwrap();
            }
            assert_eq!(data, written, "{text} drifted through encode and decode");
        }
    }

    #[test]
    fn expiry_is_the_earlier_deadline_and_strict() {
        let t = now();
        let mut record = Record::new(
            t,
            Some(t + Duration::seconds(10)),
            Some(t + Duration::seconds(5)),
        );
        assert_eq!(record.expires_at(), Some(t + Duration::seconds(5)));
        assert!(record.is_live_at(t + Duration::milliseconds(4999)));
        assert!(!record.is_live_at(t + Duration::seconds(5)));
        record.absolute_deadline = None;
        record.idle_deadline = None;
        assert!(record.is_live_at(t + Duration::days(10_000)));
    }

    #[test]
    fn json_round_trip_is_exact() {
        let t = now();
        let mut record = Record::new(t, Some(t + Duration::minutes(1)), None);
        record
            .data
            .insert("k".into(), serde_json::json!({"a": [1, 2]}));
        record.user_id = Some("alice".into());
        record.client = ClientMeta::new(Some("127.0.0.1".into()), Some("agent"));
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), record);
    }

    proptest::proptest! {
        #[test]
        fn unix_ms_round_trips_and_agrees_with_nanoseconds(ms in -62_135_596_800_000_i64..253_402_300_799_999) {
            let at = from_unix_ms(ms).expect("within time's range");
            proptest::prop_assert_eq!(at.unix_timestamp_nanos(), i128::from(ms) * 1_000_000);
            proptest::prop_assert_eq!(to_unix_ms(at), ms);
            let later = at + Duration::nanoseconds(999_999);
            proptest::prop_assert_eq!(to_unix_ms(later), ms, "sub-millisecond parts round down");
        }
    }

    #[test]
    fn now_has_whole_milliseconds() {
        let t = now();
        assert_eq!(t.nanosecond() % 1_000_000, 0);
        assert_eq!(from_unix_ms(to_unix_ms(t)), Some(t));
        assert!(OffsetDateTime::now_utc() - t < Duration::seconds(1));
    }

    #[test]
    fn out_of_range_milliseconds_are_none() {
        assert_eq!(from_unix_ms(i64::MAX), None);
        assert_eq!(from_unix_ms(i64::MIN), None);
    }

    #[test]
    fn user_agent_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(400);
        let meta = ClientMeta::new(None, Some(&long));
        let ua = meta.user_agent.unwrap();
        assert!(ua.len() <= ClientMeta::MAX_USER_AGENT);
        assert!(ua.chars().all(|c| c == 'é'));
    }
}
