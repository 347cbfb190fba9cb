//! The filesystem store: the conformance suite, private files, writers killed with
//! SIGKILL mid-write, and compare-and-set across processes.
//!
//! The writer processes are this test binary run again with `--ignored` and a role in
//! `CLOAKROOM_FS_ROLE`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cloakroom::conformance::{listings_skip_a_corrupt_record, too_deep_record};
use cloakroom::{Record, SessionId, SessionStore, StoreKey, UpdateError};
use cloakroom_fs::FileStore;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = AtomicUsize::new(0);
    cloakroom::conformance::run_on(&cloakroom_actix::testing::frameworks(), || {
        let path = dir
            .path()
            .join(counter.fetch_add(1, Ordering::SeqCst).to_string());
        async move { FileStore::open(path).unwrap() }
    })
    .await;
}

/// A live record with some data, of `user` if given.
fn live_record(user: Option<&str>) -> Record {
    let mut record = cloakroom::conformance::live_record(user);
    record.data.insert("n".into(), json!(0));
    record
}

/// A new store in `store/` under a new temporary directory: the directory (removed when
/// dropped), the store's root, and the store.
fn temp_store() -> (tempfile::TempDir, PathBuf, FileStore) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = FileStore::open(&root).unwrap();
    (dir, root, store)
}

#[tokio::test]
async fn files_are_private_and_named_only_by_hashes() {
    let (dir, root, store) = temp_store();
    let key = SessionId::generate().store_key();
    store
        .insert(&key, &live_record(Some("../../../etc/evil")))
        .await
        .unwrap();
    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let data_files: Vec<_> = files
        .iter()
        .filter(|p| !p.to_string_lossy().contains("/locks/"))
        .collect();
    assert_eq!(
        data_files.len(),
        2,
        "the record and its index marker: {data_files:?}"
    );
    for file in data_files {
        assert!(
            file.starts_with(&root),
            "{} escaped the store directory",
            file.display()
        );
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
    }
    assert_eq!(
        store
            .list_for_user("../../../etc/evil")
            .await
            .unwrap()
            .len(),
        1
    );
}

