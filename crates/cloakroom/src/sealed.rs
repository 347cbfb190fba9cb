//! Client-side sessions: the whole record sealed into the cookie, signed (HMAC-SHA256) or
//! encrypted and authenticated (XChaCha20-Poly1305, the default).
//!
//! Layout of a cookie value, base64url without padding:
//!
//! ```text
//! version (1) | flags (1: encrypted, compressed) | key id (4) | body
//! encrypted body: nonce (24) | ciphertext with its 16-byte tag
//! signed body:    payload | HMAC-SHA256 tag (32)
//! ```
//!
//! The header and the cookie name are authenticated, so a cookie cannot be moved to another
//! cookie name or have its flags changed. Anything that does not verify is an anonymous
//! request.
//!
//! The nonce is derived, not drawn: keyed BLAKE3, under a subkey of its own, of the
//! associated data (header and cookie name, length first) and the plaintext, 24 bytes of
//! its output. Distinct cookies get distinct nonces except with a PRF collision's
//! negligible chance. Sealing is deterministic: the same record sealed again (same session
//! key, version and millisecond of activity, as two responses of one request can be) gives
//! the same value, so an observer can tell those two apart from a fresh write, and nothing
//! more. Drawing 24 bytes from the operating system cost a system call on every cookie
//! write, about a microsecond on a virtual machine; a user-space generator instead would
//! not be safe across `fork()`, where parent and child would seal with the same nonces.
//! Opening does not care how a nonce was made, so cookies sealed with random nonces by
//! earlier versions still open, and earlier versions open these.
//!
//! The payload is the session key and record in a compact binary layout (format 2, see
//! `payload.rs`). Format 1 carried them as JSON; cookies sealed in it still open, and are
//! re-issued in format 2 on the response, as a cookie under a fallback key is re-issued
//! under the current one.
//!
//! # No compression by default
//!
//! Compressing before sealing makes the cookie's length depend on its contents. When
//! data an attacker chooses (a search term, a name) shares a cookie with a secret (a CSRF
//! token, an internal flag), a network attacker who can make the browser send requests and
//! sees only encrypted lengths can guess the secret piece by piece: a right guess
//! compresses better (CRIME, BREACH). So neither mode compresses unless asked
//! ([`CookieSessions::with_compression`]): encryption hides the contents, and compression
//! must not give them back through the length. That holds for the signed mode too: the
//! browser can read a signed cookie, but a network attacker cannot, since TLS hides it
//! and only its length shows. The cost is size: without compression less data fits in the
//! 4096-byte cookie. Cookies sealed compressed (by an earlier version, or with the opt-in)
//! still open: the flag is read whatever the setting.
//!
//! What a server-less session cannot do: revoke one cookie (a copy stays valid until its
//! deadlines pass) or list a user's sessions. Epochs
//! ([`EpochSource`](crate::EpochSource)) replace both: bump a user's epoch and every
//! cookie issued before is logged out on its next request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use self::scratch::Scratch;
use crate::id::StoreKey;
use crate::keys::KeyRing;
use crate::record::Record;
use crate::telemetry::BadCookie;

/// The format new cookies are sealed in: the binary payload of `payload.rs`.
const FORMAT_VERSION: u8 = 2;
/// The format before it: `{"k": hex key, "r": record}` as JSON. Still opened, never sealed.
const FORMAT_JSON: u8 = 1;
const ENCRYPTED: u8 = 0b01;
const COMPRESSED: u8 = 0b10;
const HEADER: usize = 6;
const NONCE: usize = xchacha::NONCE;
const AEAD_TAG: usize = xchacha::TAG;
const MAC_TAG: usize = 32;
/// Payloads larger than this are tried compressed. Below it deflate saves a few hundred
/// bytes at most, at the cost of its 300 KB working state on every write.
const COMPRESS_ABOVE: usize = 1024;
/// No cookie value longer than this is even decoded.
const MAX_VALUE_CHARS: usize = 4096;
/// Decoded cookie values up to this many bytes are opened in a buffer on the stack.
const INLINE_DECODED: usize = 768;
/// Sealed cookies up to this many bytes (a value of 1,024 characters) are sealed and
/// encoded on the stack.
const INLINE_SEALED: usize = 768;
/// Room for the base64 text of [`INLINE_SEALED`] bytes.
const INLINE_TEXT: usize = INLINE_SEALED / 3 * 4;
/// A deflated payload may not inflate past this (no decompression bombs).
const MAX_PAYLOAD: usize = 64 * 1024;

