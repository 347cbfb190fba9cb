//! The at-rest record as JSON: what the Memcached store keeps in an item, the file store
//! in a file, and the Redis store in a hash's `r` field (`serde_json` into
//! `cloakroom::Record`, the decoder all three call).
//!
//! Checked: never a panic; a record that decodes answers its liveness questions and
//! survives a write and read back unchanged (what a store does on every update).
#![no_main]

use cloakroom::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = serde_json::from_slice::<Record>(data) else {
        return;
    };
    let _ = record.expires_at();
    let _ = record.is_live_at(cloakroom::record::now());
    let written = serde_json::to_vec(&record).expect("a decoded record encodes");
    let again: Record = serde_json::from_slice(&written).expect("an encoded record decodes");
    assert_eq!(
        again, record,
        "a record changed on a round trip through its at-rest form"
    );
    // The Memcached store's user index items.
    let _ = serde_json::from_slice::<Vec<String>>(data);
});
