//! Shared pieces of the fuzz targets: one runtime per process, and a forger of sealed
//! cookies so the fuzzer reaches the code behind the MAC (inflate, JSON, record checks),
//! which random bytes never get past.

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use cloakroom::keys::{Key, KeyRing};
use cloakroom::sealed::{CookieMode, CookieSessions};
use cloakroom::{RequestClient, SessionConfig, SessionManager};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A current-thread runtime, built once per fuzzing process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// The fixed secrets of the fuzzing key ring: the current key and one fallback (random
/// bytes, written out: the key ring refuses low-entropy keys).
const SECRETS: [[u8; 32]; 2] = [
    [
        0x3b, 0x9e, 0x07, 0xd4, 0x61, 0xa8, 0x2f, 0xc5, 0x90, 0x1c, 0xe7, 0x48, 0xb3, 0x76, 0x0a,
        0xfd, 0x25, 0x8c, 0x53, 0xee, 0x19, 0x6f, 0xa2, 0x34, 0xcb, 0x87, 0x40, 0xf1, 0x5d, 0x0e,
        0x99, 0x62,
    ],
    [
        0xc2, 0x17, 0x8a, 0x5f, 0xe3, 0x04, 0x6d, 0xb9, 0x31, 0xf8, 0x4e, 0x95, 0x2a, 0xd7, 0x70,
        0x1b, 0xac, 0x66, 0x03, 0xdf, 0x58, 0x8e, 0x27, 0xb4, 0x49, 0xf2, 0x9d, 0x12, 0x7c, 0xe5,
        0x36, 0x81,
    ],
];

fn ring() -> KeyRing {
    let key = |secret: &[u8; 32]| Key::from_bytes(secret).expect("a 32-byte key");
    KeyRing::new(key(&SECRETS[0]), [key(&SECRETS[1])])
}

/// A session manager for client-side sessions in `mode`, built once per mode.
pub fn cookie_manager(mode: CookieMode) -> &'static Arc<SessionManager> {
    static ENCRYPTED: OnceLock<Arc<SessionManager>> = OnceLock::new();
    static SIGNED: OnceLock<Arc<SessionManager>> = OnceLock::new();
    let (cell, sessions): (_, fn(KeyRing) -> CookieSessions) = match mode {
        CookieMode::Encrypted => (&ENCRYPTED, CookieSessions::encrypted),
        CookieMode::Signed => (&SIGNED, CookieSessions::signed),
    };
    cell.get_or_init(|| {
        Arc::new(
            SessionManager::cookie(sessions(ring()), SessionConfig::default())
                .expect("the default configuration is valid"),
        )
    })
}

type HmacSha256 = Hmac<Sha256>;

/// The key derivation of `cloakroom::keys` (HMAC-SHA256 of a purpose under the secret),
/// repeated here because the derived subkeys are not public.
fn derive(secret: &[u8], purpose: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("any HMAC key length");
    mac.update(purpose);
    mac.finalize().into_bytes().into()
}

/// How the forger seals a fuzzer-chosen payload.
#[derive(Clone, Copy, Debug)]
pub struct Forge {
    /// Seal under the fallback key instead of the current one.
    pub fallback: bool,
    /// Deflate the payload and set the compressed flag.
    pub compress: bool,
    /// Extra flag bits ORed into the header (unknown flags must be refused).
    pub extra_flags: u8,
    /// Seal in format 2 (the binary payload) instead of format 1 (JSON), so the binary
    /// decoder behind the MAC is fuzzed too.
    pub binary: bool,
}

/// A cookie value sealed exactly as `cloakroom::sealed` does (format 1, or 2 if
/// `forge.binary`), around `payload`, for the cookie called `name`.
pub fn forge(mode: CookieMode, forge: Forge, name: &str, payload: &[u8]) -> String {
    let secret = &SECRETS[usize::from(forge.fallback)];
    let id = derive(secret, b"cloakroom key id v1");
    let payload = if forge.compress {
        miniz_oxide::deflate::compress_to_vec(payload, 6)
    } else {
        payload.to_vec()
    };
    let encrypted = u8::from(mode == CookieMode::Encrypted);
    let compressed = if forge.compress { 0b10 } else { 0 };
    let version = if forge.binary { 2 } else { 1 };
    let mut out = vec![version, encrypted | compressed | forge.extra_flags];
    out.extend_from_slice(&id[..4]);
    let mut aad = out.clone();
    aad.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_be_bytes());
    aad.extend_from_slice(name.as_bytes());
    match mode {
        CookieMode::Encrypted => {
            let key = derive(secret, b"cloakroom encryption v1");
            let nonce = [0x5a; 24];
            let ciphertext = XChaCha20Poly1305::new((&key).into())
                .encrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &payload,
                        aad: &aad,
                    },
                )
                .expect("encryption cannot fail");
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&ciphertext);
        }
        CookieMode::Signed => {
            let key = derive(secret, b"cloakroom signing v1");
            let mut mac = <HmacSha256 as Mac>::new_from_slice(&key).expect("any HMAC key length");
            mac.update(&aad);
            mac.update(&payload);
            out.extend_from_slice(&payload);
            out.extend_from_slice(&mac.finalize().into_bytes());
        }
    }
    URL_SAFE_NO_PAD.encode(out)
}

/// What a sealed cookie carries, parsed the way the library parses it, as the oracle.
#[derive(serde::Deserialize)]
struct Carried {
    k: String,
    r: cloakroom::Record,
}

/// The body of both sealed-cookie targets.
///
/// Input: one control byte, then the rest. Control bit 0 clear: the rest is a raw `Cookie`
/// header. Set: the rest is a payload the forger seals validly (bit 1: under the fallback
/// key; bit 2: compressed; bit 3: an unknown flag bit set).
///
/// Checked: opening never panics, and a validly sealed, live record that fits the size
/// limits is accepted with exactly its data.
pub fn sealed_cookie(mode: CookieMode, data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let manager = cookie_manager(mode);
    let name = manager.config().cookie.full_name().into_owned();
    let (header, expected) = if control & 1 == 0 {
        (rest.to_vec(), None)
    } else {
        let how = Forge {
            fallback: control & 2 != 0,
            compress: control & 4 != 0,
            extra_flags: if control & 8 != 0 { 0b100 } else { 0 },
            binary: control & 16 != 0,
        };
        let value = forge(mode, how, &name, rest);
        // The JSON oracle reads format 1 only; a format 2 payload is fuzzed for panics.
        let fits = value.len() <= 4096
            && rest.len() <= 64 * 1024
            && how.extra_flags == 0
            && !how.binary;
        let expected = serde_json::from_slice::<Carried>(rest)
            .ok()
            .filter(|c| fits && cloakroom::StoreKey::from_hex(&c.k).is_some())
            .filter(|c| {
                c.r.is_live_at(cloakroom::record::now() + time::Duration::minutes(1))
            })
            .map(|c| {
                let mut keys: Vec<String> = c.r.data.keys().cloned().collect();
                keys.sort();
                keys
            });
        (format!("{name}={value}").into_bytes(), expected)
    };
    let session = manager.session([header.as_slice()], RequestClient::default());
    runtime().block_on(async {
        let keys = session.keys().await;
        let _ = session.user().await;
        let _ = session.expires_at().await;
        let _ = session.get::<serde_json::Value>("cart").await;
        if let Some(expected) = expected {
            let mut keys = keys.expect("a client-side session always loads");
            keys.sort();
            assert_eq!(
                keys, expected,
                "a validly sealed live record was not opened"
            );
        }
        let _ = session.finish(http::StatusCode::OK).await;
    });
}
