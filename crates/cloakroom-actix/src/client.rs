//! What the middleware records of the client: IP and user agent, per the configuration.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{HeaderValue, USER_AGENT};
use cloakroom::{ClientIpSource, RequestClient, SessionConfig};

/// The client of `request`. [`ClientIpSource::ConnectInfo`] is the connection's peer
/// address in actix-web.
pub(crate) fn request_client(request: &ServiceRequest, config: &SessionConfig) -> RequestClient {
    let ip = match &config.client_ip {
        ClientIpSource::ConnectInfo => request.peer_addr().map(|peer| peer.ip()),
        ClientIpSource::TrustedHeader(name) => forwarded_ip(
            request
                .headers()
                .get_all(name.as_str())
                .map(HeaderValue::as_bytes),
            config.trusted_proxy_hops,
        ),
        ClientIpSource::None => None,
    };
    RequestClient {
        ip,
        user_agent: request
            .headers()
            .get(USER_AGENT)
            .and_then(|agent| http::HeaderValue::from_bytes(agent.as_bytes()).ok()),
    }
}

/// The client IP in an `X-Forwarded-For`-style list: the entry `hops` from the right, the
/// one the outermost trusted proxy added (the rule [`ClientIpSource::TrustedHeader`]
/// documents, the same as the tower layer's).
///
/// Every proxy appends the address it saw, so only entries from the right are the proxies'
/// own; anything left of them came from the client. The header's lines are one list, in
/// order; empty elements are ignored. No IP when that entry is missing or is not an IP
/// (with an optional port, IPv6 optionally in brackets): never another entry, which the
/// client could choose.
fn forwarded_ip<'h>(
    lines: impl DoubleEndedIterator<Item = &'h [u8]>,
    hops: usize,
) -> Option<IpAddr> {
    let entry = lines
        .rev()
        .flat_map(|line| line.rsplit(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|entry| !entry.is_empty())
        .nth(hops.checked_sub(1)?)?;
    let entry = std::str::from_utf8(entry).ok()?;
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|address| address.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip_of(lines: &[&[u8]], hops: usize) -> Option<IpAddr> {
        forwarded_ip(lines.iter().copied(), hops)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_entry_the_trusted_proxy_added_wins_not_the_clients() {
        assert_eq!(ip_of(&[b"6.6.6.6, 203.0.113.7"], 1), ip("203.0.113.7"));
        assert_eq!(
            ip_of(&[b"6.6.6.6, 203.0.113.7, 10.0.0.2"], 2),
            ip("203.0.113.7")
        );
        assert_eq!(ip_of(&[b"6.6.6.6", b"203.0.113.7"], 1), ip("203.0.113.7"));
        assert_eq!(ip_of(&[b"[2001:db8::1]:443"], 1), ip("2001:db8::1"));
        assert_eq!(ip_of(&[b"203.0.113.7:51234, , "], 1), ip("203.0.113.7"));
    }

    #[test]
    fn a_malformed_or_missing_entry_gives_no_ip_never_another_entry() {
        assert_eq!(ip_of(&[b"6.6.6.6, unknown"], 1), None);
        assert_eq!(ip_of(&[b"6.6.6.6, \xff"], 1), None);
        assert_eq!(ip_of(&[b"203.0.113.7"], 2), None);
        assert_eq!(ip_of(&[b"203.0.113.7"], 0), None);
        assert_eq!(ip_of(&[], 1), None);
    }
}
