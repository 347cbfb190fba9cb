//! Challenges: random values the browser must sign, each usable once and only until it
//! expires.
//!
//! A challenge is what makes a proof fresh: a signature over an old challenge, replayed
//! by someone who recorded it, names a challenge that was consumed (or has expired) and
//! is refused. Challenges are compared in constant time and never logged.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// Random bytes in a challenge (256 bits).
pub const CHALLENGE_BYTES: usize = 32;

/// The most pre-sent refresh challenges kept outstanding for one binding.
///
/// Two, because a proof for the previous challenge can arrive after the next one was
/// sent (a refresh racing a response that pre-sent a new challenge); a third pushes out
/// the oldest. A challenge sent with a proof-less refresh's `403` (a retry challenge) is
/// kept beside them, one at most, and never pushes one of them out: anyone holding the
/// session cookie can ask for one.
pub const MAX_OUTSTANDING: usize = 2;

/// One challenge and when it stops being usable.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    value: String,
    #[serde(with = "crate::record::unix_ms")]
    expires_at: OffsetDateTime,
    /// Sent with a proof-less refresh's `403`, not pre-sent with a bound cookie. Absent
    /// (false) in records written before retry challenges were kept apart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    retry: bool,
}

impl std::fmt::Debug for Challenge {
    // The value is a one-time secret until used: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Challenge {
    /// A new challenge, 32 bytes from the OS random generator (base64url), usable until
    /// `now + lifetime`.
    pub fn generate(now: OffsetDateTime, lifetime: Duration) -> Self {
        let mut bytes = [0u8; CHALLENGE_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self {
            value: URL_SAFE_NO_PAD.encode(bytes),
            expires_at: now.saturating_add(lifetime.try_into().unwrap_or(time::Duration::MAX)),
            retry: false,
        }
    }

    /// [`generate`](Self::generate), for the `403` of a refresh that came without a proof.
    pub fn generate_retry(now: OffsetDateTime, lifetime: Duration) -> Self {
        Self {
            retry: true,
            ..Self::generate(now, lifetime)
        }
    }

    /// A challenge with a given value, for tests with pre-signed proofs.
    #[cfg(test)]
    pub(crate) fn fixed(value: &str, expires_at: OffsetDateTime) -> Self {
        Self {
            value: value.to_owned(),
            expires_at,
            retry: false,
        }
    }

    /// The value the browser signs (as the proof's `jti`).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// When the challenge stops being usable.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// Whether `jti` is this challenge (constant time in the contents).
    pub fn matches(&self, jti: &str) -> bool {
        self.value.as_bytes().ct_eq(jti.as_bytes()).into()
    }

    /// Whether the challenge can still be used at `now` (strictly before its expiry).
    pub fn is_live_at(&self, now: OffsetDateTime) -> bool {
        now < self.expires_at
    }

    /// Checks a proof's `jti` against this single challenge (a registration's).
    pub fn check(&self, jti: &str, now: OffsetDateTime) -> Result<(), ChallengeError> {
        if !self.matches(jti) {
            Err(ChallengeError::Unknown)
        } else if !self.is_live_at(now) {
            Err(ChallengeError::Expired)
        } else {
            Ok(())
        }
    }
}

/// Why a proof's challenge was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// Not an outstanding challenge: never issued, or already used (a replay).
    #[error("the proof names no outstanding challenge (unknown or already used)")]
    Unknown,
    /// The challenge was issued but its lifetime has passed.
    #[error("the proof's challenge has expired")]
    Expired,
}

/// The outstanding refresh challenges of one binding, at most [`MAX_OUTSTANDING`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Challenges(Vec<Challenge>);

impl Challenges {
    /// No outstanding challenge.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `challenge`: a retry challenge in place of any earlier one; a pre-sent one
    /// dropping the oldest pre-sent when [`MAX_OUTSTANDING`] would be exceeded.
    pub fn push(&mut self, challenge: Challenge) {
        if challenge.retry {
            self.0.retain(|held| !held.retry);
        } else {
            // A record read from a store may hold more than allowed (edited by hand, or
            // an older version): trim it rather than trust it.
            while self.0.iter().filter(|held| !held.retry).count() >= MAX_OUTSTANDING {
                let oldest = self.0.iter().position(|held| !held.retry);
                self.0.remove(oldest.expect("counted above"));
            }
        }
        self.0.push(challenge);
    }