fn spawn_writer(role: &str, dir: &Path, extra: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "writer_process",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("CLOAKROOM_FS_ROLE", role)
        .env("CLOAKROOM_FS_DIR", dir)
        .env("CLOAKROOM_FS_ARG", extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a writer process")
}

fn keys_file(dir: &Path) -> std::path::PathBuf {
    dir.join("keys.txt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_killed_mid_write_never_leave_a_torn_session() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("store")).unwrap();
    let mut keys = Vec::new();
    for _ in 0..16 {
        let key = SessionId::generate().store_key();
        store
            .insert(&key, &live_record(Some("crash")))
            .await
            .unwrap();
        keys.push(key);
    }
    let list: Vec<String> = keys.iter().map(StoreKey::to_hex).collect();
    std::fs::write(keys_file(dir.path()), list.join("\n")).unwrap();
    let mut highest = 0;
    for round in 0..30u64 {
        let mut writer = spawn_writer("crash", dir.path(), "");
        tokio::time::sleep(Duration::from_millis(40 + (round * 37) % 90)).await;
        writer.kill().expect("SIGKILL the writer");
        writer.wait().unwrap();
        for key in &keys {
            let record = store
                .load(key)
                .await
                .unwrap_or_else(|e| {
                    panic!("round {round}: a session is unreadable after SIGKILL: {e}")
                })
                .unwrap_or_else(|| panic!("round {round}: a session vanished after SIGKILL"));
            assert_eq!(
                record.data["n"],
                json!(record.version - 1),
                "round {round}: the record is one whole version"
            );
            highest = highest.max(record.version);
        }
    }
    assert!(
        highest > 5,
        "the writers made progress between kills (highest version {highest})"
    );
    assert_eq!(
        store.list_for_user("crash").await.unwrap().len(),
        16,
        "the index survived too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_holds_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("store")).unwrap();
    let key = SessionId::generate().store_key();
    store.insert(&key, &live_record(None)).await.unwrap();
    std::fs::write(keys_file(dir.path()), key.to_hex()).unwrap();
    let writers: Vec<Child> = (0..2)
        .map(|_| spawn_writer("increment", dir.path(), "150"))
        .collect();
    for mut writer in writers {
        assert!(writer.wait().unwrap().success(), "a writer process failed");
    }
    let record = store.load(&key).await.unwrap().unwrap();
    assert_eq!(
        record.data["n"],
        json!(300),
        "two processes x 150 increments, none lost"
    );
}

/// Issue 12, item 15c: directories were created 0755, so other local users could list
/// which sessions exist and which (hashed) users have them.
#[tokio::test]
async fn directories_are_private() {
    let (_dir, root, store) = temp_store();
    store
        .insert(
            &SessionId::generate().store_key(),
            &live_record(Some("alice")),
        )
        .await
        .unwrap();
    let mut stack = vec![root.clone()];
    let mut seen = 0;
    while let Some(path) = stack.pop() {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} has mode {mode:o}", path.display());
        seen += 1;
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    assert!(
        seen >= 6,
        "root, sessions, users, the user's, locks, tmp: {seen}"
    );
}

/// Issue 12, item 6: one corrupt record made the user's list and revoke answer 503 for
/// good, and purge never removed it.
#[tokio::test]
async fn a_corrupt_record_is_skipped_by_list_revoke_and_purge() {
    let (_dir, root, store) = temp_store();
    let (good, bad, other) = (
        SessionId::generate().store_key(),
        SessionId::generate().store_key(),
        SessionId::generate().store_key(),
    );
    store
        .insert(&good, &live_record(Some("eve")))
        .await
        .unwrap();
    store.insert(&bad, &live_record(Some("eve"))).await.unwrap();
    store.insert(&other, &live_record(None)).await.unwrap();
    let bad_file = root.join("sessions").join(bad.to_hex());
    let corrupt = || std::fs::write(&bad_file, too_deep_record("eve")).unwrap();
    corrupt();
    assert!(store.load(&bad).await.is_err(), "the record is corrupt");

    listings_skip_a_corrupt_record(&store, "eve", good, bad).await;
    assert_eq!(
        store
            .delete_for_user("eve", Some(&good))
            .await
            .expect("revoke-others skips or removes a corrupt record"),
        0,
        "the corrupt record was no live session"
    );
    assert!(!bad_file.exists(), "revoke removed the corrupt file");
    assert!(store.load(&good).await.unwrap().is_some());

    corrupt();
    store.purge_expired(10).await.expect("purge skips nothing");
    assert!(!bad_file.exists(), "purge removes the corrupt file");
    assert!(store.load(&other).await.unwrap().is_some());
}

/// The lock of `key`'s stripe in the store at `root`, held until dropped, as another
/// process would hold it (flock is per open file, so a second open file in this process
/// contends like another process).
fn hold_stripe_lock(root: &Path, key: &StoreKey) -> std::fs::File {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(
            root.join("locks")
                .join(format!("{:02x}.lock", key.as_bytes()[0])),
        )
        .unwrap();
    lock.lock().unwrap();
    lock
}

/// Issue 12, item 9: an operation waited without bound on a lock another process held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_times_out_on_a_lock_held_elsewhere() {
    let (_dir, root, store) = temp_store();
    let store = store.with_timeout(Duration::from_millis(300));
    let key = SessionId::generate().store_key();
    store.insert(&key, &live_record(None)).await.unwrap();
    // Another holder of the stripe's lock, that never lets go.
    let lock = hold_stripe_lock(&root, &key);
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        store.update(&key, &live_record(None)),
    )
    .await
    .expect("the store answered instead of hanging");
    assert!(
        matches!(
            outcome,
            Err(UpdateError::Store(cloakroom::StoreError::Timeout(_)))
        ),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(lock);
    store.update(&key, &live_record(None)).await.unwrap();
}

/// Issue 12, item 15d: an ID rotation racing "log out other devices" must not leave the
/// rotated session logged in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_others_catches_a_session_renamed_mid_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(FileStore::open(dir.path().join("store")).unwrap());
    cloakroom::conformance::revoke_others_racing_renames(store, 200).await;
}

/// The same race with four revocations at once on one store: more renames complete
/// between a revocation pass's directory read and its record reads, which an early
/// version's last pass missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_others_catches_renames_under_contention() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn cloakroom::SessionStore> =
        std::sync::Arc::new(FileStore::open(dir.path().join("store")).unwrap());
    cloakroom::conformance::revoke_others_racing_renames_concurrently(store, 4, 100).await;
}

