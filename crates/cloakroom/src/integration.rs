//! For authors of framework integrations (the tower layer, actix-web): the two calls that
//! wrap a request, and what they exchange. Handlers never need this module.
//!
//! An integration does three things per request:
//! 1. [`SessionManager::session`] with the request's `Cookie` header values and a
//!    [`RequestClient`] (IP and user agent): a lazy [`Session`], no store I/O yet.
//! 2. Hands that `Session` to the handler.
//! 3. After the handler, [`Session::finish`] with the response status: the commit. The
//!    [`Finish`] it returns says which `Set-Cookie` to add, whether to add
//!    `Vary: Cookie`, and which error, if any, the failure policy must turn into a
//!    response (`503` with `Retry-After`, `413`). A request that never touched its
//!    session can skip that step: `Session::finish_untouched` answers `true`, without
//!    waiting, when there is nothing to commit and no header to send.
//!
//! ```
//! use std::sync::Arc;
//! use cloakroom::integration::RequestClient;
//! use cloakroom::{MemoryStore, SessionConfig, SessionManager};
//! use http::StatusCode;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let manager = Arc::new(SessionManager::new(MemoryStore::new(), SessionConfig::default()).unwrap());
//!
//! // 1. A request without a cookie.
//! let session = manager.session(std::iter::empty(), RequestClient::default());
//! // 2. The handler writes.
//! session.insert("theme", "dark").await.unwrap();
//! // 3. The commit: the new session's cookie goes out.
//! let finish = session.finish(StatusCode::OK).await;
//! assert!(finish.error.is_none());
//! let cookie = finish.set_cookie.expect("a new session sets its cookie");
//! assert!(cookie.to_str().unwrap().starts_with("id="));
//! # }
//! ```
//!
//! [`SessionManager::session`]: crate::SessionManager::session
//! [`Session`]: crate::Session
//! [`Session::finish`]: crate::Session::finish

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

#[doc(inline)]
pub use crate::session::{Finish, RequestClient};

/// The client IP in an `X-Forwarded-For`-style list: the entry `hops` from the right, the
/// one the outermost trusted proxy added.
///
/// Every proxy appends the address it received the request from, so only entries from the
/// right are the proxies' own; anything to their left came from the client. The header's
/// lines are one list, in order, and empty elements are ignored. Bytes that are not text,
/// elsewhere in the list, do not matter. No IP when that entry is missing (fewer entries
/// than trusted proxies) or is not an IP (with an optional port, IPv6 optionally in
/// brackets): never another entry, which the client could choose.
///
/// This is the rule [`ClientIpSource::TrustedHeader`](crate::ClientIpSource::TrustedHeader)
/// documents, shared by every integration so none can drift from it.
///
/// ```
/// use cloakroom::integration::forwarded_ip;
/// // The client wrote 6.6.6.6; the one trusted proxy appended the address it saw.
/// let lines: [&[u8]; 1] = [b"6.6.6.6, 203.0.113.7"];
/// assert_eq!(forwarded_ip(lines.into_iter(), 1), "203.0.113.7".parse().ok());
/// ```
pub fn forwarded_ip<'h>(
    lines: impl DoubleEndedIterator<Item = &'h [u8]>,
    hops: usize,
) -> Option<IpAddr> {
    let entry = lines
        .rev()
        .flat_map(|line| line.rsplit(|&byte| byte == b','))
        .map(|entry| entry.trim_ascii())
        .filter(|entry| !entry.is_empty())
        .nth(hops.checked_sub(1)?)?;
    let entry = std::str::from_utf8(entry).ok()?;
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })
}
