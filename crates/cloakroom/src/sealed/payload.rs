//! Format 2's payload: the session key and record in a compact binary layout.
//!
//! ```text
//! session key (32) | presence bits (1) | created_at (8) | last_active_at (8)
//! idle_deadline (8, if present) | absolute_deadline (8, if present)
//! version (LEB128, 1-10)
//! user_id, client IP, client user agent, auth epoch (each if present: LEB128 length | UTF-8)
//! data: the map as JSON, to the end
//! ```
//!
//! Times are Unix milliseconds as big-endian `i64`, as stores keep them. Format 1 carried
//! `{"k": hex key, "r": record}` as JSON: field names, a 64-character hex key and numbers
//! in decimal, written and parsed whole on every request. This layout keeps only the
//! values, so a session's fixed fields cost a few dozen byte copies each way, and the
//! cookie is shorter (less to encrypt and to base64).
//!
//! Why not a serde binary format (postcard, bincode, CBOR)? [`Record`]'s serde form skips
//! absent fields, which non-self-describing formats cannot read back, and the data's
//! [`Value`](serde_json::Value)s need `deserialize_any`, which postcard and bincode do not
//! offer; CBOR would tag every field. The values stay JSON: the limits count them as JSON,
//! and serde_json is the one reader whose exact round trip of numbers the stores pin down.
//!
//! Everything here is read after the MAC or AEAD tag verified, but the decoder still
//! trusts nothing: every length is checked, and it returns `None` rather than panic.

use std::io::Write;

use time::OffsetDateTime;

use crate::id::StoreKey;
use crate::record::{from_unix_ms, json_len, to_unix_ms, ClientMeta, Data, Record};

const KEY: usize = 32;
const TIME: usize = 8;
/// The longest LEB128 of a `u64`.
const MAX_VARINT: usize = 10;

const IDLE_DEADLINE: u8 = 1;
const ABSOLUTE_DEADLINE: u8 = 1 << 1;
const PERSISTENT: u8 = 1 << 2;
const USER: u8 = 1 << 3;
const IP: u8 = 1 << 4;
const USER_AGENT: u8 = 1 << 5;
const EPOCH: u8 = 1 << 6;
const KNOWN: u8 = IDLE_DEADLINE | ABSOLUTE_DEADLINE | PERSISTENT | USER | IP | USER_AGENT | EPOCH;

/// The optional strings, in their order in the layout, each with its presence bit.
fn strings(record: &Record) -> [(u8, Option<&str>); 4] {
    [
        (USER, record.user_id.as_deref()),
        (IP, record.client.ip.as_deref()),
        (USER_AGENT, record.client.user_agent.as_deref()),
        (EPOCH, record.auth_epoch.as_deref()),
    ]
}

fn presence(record: &Record) -> u8 {
    let mut bits = 0;
    if record.idle_deadline.is_some() {
        bits |= IDLE_DEADLINE;
    }
    if record.absolute_deadline.is_some() {
        bits |= ABSOLUTE_DEADLINE;
    }
    if record.persistent {
        bits |= PERSISTENT;
    }
    for (bit, text) in strings(record) {
        if text.is_some() {
            bits |= bit;
        }
    }
    bits
}

/// Appends the payload for `key` and `record` to `out` (a `Vec`, or the sealing buffer on
/// the stack).
pub(super) fn encode<W: Write>(
    key: &StoreKey,
    record: &Record,
    out: &mut W,
) -> Result<(), serde_json::Error> {
    let mut fixed = [0; KEY + 1 + 4 * TIME + MAX_VARINT];
    fixed[..KEY].copy_from_slice(key.as_bytes());
    fixed[KEY] = presence(record);
    let mut len = KEY + 1;
    let times = [
        Some(record.created_at),
        Some(record.last_active_at),
        record.idle_deadline,
        record.absolute_deadline,
    ];
    for at in times.into_iter().flatten() {
        fixed[len..len + TIME].copy_from_slice(&to_unix_ms(at).to_be_bytes());
        len += TIME;
    }
    len += put_varint(&mut fixed[len..], record.version);
    // The fixed fields in one write: the sealing buffer checks its room once, not per
    // field.
    out.write_all(&fixed[..len])
        .map_err(serde_json::Error::io)?;
    for text in strings(record).into_iter().filter_map(|(_, text)| text) {
        let mut prefix = [0; MAX_VARINT];
        let prefix_len = put_varint(&mut prefix, text.len() as u64);
        out.write_all(&prefix[..prefix_len])
            .and_then(|()| out.write_all(text.as_bytes()))
            .map_err(serde_json::Error::io)?;
    }
    serde_json::to_writer(out, &record.data)
}

/// The length [`encode`] appends, counted without building it.
pub(super) fn encoded_len(record: &Record) -> Result<usize, serde_json::Error> {
    let deadlines = usize::from(record.idle_deadline.is_some())
        + usize::from(record.absolute_deadline.is_some());
    let texts: usize = strings(record)
        .into_iter()
        .filter_map(|(_, text)| text)
        .map(|text| varint_len(text.len() as u64) + text.len())
        .sum();
    Ok(KEY
        + 1
        + TIME * (2 + deadlines)
        + varint_len(record.version)
        + texts
        + json_len(&record.data)?)
}