/// How client-side sessions protect the cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CookieMode {
    /// Encrypted and authenticated (XChaCha20-Poly1305): the client can neither read nor
    /// change the session. The default.
    #[default]
    Encrypted,
    /// Signed (HMAC-SHA256): the client can read the session (base64url, not encrypted) but
    /// not change it.
    Signed,
}

/// Client-side sessions: the record lives in the cookie, sealed with a [`KeyRing`].
///
/// ```
/// use cloakroom::keys::{generate_key, KeyRing};
/// use cloakroom::sealed::CookieSessions;
/// let sessions = CookieSessions::encrypted(KeyRing::parse(&generate_key()).unwrap());
/// ```
#[derive(Clone, Debug)]
pub struct CookieSessions {
    ring: KeyRing,
    mode: CookieMode,
    compress: bool,
}

/// What a format 1 cookie carries: a random key naming the session (for its handle), in
/// hex, and the record.
#[derive(Deserialize)]
struct SealedJson {
    k: String,
    r: Record,
}

/// A decoded cookie: the session's key and record, and whether it was sealed under a
/// fallback key (so it must be re-issued under the current one).
#[derive(Debug)]
pub struct OpenedCookie {
    /// A key naming the session: only its [`handle`](StoreKey::handle) is ever shown.
    pub key: StoreKey,
    /// The session.
    pub record: Record,
    /// Whether it must be re-issued: a fallback key opened it, or it is in an earlier format.
    /// The engine then re-issues it under the current key, in the current format.
    pub under_fallback: bool,
}

pub(crate) type Opened = OpenedCookie;

/// The format of a client-side session's cookie. [`CookieSessions`] is cloakroom's own;
/// another implementation lets cloakroom read and write a cookie another application
/// issues, with the same [`Session`](crate::Session) API and layer
/// ([`SessionManager::cookie_codec`](crate::SessionManager::cookie_codec)).
///
/// The engine checks what it gets back: a record past its deadlines is an anonymous
/// request, and so is anything `open` refuses. `open` must never panic, whatever the value.
pub trait CookieCodec: Send + Sync + 'static {
    /// Seals the session into the value of the cookie called `name`, under the current key.
    fn seal(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
    ) -> Result<String, serde_json::Error>;

    /// [`seal`](Self::seal), handing the value to `write` instead of returning it: the
    /// engine copies it straight into the `Set-Cookie` header it builds, so a format that
    /// can produce the value without a `String` of its own saves that allocation on every
    /// response that sets the cookie. The default calls `seal`.
    fn seal_with(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
        write: &mut dyn FnMut(&str),
    ) -> Result<(), serde_json::Error> {
        write(&self.seal(name, key, record)?);
        Ok(())
    }

    /// Opens a cookie value; `None` for anything that does not verify.
    fn open(&self, name: &str, value: &str) -> Option<OpenedCookie>;

    /// [`open`](Self::open), saying why a value does not open (counted in
    /// [`names::BAD_COOKIES`](crate::telemetry::names::BAD_COOKIES)). The default calls
    /// every refusal [`BadCookie::Malformed`]; a format that can tell a forged value from
    /// junk says [`BadCookie::Tampered`] for it.
    fn open_checked(&self, name: &str, value: &str) -> Result<OpenedCookie, BadCookie> {
        self.open(name, value).ok_or(BadCookie::Malformed)
    }

    /// The length [`seal`](Self::seal) would produce, or a bound no shorter than it when that
    /// bound is within `budget` (writes check their cookie's size on every call). The
    /// default seals and measures.
    fn sealed_len(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
        budget: usize,
    ) -> Result<usize, serde_json::Error> {
        let _ = budget;
        Ok(self.seal(name, key, record)?.len())
    }
}

impl CookieCodec for CookieSessions {
    fn seal(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
    ) -> Result<String, serde_json::Error> {
        CookieSessions::seal(self, name, key, record)
    }

    fn seal_with(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
        write: &mut dyn FnMut(&str),
    ) -> Result<(), serde_json::Error> {
        CookieSessions::seal_with(self, name, key, record, |value| write(value))
    }

