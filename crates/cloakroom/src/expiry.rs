//! Expiry: the idle and absolute timeouts and the throttle on idle-refresh writes.

use std::time::Duration;

use time::OffsetDateTime;

use crate::record::{saturating_add as add, Record, Touch};

/// When sessions die, enforced on the server.
///
/// Defaults: a 24-hour idle timeout, a 14-day absolute timeout, and idle refreshes written
/// at most once a minute (or once per quarter of the idle timeout, if that is shorter).
///
/// ```
/// use std::time::Duration;
/// use cloakroom::ExpiryPolicy;
/// let policy = ExpiryPolicy::default()
///     .with_idle_timeout(Some(Duration::from_secs(30 * 60)))
///     .with_absolute_timeout(Some(Duration::from_secs(8 * 3600)));
/// assert_eq!(policy.touch_interval(), Duration::from_secs(60));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiryPolicy {
    idle_timeout: Option<Duration>,
    absolute_timeout: Option<Duration>,
    touch_interval: Option<Duration>,
    persistent_by_default: bool,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Some(Duration::from_secs(24 * 3600)),
            absolute_timeout: Some(Duration::from_secs(14 * 24 * 3600)),
            touch_interval: None,
            persistent_by_default: false,
        }
    }
}

impl ExpiryPolicy {
    /// Sets the idle timeout: a session unused this long dies. `None` disables it.
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the absolute timeout: a session this old dies, however active. `None` disables it.
    pub fn with_absolute_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// Sets how often a read-only request may write an idle refresh. Smaller is more precise
    /// idle expiry, larger is fewer writes.
    pub fn with_touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = Some(interval);
        self
    }

    /// Whether new sessions get a persistent ("remember me") cookie unless the handler says
    /// otherwise with [`Session::set_persistent`](crate::Session::set_persistent).
    pub fn with_persistent_by_default(mut self, persistent: bool) -> Self {
        self.persistent_by_default = persistent;
        self
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The absolute timeout.
    pub fn absolute_timeout(&self) -> Option<Duration> {
        self.absolute_timeout
    }

    /// Whether new sessions are persistent by default.
    pub fn persistent_by_default(&self) -> bool {
        self.persistent_by_default
    }

    /// The minimum time between two idle refreshes of one session.
    pub fn touch_interval(&self) -> Duration {
        self.touch_interval.unwrap_or_else(|| {
            let quarter = self.idle_timeout.map_or(Duration::MAX, |idle| idle / 4);
            quarter.min(Duration::from_secs(60))
        })
    }

    /// The idle deadline for activity at `now`.
    pub fn idle_deadline(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.idle_timeout.map(|idle| add(now, idle))
    }

    /// A new record created at `now`.
    pub fn new_record(&self, now: OffsetDateTime) -> Record {
        let mut record = Record::new(
            now,
            self.idle_deadline(now),
            self.absolute_timeout.map(|abs| add(now, abs)),
        );
        record.persistent = self.persistent_by_default;
        record
    }

    /// The idle refresh for a record seen at `now`, if one is due (throttled).
    pub fn touch_due(&self, record: &Record, now: OffsetDateTime) -> Option<Touch> {
        // Without an idle timeout nothing is refreshed, except an idle deadline a session
        // kept from a deploy that had one: the refresh clears it, or a user active only
        // through reads would die at it.
        if self.idle_timeout.is_none() && record.idle_deadline.is_none() {
            return None;
        }
        let since = now - record.last_active_at;
        (since >= self.touch_interval()).then(|| Touch {
            last_active_at: now,
            idle_deadline: self.idle_deadline(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::now;

    #[test]
    fn touch_is_throttled() {
        let policy = ExpiryPolicy::default().with_idle_timeout(Some(Duration::from_secs(8)));
        assert_eq!(policy.touch_interval(), Duration::from_secs(2));
        let t = now();
        let record = policy.new_record(t);
        assert!(policy
            .touch_due(&record, t + time::Duration::seconds(1))
            .is_none());
        let touch = policy
            .touch_due(&record, t + time::Duration::seconds(2))
            .unwrap();
        assert_eq!(touch.idle_deadline, Some(t + time::Duration::seconds(10)));
    }

    #[test]
    fn no_idle_timeout_means_no_touch() {
        let policy = ExpiryPolicy::default().with_idle_timeout(None);
        let t = now();
        let record = policy.new_record(t);
        assert_eq!(record.idle_deadline, None);
        assert!(policy
            .touch_due(&record, t + time::Duration::days(1))
            .is_none());
    }

    /// A session written under an idle timeout, read after a deploy that has none: its
    /// refresh clears the idle deadline it kept. Nothing refreshed it, so a user active
    /// only through reads was logged out at that deadline.
    #[test]
    fn an_idle_deadline_kept_from_an_earlier_deploy_is_cleared() {
        let t = now();
        let record = ExpiryPolicy::default().new_record(t);
        assert!(record.idle_deadline.is_some());
        let policy = ExpiryPolicy::default().with_idle_timeout(None);
        assert!(policy.touch_due(&record, t).is_none(), "throttled as ever");
        let touch = policy
            .touch_due(&record, t + time::Duration::minutes(2))
            .expect("a refresh is due");
        assert_eq!(touch.idle_deadline, None);
    }

    #[test]
    fn huge_timeouts_saturate_instead_of_panicking() {
        let policy = ExpiryPolicy::default().with_absolute_timeout(Some(Duration::MAX));
        let record = policy.new_record(now());
        assert!(record.absolute_deadline.is_some());
    }
}