/// Reads a payload back; `None` for anything [`encode`] cannot have written.
pub(super) fn decode(bytes: &[u8]) -> Option<(StoreKey, Record)> {
    let mut input = Reader(bytes);
    let key = StoreKey::from_bytes(input.array()?);
    let bits = input.array::<1>()?[0];
    if bits & !KNOWN != 0 {
        return None;
    }
    let created_at = input.time()?;
    let last_active_at = input.time()?;
    let idle_deadline = input.time_if(bits & IDLE_DEADLINE != 0)?;
    let absolute_deadline = input.time_if(bits & ABSOLUTE_DEADLINE != 0)?;
    let version = input.varint()?;
    let user_id = input.string_if(bits & USER != 0)?;
    let ip = input.string_if(bits & IP != 0)?;
    let user_agent = input.string_if(bits & USER_AGENT != 0)?;
    let auth_epoch = input.string_if(bits & EPOCH != 0)?;
    let data: Data = serde_json::from_slice(input.0).ok()?;
    let record = Record {
        data,
        created_at,
        last_active_at,
        idle_deadline,
        absolute_deadline,
        persistent: bits & PERSISTENT != 0,
        user_id,
        client: ClientMeta { ip, user_agent },
        auth_epoch,
        // Client-side sessions are never bound (see `docs/dbsc.md`).
        device_binding: None,
        version,
    };
    Some((key, record))
}

/// Writes `value` as LEB128 (seven bits a byte, low bits first, high bit set on all but
/// the last) at the start of `out`, which has room for [`MAX_VARINT`] bytes; returns its
/// length.
fn put_varint(out: &mut [u8], mut value: u64) -> usize {
    let mut len = 0;
    while value >= 0x80 {
        // The mask keeps the low seven bits, so the cast loses nothing.
        out[len] = (value & 0x7f) as u8 | 0x80;
        value >>= 7;
        len += 1;
    }
    out[len] = value as u8;
    len + 1
}

fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// The unread rest of a payload.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.0.len() {
            return None;
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(taken)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn time(&mut self) -> Option<OffsetDateTime> {
        from_unix_ms(i64::from_be_bytes(self.array()?))
    }

    /// An optional time: `Some(None)` when absent, `None` when present but unreadable.
    fn time_if(&mut self, present: bool) -> Option<Option<OffsetDateTime>> {
        if present {
            self.time().map(Some)
        } else {
            Some(None)
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.array::<1>()?[0];
            let bits = u64::from(byte & 0x7f);
            // The tenth byte holds the top bit only; more would overflow.
            if shift == 63 && bits > 1 {
                return None;
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn string_if(&mut self, present: bool) -> Option<Option<String>> {
        if !present {
            return Some(None);
        }
        let len = usize::try_from(self.varint()?).ok()?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .ok()
            .map(|text| Some(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::now;
    use proptest::prelude::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = [0; MAX_VARINT];
            let len = put_varint(&mut out, value);
            assert_eq!(len, varint_len(value), "{value}");
            let out = &out[..len];
            let mut input = Reader(out);
            assert_eq!(input.varint(), Some(value));
            assert!(input.0.is_empty());
        }
        // Eleven continuation bytes, or a tenth byte past 64 bits, are refused.
        assert_eq!(Reader(&[0xff; 11]).varint(), None);
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(Reader(&over).varint(), None);
    }

    #[test]
    fn every_field_round_trips_and_the_length_is_exact() {
        let t = now();
        let mut record = Record::new(t, Some(t + time::Duration::minutes(5)), None);
        for variant in 0..4 {
            match variant {
                1 => {
                    record.absolute_deadline = Some(t + time::Duration::days(1));
                    record.persistent = true;
                    record.user_id = Some("alice".into());
                    record.version = 300;
                }
                2 => {
                    record.client = ClientMeta::new(Some("::1".into()), Some("agent é"));
                    record.auth_epoch = Some("9".into());
                    record
                        .data
                        .insert("k".into(), serde_json::json!({"a": [1, 2.5]}));
                }
                3 => {
                    record.idle_deadline = None;
                    record.user_id = None;
                    record.version = u64::MAX;
                }
                _ => {}
            }
            let key = StoreKey::from_bytes([variant; 32]);
            let mut out = Vec::new();
            encode(&key, &record, &mut out).unwrap();
            assert_eq!(
                out.len(),
                encoded_len(&record).unwrap(),
                "variant {variant}"
            );
            assert_eq!(
                decode(&out),
                Some((key, record.clone())),
                "variant {variant}"
            );
            for cut in 0..out.len() {
                assert_eq!(decode(&out[..cut]), None, "variant {variant} cut at {cut}");
            }
        }
    }

    #[test]
    fn unknown_presence_bits_are_refused() {
        let mut out = Vec::new();
        encode(
            &StoreKey::from_bytes([1; 32]),
            &Record::new(now(), None, None),
            &mut out,
        )
        .unwrap();
        out[KEY] |= 0x80;
        assert_eq!(decode(&out), None);
    }

    proptest! {
        #[test]
        fn no_payload_makes_decoding_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }
}