    fn open(&self, name: &str, value: &str) -> Option<OpenedCookie> {
        CookieSessions::open(self, name, value)
    }

    fn open_checked(&self, name: &str, value: &str) -> Result<OpenedCookie, BadCookie> {
        CookieSessions::open_checked(self, name, value)
    }

    fn sealed_len(
        &self,
        _name: &str,
        key: &StoreKey,
        record: &Record,
        budget: usize,
    ) -> Result<usize, serde_json::Error> {
        CookieSessions::sealed_len(self, key, record, budget)
    }
}

type HmacSha256 = Hmac<Sha256>;

impl CookieSessions {
    /// Encrypted client-side sessions (the recommended mode).
    pub fn encrypted(ring: KeyRing) -> Self {
        Self {
            ring,
            mode: CookieMode::Encrypted,
            compress: false,
        }
    }

    /// Signed client-side sessions: readable by the client, not changeable.
    pub fn signed(ring: KeyRing) -> Self {
        Self {
            ring,
            mode: CookieMode::Signed,
            compress: false,
        }
    }

    /// Turns compression of larger payloads (over 1 KiB) on or off. Default **off**, in both
    /// modes: compressed, the cookie's length reveals how well its contents compress, which
    /// leaks a secret to an attacker who can put chosen text next to it and watch the
    /// length (see [the module docs](self#no-compression-by-default)). Turn it on only when
    /// no session holds both a secret and data a client can influence. Compressed cookies
    /// open whatever this setting.
    pub fn with_compression(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    /// The mode.
    pub fn mode(&self) -> CookieMode {
        self.mode
    }

    /// The key ring.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Deflates the payload in `out[start..]` if compression is on and it pays; the flag
    /// to set if it did.
    fn compress_in_place(&self, out: &mut Scratch<INLINE_SEALED>, start: usize) -> u8 {
        let payload = &out[start..];
        if self.compress && payload.len() > COMPRESS_ABOVE {
            let deflated = miniz_oxide::deflate::compress_to_vec(payload, 6);
            if deflated.len() < payload.len() {
                out.truncate(start);
                out.extend_from_slice(&deflated);
                return COMPRESSED;
            }
        }
        0
    }

    /// The length of the cookie value for a payload of `payload` bytes.
    fn value_len(&self, payload: usize) -> usize {
        let body = match self.mode {
            CookieMode::Encrypted => NONCE + payload + AEAD_TAG,
            CookieMode::Signed => payload + MAC_TAG,
        };
        ((HEADER + body) * 4).div_ceil(3)
    }

    /// The length of the cookie value `seal` would produce, without sealing it; when the
    /// uncompressed value is within `budget` that bound is returned without compressing
    /// (a write checks its size on every call, and deflate is the dear part of sealing).
    /// A payload over [`MAX_PAYLOAD`] is measured uncompressed whatever it deflates to:
    /// `open` would refuse to inflate it, so it must not fit.
    pub(crate) fn sealed_len(
        &self,
        key: &StoreKey,
        record: &Record,
        budget: usize,
    ) -> Result<usize, serde_json::Error> {
        let encoded = payload::encoded_len(record)?;
        let plain = self.value_len(encoded);
        if plain <= budget || !self.compress || encoded > MAX_PAYLOAD {
            return Ok(plain);
        }
        let mut out = Scratch::new();
        payload::encode(key, record, &mut out)?;
        self.compress_in_place(&mut out, 0);
        Ok(self.value_len(out.len()))
    }

    /// Seals the session under the current key for the cookie called `name`.
    pub(crate) fn seal(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
    ) -> Result<String, serde_json::Error> {
        let mut sealed = Scratch::new();
        self.seal_bytes(name, key, record, &mut sealed)?;
        Ok(URL_SAFE_NO_PAD.encode(&*sealed))
    }

    /// [`seal`](Self::seal), handing the value to `write`: sealed and encoded on the stack
    /// (up to [`INLINE_SEALED`] bytes), so that the only allocation is the caller's copy.
    pub(crate) fn seal_with<T>(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
        write: impl FnOnce(&str) -> T,
    ) -> Result<T, serde_json::Error> {
        let mut sealed = Scratch::new();
        self.seal_bytes(name, key, record, &mut sealed)?;
        let mut text = Scratch::<INLINE_TEXT>::new();
        let room = text.extend_zeroed((sealed.len() * 4).div_ceil(3));
        let written = URL_SAFE_NO_PAD
            .encode_slice(&*sealed, room)
            .expect("the buffer is sized for the encoding");
        text.truncate(written);
        let value = std::str::from_utf8(&text).expect("base64 is ASCII");
        Ok(write(value))
    }

    /// Writes the sealed value's bytes, before base64, to `out` (empty).
    fn seal_bytes(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
        out: &mut Scratch<INLINE_SEALED>,
    ) -> Result<(), serde_json::Error> {
        let current = self.ring.current();
        let encrypted = self.mode == CookieMode::Encrypted;
        // One buffer from header to tag: the payload is written in place, encrypted in
        // place, and the tag appended, with no copy between the steps.
        out.extend_from_slice(&[FORMAT_VERSION, 0]);
        out.extend_from_slice(&current.id());
        if encrypted {
            out.extend_zeroed(NONCE);
        }
        let start = out.len();
        payload::encode(key, record, out)?;
        out[1] = self.compress_in_place(out, start) | if encrypted { ENCRYPTED } else { 0 };
        let (header, body) = out.split_at_mut(HEADER);
        let aad = associated_data(header, name);
        if encrypted {
            let (nonce, payload) = body.split_at_mut(NONCE);
            let derived: [u8; NONCE] = current.nonce_for(&aad, payload);
            nonce.copy_from_slice(&derived);
            let tag = xchacha::seal(current.encryption_key(), &derived, &aad, payload);
            out.extend_from_slice(&tag);
        } else {
            let tag = mac(current.signing_key(), &aad, body);
            out.extend_from_slice(&tag);
        }
        Ok(())
    }

    /// Opens a cookie value; `None` for anything that does not verify under a key of the
    /// ring in this mode. Never panics, whatever the input.
    pub(crate) fn open(&self, name: &str, value: &str) -> Option<Opened> {
        self.open_checked(name, value).ok()
    }

    /// [`open`](Self::open), saying why a value does not open: it is not a sealed session
    /// of this format and mode (`Malformed`), or it does not verify under any key of the
    /// ring (`Tampered`, which includes a key since removed from the ring).
    pub(crate) fn open_checked(&self, name: &str, value: &str) -> Result<Opened, BadCookie> {
        use BadCookie::{Malformed, Tampered};
        if value.len() > MAX_VALUE_CHARS {
            return Err(Malformed);
        }
        // Decoded on the stack when it fits, as a session cookie's value usually does: one
        // allocation less on every request that opens one.
        let mut inline = [0; INLINE_DECODED];
        let mut spilled;
        let buffer: &mut [u8] = if value.len() <= INLINE_DECODED / 3 * 4 {
            &mut inline
        } else {
            spilled = vec![0; value.len().div_ceil(4) * 3];
            &mut spilled
        };
        let decoded = URL_SAFE_NO_PAD
            .decode_slice(value, buffer)
            .map_err(|_| Malformed)?;
        let bytes = &mut buffer[..decoded];
        if bytes.len() < HEADER {
            return Err(Malformed);
        }
        let version = bytes[0];
        if version != FORMAT_VERSION && version != FORMAT_JSON {
            return Err(Malformed);
        }
        let flags = bytes[1];
        let wants_encrypted = self.mode == CookieMode::Encrypted;
        if (flags & ENCRYPTED != 0) != wants_encrypted || flags & !(ENCRYPTED | COMPRESSED) != 0 {
            return Err(Malformed);
        }
        let (index, key) = self
            .ring
            .find([bytes[2], bytes[3], bytes[4], bytes[5]])
            .ok_or(Tampered)?;
        let (header, body) = bytes.split_at_mut(HEADER);
        let aad = associated_data(header, name);
        // Verified in place: the plaintext overwrites the ciphertext in the decoded buffer.
        let payload: &[u8] = if wants_encrypted {
            if body.len() < NONCE + AEAD_TAG {
                return Err(Malformed);
            }
            let (nonce, sealed) = body.split_at_mut(NONCE);
            let (ciphertext, tag) = sealed.split_at_mut(sealed.len() - AEAD_TAG);
            let nonce: &[u8; NONCE] = (&*nonce).try_into().map_err(|_| Malformed)?;
            let tag: &[u8; AEAD_TAG] = (&*tag).try_into().map_err(|_| Malformed)?;
            xchacha::open(key.encryption_key(), nonce, &aad, ciphertext, tag)
                .map_err(|_| Tampered)?;
            ciphertext
        } else {
            let split = body.len().checked_sub(MAC_TAG).ok_or(Malformed)?;
            let (payload, tag) = body.split_at(split);
            let mut verifier =
                <HmacSha256 as Mac>::new_from_slice(key.signing_key()).map_err(|_| Tampered)?;
            verifier.update(&aad);
            verifier.update(payload);
            verifier.verify_slice(tag).map_err(|_| Tampered)?;
            payload
        };
        let inflated;
        let payload = if flags & COMPRESSED != 0 {
            inflated = miniz_oxide::inflate::decompress_to_vec_with_limit(payload, MAX_PAYLOAD)
                .map_err(|_| Malformed)?;
            &inflated[..]
        } else {
            payload
        };
        let (session_key, record) = if version == FORMAT_JSON {
            let sealed: SealedJson = serde_json::from_slice(payload).map_err(|_| Malformed)?;
            (StoreKey::from_hex(&sealed.k).ok_or(Malformed)?, sealed.r)
        } else {
            payload::decode(payload).ok_or(Malformed)?
        };
        Ok(Opened {
            key: session_key,
            record,
            // A format 1 cookie is re-issued in format 2, as one under a fallback key is
            // re-issued under the current key: once, on its next response.
            under_fallback: index > 0 || version == FORMAT_JSON,
        })
    }
}

/// Entry points for fuzz targets (`cargo fuzz`), which build outside the crate. Not part
/// of the API: they may change without notice.
#[doc(hidden)]
impl CookieSessions {
    /// [`open`](Self::open): the session key, the record and whether a fallback key
    /// opened it, or `None`. Must never panic, whatever `value` is.
    pub fn fuzz_open(&self, name: &str, value: &str) -> Option<(StoreKey, Record, bool)> {
        self.open(name, value)
            .map(|opened| (opened.key, opened.record, opened.under_fallback))
    }

