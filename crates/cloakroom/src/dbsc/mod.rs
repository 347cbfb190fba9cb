//! Device-bound sessions (DBSC, feature `dbsc`): the protocol pieces, with no framework in
//! them.
//!
//! A browser that supports Device Bound Session Credentials keeps a private key it cannot
//! export and proves possession of it every few minutes; the server hands out a
//! short-lived *bound cookie* only against such a proof, so a copied session cookie stops
//! being enough to be the user. The design for cloakroom is in `docs/dbsc.md`.
//!
//! This module holds what the engine needs to speak the protocol, each piece testable on
//! its own:
//! - [`proof`]: parsing and verifying the browser's signed proof (the compact JWS in
//!   `Secure-Session-Response`), ES256 and RS256, and the [`BoundKey`] kept in the record;
//! - [`challenge`]: single-use challenges with an expiry;
//! - [`bound_cookie`]: the bound cookie's value, MAC'd with the app's [`KeyRing`](crate::KeyRing)
//!   and carrying its own expiry;
//! - [`headers`]: the response headers and the session-configuration JSON;
//! - [`binding`]: a session's [`DeviceBinding`](binding::DeviceBinding) as the record keeps
//!   it, the state changes of offer, registration and refresh, the per-request verdict,
//!   and the [`DeviceBindingConfig`](binding::DeviceBindingConfig).
//!
//! ```
//! use std::time::Duration;
//! use cloakroom::dbsc::{bound_cookie, challenge::Challenge, headers, Algorithm};
//! use cloakroom::{generate_key, KeyRing};
//!
//! let now = cloakroom::record::now();
//! // On login: offer a binding.
//! let challenge = Challenge::generate(now, Duration::from_secs(300));
//! let offer = headers::registration(&[Algorithm::Es256, Algorithm::Rs256], "/dbsc/register",
//!                                   challenge.value(), Some("a1")).unwrap();
//! assert!(offer.to_str().unwrap().starts_with("(ES256 RS256);path=\"/dbsc/register\""));
//! // After a verified proof: a bound cookie the server checks itself.
//! let ring = KeyRing::parse(&generate_key()).unwrap();
//! let cookie = bound_cookie::issue(&ring, "binding-1", now + Duration::from_secs(300));
//! assert!(bound_cookie::verify(&ring, cookie.as_bytes(), "binding-1", now).is_ok());
//! assert!(bound_cookie::verify(&ring, cookie.as_bytes(), "binding-2", now).is_err());
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod binding;
pub mod bound_cookie;
pub mod challenge;
pub(crate) mod engine;
pub mod headers;
pub mod proof;
#[cfg(any(test, feature = "testing"))]
pub mod test_signer;

pub use proof::{BoundKey, ProofError};

/// The bound cookie's lifetime unless configured otherwise: 5 minutes.
///
/// Chrome refreshes a bound cookie once less than 120 s of it are left, so with 5 minutes
/// an active tab refreshes about every 3 minutes, and a copied bound cookie works for at
/// most 5 minutes.
pub const DEFAULT_BOUND_COOKIE_LIFETIME: Duration = Duration::from_secs(300);

/// The shortest bound-cookie lifetime accepted: 151 s.
///
/// Chrome (156) refreshes once less than 120 s are left; a lifetime close to that makes it
/// refresh on nearly every request until its refresh quota stops it, and from then on the
/// user is logged out. 150 s and below are refused rather than warned about.
pub const MIN_BOUND_COOKIE_LIFETIME: Duration = Duration::from_secs(151);

/// How long a registration challenge (sent on the login response) stays usable.
pub const REGISTRATION_CHALLENGE_LIFETIME: Duration = Duration::from_secs(300);

/// How long a challenge sent with a `403` on the refresh endpoint stays usable: Chrome
/// answers it at once.
pub const RETRY_CHALLENGE_LIFETIME: Duration = Duration::from_secs(60);

/// Checks a configured bound-cookie lifetime against [`MIN_BOUND_COOKIE_LIFETIME`].
///
/// ```
/// use std::time::Duration;
/// use cloakroom::dbsc::check_bound_cookie_lifetime;
/// assert!(check_bound_cookie_lifetime(Duration::from_secs(300)).is_ok());
/// assert!(check_bound_cookie_lifetime(Duration::from_secs(45)).is_err());
/// ```
pub fn check_bound_cookie_lifetime(lifetime: Duration) -> Result<Duration, LifetimeTooShort> {
    if lifetime < MIN_BOUND_COOKIE_LIFETIME {
        Err(LifetimeTooShort(lifetime))
    } else {
        Ok(lifetime)
    }
}

/// A bound-cookie lifetime below [`MIN_BOUND_COOKIE_LIFETIME`] was configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a bound cookie lifetime of {}s is too short: Chrome refreshes once less than 120s are left, so use at least {}s (default {}s)", .0.as_secs(), MIN_BOUND_COOKIE_LIFETIME.as_secs(), DEFAULT_BOUND_COOKIE_LIFETIME.as_secs())]
pub struct LifetimeTooShort(pub Duration);

/// A signature algorithm a browser may bind its key with.
///
/// Serialised under its JOSE name (`"ES256"`, `"RS256"`). There is deliberately no `none`
/// and no symmetric algorithm: neither proves anything about a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256; Chrome's choice with software keys.
    #[serde(rename = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256; offered because some TPMs only do RSA.
    #[serde(rename = "RS256")]
    Rs256,
}

impl Algorithm {
    /// Both algorithms, in the order offered by default (Chrome picks the first it can do).
    pub const ALL: [Algorithm; 2] = [Algorithm::Es256, Algorithm::Rs256];

    /// The JOSE name: `ES256` or `RS256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// The algorithm with this exact JOSE name, if it is one cloakroom accepts.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
