//! [`PrefixedIds`]: an ID format other than cloakroom's own, for tests that check an ID
//! goes through the configured [`IdFormat`] everywhere.

use std::borrow::Cow;

use crate::id::IdFormat;

/// An [`IdFormat`] that writes IDs in their cookie as `v1.` followed by the ID, and keys
/// them reversibly, as a bridge to another app's sessions does.
///
/// For tests: an engine, a test kit or a store that reads the cookie value itself instead
/// of through the format sees no session.
///
/// ```
/// use cloakroom::testing::PrefixedIds;
/// use cloakroom::IdFormat;
///
/// assert_eq!(PrefixedIds.encode("abc"), "v1.abc");
/// assert_eq!(PrefixedIds.decode("v1.abc").as_deref(), Some("abc"));
/// assert_eq!(PrefixedIds.decode("abc"), None);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PrefixedIds;

impl IdFormat for PrefixedIds {
    fn decode<'v>(&self, value: &'v str) -> Option<Cow<'v, str>> {
        value.strip_prefix("v1.").map(Into::into)
    }

    fn encode(&self, id: &str) -> String {
        format!("v1.{id}")
    }

    fn reversible_store_keys(&self) -> bool {
        true
    }
}
