//! Crash safety in CI: the `reliability` writer is SIGKILLed mid-write 30 times on each
//! disk store; after every kill the store opens, every acknowledged write is there and
//! every record loads. (`scripts/reliability.sh full` runs 1,000 kills each.)

use std::path::Path;

use cloakroom_reliability::crash::{campaign, DiskStore};

const KILLS: u64 = 30;

async fn survives(store: DiskStore) {
    let writer = Path::new(env!("CARGO_BIN_EXE_reliability"));
    let report = campaign(writer, store, None, KILLS, 80, 10).await;
    assert!(report.passed(), "{report:#?}");
    assert_eq!(report.kills, KILLS, "{report:#?}");
    // The kills must land while writing, not before the first write.
    assert!(
        report.acked_writes >= KILLS,
        "writers made no progress: {report:#?}"
    );
    assert!(report.final_records > 0, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_write_across_sigkills() {
    survives(DiskStore::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_keeps_every_acknowledged_write_across_sigkills() {
    survives(DiskStore::File).await;
}

/// The checks can fail: a torn session file planted before the campaign is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_record_is_reported() {
    let writer = Path::new(env!("CARGO_BIN_EXE_reliability"));
    let dir = tempfile::tempdir().unwrap();
    cloakroom_fs::FileStore::open(dir.path()).unwrap();
    let torn = dir.path().join("sessions").join("ab".repeat(32));
    std::fs::write(torn, br#"{"data":{"cart":["ap"#).unwrap();
    let report = campaign(
        writer,
        DiskStore::File,
        Some(dir.path().to_owned()),
        1,
        20,
        1,
    )
    .await;
    assert!(!report.passed(), "{report:#?}");
    assert!(report.corrupt_records > 0, "{report:#?}");
}
