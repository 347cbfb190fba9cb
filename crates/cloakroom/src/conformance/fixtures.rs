//! Records for store tests, so each store's own tests do not build them again.

use crate::record::{now, Record};

/// A record live for an hour of idleness (no absolute deadline), of `user` if given.
///
/// ```
/// let record = cloakroom::conformance::live_record(Some("alice"));
/// assert_eq!(record.user_id.as_deref(), Some("alice"));
/// assert!(record.is_live_at(cloakroom::record::now()));
/// ```
pub fn live_record(user: Option<&str>) -> Record {
    let t = now();
    let mut record = Record::new(t, Some(t + time::Duration::hours(1)), None);
    record.user_id = user.map(str::to_owned);
    record
}
