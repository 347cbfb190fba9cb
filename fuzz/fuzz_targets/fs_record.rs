//! The file store's at-rest decoding, through the real store: the fuzzer's bytes are the
//! session file of a key that is in a user's index, then every reading operation runs.
//!
//! Checked: never a panic; `load` agrees with decoding the file as a `Record` (a record
//! that does not decode is `Corrupt`, one that decodes is returned exactly when live);
//! reading operations end in `Ok` or `Corrupt`, never another error.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use cloakroom::{ListQuery, Record, SessionId, SessionStore, StoreError, StoreKey};
use cloakroom_fs::FileStore;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const USER: &str = "fuzz";

struct Fixture {
    store: FileStore,
    key: StoreKey,
    file: PathBuf,
    marker_dir: PathBuf,
    marker: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Kept for the life of the fuzzing process.
        let root = tempfile::tempdir().unwrap().keep();
        let store = FileStore::open(&root).unwrap();
        let key = SessionId::generate().store_key();
        let user_dir: [u8; 32] = Sha256::digest(USER.as_bytes()).into();
        let marker_dir = root
            .join("users")
            .join(StoreKey::from_bytes(user_dir).to_hex());
        Fixture {
            store,
            file: root.join("sessions").join(key.to_hex()),
            marker: marker_dir.join(key.to_hex()),
            marker_dir,
            key,
        }
    })
}

fn tolerated<T>(result: Result<T, StoreError>, operation: &str) {
    match result {
        Ok(_) | Err(StoreError::Corrupt(_)) => {}
        Err(error) => panic!("{operation} failed on a bad session file: {error:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    std::fs::create_dir_all(&f.marker_dir).unwrap();
    std::fs::write(&f.marker, b"").unwrap();
    std::fs::write(&f.file, data).unwrap();
    let decoded = serde_json::from_slice::<Record>(data);
    cloakroom_fuzz::runtime().block_on(async {
        match (f.store.load(&f.key).await, &decoded) {
            (Err(StoreError::Corrupt(_)), Err(_)) => {}
            (Ok(Some(loaded)), Ok(record)) => assert_eq!(&loaded, record),
            (Ok(None), Ok(record)) => {
                assert!(!record.is_live_at(cloakroom::record::now()))
            }
            (loaded, decoded) => {
                panic!("load gave {loaded:?} for a file that decodes as {decoded:?}")
            }
        }
        tolerated(
            f.store.find_by_handle(&f.key.handle()).await,
            "find_by_handle",
        );
        tolerated(f.store.list_for_user(USER).await, "list_for_user");
        let query = ListQuery {
            limit: 10,
            ..ListQuery::default()
        };
        tolerated(f.store.list_sessions(&query).await, "list_sessions");
        tolerated(f.store.purge_expired(16).await, "purge_expired");
        tolerated(f.store.delete_for_user(USER, None).await, "delete_for_user");
    });
});