/// A revocation that meets a rotation in the middle, at the new key's lock: the rename has
/// indexed the new key but not moved the record yet, so the revocation's first read of it
/// finds nothing; by the time it holds the lock the record is there. It kept the marker but
/// left the session out of what it revoked, and with no marker added since, ended its
/// passes: the rotated session stayed logged in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_waiting_on_a_renamed_sessions_lock_revokes_it() {
    let (_dir, root, store) = temp_store();
    let store = std::sync::Arc::new(store);
    let [kept, old] = cloakroom::conformance::insert_live(&*store, "bob", 2)
        .await
        .try_into()
        .unwrap();
    let new = std::iter::repeat_with(|| SessionId::generate().store_key())
        .find(|key| key.as_bytes()[0] != kept.as_bytes()[0])
        .unwrap();
    let users: Vec<_> = std::fs::read_dir(root.join("users")).unwrap().collect();
    let user_dir = users[0].as_ref().unwrap().path();
    // The rename's first step, done: the new key indexed, its lock held. (The old key's
    // marker is gone already, as the rename's last step removes it.)
    std::fs::write(user_dir.join(new.to_hex()), b"").unwrap();
    std::fs::remove_file(user_dir.join(old.to_hex())).unwrap();
    let lock = hold_stripe_lock(&root, &new);
    let revocation = tokio::spawn({
        let store = std::sync::Arc::clone(&store);
        async move { store.delete_for_user("bob", Some(&kept)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The rename moves the record and lets go.
    std::fs::rename(
        root.join("sessions").join(old.to_hex()),
        root.join("sessions").join(new.to_hex()),
    )
    .unwrap();
    drop(lock);
    assert_eq!(revocation.await.unwrap().unwrap(), 1);
    assert!(
        store.load(&new).await.unwrap().is_none(),
        "the rotated session survived"
    );
    assert!(store.load(&kept).await.unwrap().is_some());
}

/// Not a test on its own: the body of the writer processes the tests above start.
#[tokio::test]
#[ignore = "run by the other tests as a separate process"]
async fn writer_process() {
    let (Ok(role), Ok(dir)) = (
        std::env::var("CLOAKROOM_FS_ROLE"),
        std::env::var("CLOAKROOM_FS_DIR"),
    ) else {
        return;
    };
    let dir = Path::new(&dir);
    let store = FileStore::open(dir.join("store")).unwrap();
    let keys: Vec<StoreKey> = std::fs::read_to_string(keys_file(dir))
        .unwrap()
        .lines()
        .filter_map(StoreKey::from_hex)
        .collect();
    let increments: usize = std::env::var("CLOAKROOM_FS_ARG")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(usize::MAX);
    let mut done = 0;
    while done < increments {
        for key in &keys {
            loop {
                let mut record = store.load(key).await.unwrap().unwrap();
                let expected = record.version;
                let n = if role == "increment" {
                    record.data["n"].as_u64().unwrap() + 1
                } else {
                    expected
                };
                record.data.insert("n".into(), json!(n));
                record.data.insert("pad".into(), json!("x".repeat(2000)));
                match store.update(key, &record).await {
                    Ok(()) => break,
                    Err(UpdateError::Conflict) => continue,
                    Err(error) => panic!("writer: {error}"),
                }
            }
        }
        done += 1;
    }
}

/// The adversarial-scale figures for RELIABILITY.md: one user with `CLOAKROOM_SCALE`
/// sessions (default 100,000). Run with
/// `cargo test -p cloakroom-fs --test fs -- --ignored --nocapture scale`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, minutes long"]
async fn scale_one_user_with_many_sessions() {
    let n: usize = std::env::var("CLOAKROOM_SCALE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn SessionStore> =
        std::sync::Arc::new(FileStore::open(dir.path().join("store")).unwrap());
    cloakroom::conformance::one_user_with_many_sessions(&store, "fs", n).await;
    let second = time::Duration::seconds(1);
    cloakroom::conformance::insert_concurrently(&store, "whale", n, second).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = std::time::Instant::now();
    let purged = store.purge_expired(1000).await.unwrap();
    println!("fs: purge ({n} expired): {:?}", started.elapsed());
    assert_eq!(purged as usize, n);
}

/// The session directory gone (the volume unmounted, the directory moved away) is an
/// outage, not every session gone: a load fails as unavailable (a 503 from the session
/// layer), and the sessions are there again when the directory is. It read as "no
/// session", serving every logged-in user as an anonymous visitor.
#[tokio::test]
async fn a_missing_session_directory_is_an_outage() {
    let (_dir, root, store) = temp_store();
    let key = SessionId::generate().store_key();
    store.insert(&key, &live_record(Some("ada"))).await.unwrap();
    std::fs::rename(root.join("sessions"), root.join("away")).unwrap();
    let outcome = store.load(&key).await;
    assert!(
        matches!(outcome, Err(cloakroom::StoreError::Unavailable(_))),
        "{outcome:?}"
    );
    // Nor is a logout then a deletion: it fails, and the session is still there after.
    assert!(store.delete(&key).await.is_err());
    std::fs::rename(root.join("away"), root.join("sessions")).unwrap();
    assert!(store.load(&key).await.unwrap().is_some());
}

/// A listing that finds a user's index entry without its record (a rename's new key, its
/// record on the way) reads again under the lock; if that read fails, the entry says
/// nothing about the session and stays. It was taken for "no session" and removed, so the
/// session dropped out of "my devices" and escaped "log out other devices".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_keeps_the_index_entry_of_a_session_it_could_not_read() {
    let (_dir, root, store) = temp_store();
    let key = SessionId::generate().store_key();
    store.insert(&key, &live_record(Some("ben"))).await.unwrap();
    let session = root.join("sessions").join(key.to_hex());
    let record = std::fs::read(&session).unwrap();
    std::fs::remove_file(&session).unwrap();
    let lock = hold_stripe_lock(&root, &key);
    let listing = tokio::spawn({
        let store = store.clone();
        async move { store.list_for_user("ben").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The second read, under the lock, fails: a directory where the file belongs.
    std::fs::create_dir(&session).unwrap();
    drop(lock);
    let listed = listing.await.unwrap();
    assert!(listed.is_err(), "{listed:?}");
    std::fs::remove_dir(&session).unwrap();
    std::fs::write(&session, record).unwrap();
    let keys: Vec<StoreKey> = store
        .list_for_user("ben")
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.key)
        .collect();
    assert_eq!(keys, vec![key], "the session is still indexed");
}