    /// [`seal`](Self::seal), so a target can check that what opens seals and opens again.
    pub fn fuzz_seal(
        &self,
        name: &str,
        key: &StoreKey,
        record: &Record,
    ) -> Result<String, serde_json::Error> {
        self.seal(name, key, record)
    }
}

/// Cookie names up to this length have their associated data built on the stack.
const INLINE_NAME: usize = 64;

/// The authenticated data: the header, then the cookie name with its length. Built on every
/// open and seal, so it stays off the heap for any name up to [`INLINE_NAME`] bytes, which
/// is every name in practice (`__Host-` and a word).
enum AssociatedData {
    Inline([u8; HEADER + 2 + INLINE_NAME], usize),
    Heap(Vec<u8>),
}

impl std::ops::Deref for AssociatedData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Inline(bytes, len) => &bytes[..*len],
            Self::Heap(bytes) => bytes,
        }
    }
}

fn associated_data(header: &[u8], name: &str) -> AssociatedData {
    let length = u16::try_from(name.len()).unwrap_or(u16::MAX).to_be_bytes();
    let len = header.len() + 2 + name.len();
    if header.len() == HEADER && name.len() <= INLINE_NAME {
        let mut bytes = [0; HEADER + 2 + INLINE_NAME];
        bytes[..HEADER].copy_from_slice(header);
        bytes[HEADER..HEADER + 2].copy_from_slice(&length);
        bytes[HEADER + 2..len].copy_from_slice(name.as_bytes());
        return AssociatedData::Inline(bytes, len);
    }
    let mut aad = Vec::with_capacity(len);
    aad.extend_from_slice(header);
    aad.extend_from_slice(&length);
    aad.extend_from_slice(name.as_bytes());
    AssociatedData::Heap(aad)
}

fn mac(key: &[u8; 32], aad: &[u8], payload: &[u8]) -> [u8; MAC_TAG] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(aad);
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

mod payload;
mod scratch;
mod xchacha;

#[cfg(test)]
mod tests;