    /// The retry challenge still usable at `now`, if one is outstanding.
    pub fn live_retry(&self, now: OffsetDateTime) -> Option<&Challenge> {
        self.0
            .iter()
            .find(|held| held.retry && held.is_live_at(now))
    }

    /// How many challenges are outstanding.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is outstanding.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Consumes the challenge `jti` names: it is removed whether it was live or expired,
    /// so it can never be used again. Expired challenges are dropped along the way.
    ///
    /// Persist the result in the same compare-and-set update that records the refresh:
    /// two requests racing with one proof then cannot both succeed.
    pub fn consume(&mut self, jti: &str, now: OffsetDateTime) -> Result<(), ChallengeError> {
        // Look at every entry, so the time taken does not say which one matched.
        let mut found = None;
        for (index, challenge) in self.0.iter().enumerate() {
            if challenge.matches(jti) {
                found = Some(index);
            }
        }
        let result = match found {
            None => Err(ChallengeError::Unknown),
            Some(index) => {
                let challenge = self.0.remove(index);
                if challenge.is_live_at(now) {
                    Ok(())
                } else {
                    Err(ChallengeError::Expired)
                }
            }
        };
        self.0.retain(|challenge| challenge.is_live_at(now));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn challenges_are_random_and_url_safe() {
        let now = crate::record::now();
        let (a, b) = (
            Challenge::generate(now, MINUTE),
            Challenge::generate(now, MINUTE),
        );
        assert_ne!(a.value(), b.value());
        assert_eq!(a.value().len(), 43);
        assert!(a
            .value()
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'));
        assert!(
            !format!("{a:?}").contains(a.value()),
            "Debug leaks the value"
        );
    }

    /// A challenge issued at `now`, its value, and the set holding it.
    fn one_outstanding(now: OffsetDateTime) -> (Challenge, String, Challenges) {
        let challenge = Challenge::generate(now, MINUTE);
        let mut outstanding = Challenges::new();
        outstanding.push(challenge.clone());
        (challenge.clone(), challenge.value().to_owned(), outstanding)
    }

    #[test]
    fn a_challenge_is_used_once() {
        let now = crate::record::now();
        let (_, jti, mut outstanding) = one_outstanding(now);
        assert_eq!(outstanding.consume(&jti, now), Ok(()));
        assert_eq!(outstanding.consume(&jti, now), Err(ChallengeError::Unknown));
    }

    #[test]
    fn an_expired_challenge_is_refused_and_gone() {
        let now = crate::record::now();
        let (challenge, jti, mut outstanding) = one_outstanding(now);
        let later = now + MINUTE;
        assert_eq!(challenge.check(&jti, later), Err(ChallengeError::Expired));
        assert_eq!(
            outstanding.consume(&jti, later),
            Err(ChallengeError::Expired)
        );
        assert!(outstanding.is_empty());
    }

    #[test]
    fn the_previous_challenge_still_works_but_not_the_one_before() {
        let now = crate::record::now();
        let mut outstanding = Challenges::new();
        let all: Vec<Challenge> = (0..3).map(|_| Challenge::generate(now, MINUTE)).collect();
        for challenge in &all {
            outstanding.push(challenge.clone());
        }
        assert_eq!(outstanding.len(), MAX_OUTSTANDING);
        assert_eq!(
            outstanding.consume(all[0].value(), now),
            Err(ChallengeError::Unknown)
        );
        assert_eq!(outstanding.consume(all[1].value(), now), Ok(()));
        assert_eq!(outstanding.consume(all[2].value(), now), Ok(()));
    }

    #[test]
    fn a_wrong_value_is_unknown() {
        let now = crate::record::now();
        let challenge = Challenge::generate(now, MINUTE);
        assert_eq!(challenge.check("", now), Err(ChallengeError::Unknown));
        let mut almost = challenge.value().to_owned();
        almost.pop();
        assert_eq!(challenge.check(&almost, now), Err(ChallengeError::Unknown));
        assert_eq!(challenge.check(challenge.value(), now), Ok(()));
    }
}
