//! Races too slow for every conformance run, for a store's own tests to repeat many
//! rounds.

use std::sync::Arc;
use std::time::Duration;

use super::fixtures::live_record;
use crate::id::SessionId;
use crate::store::SessionStore;

/// ID rotations racing "log out other devices" (`delete_for_user` with an exception), for
/// `rounds` rounds: each round, six sessions of one user are renamed while the others of
/// the user are revoked, at a different offset each round. Panics if a renamed session
/// survives the revocation, or if the kept one does not.
pub async fn revoke_others_racing_renames(store: Arc<dyn SessionStore>, rounds: u64) {
    for round in 0..rounds {
        let user = super::unique_user(&format!("racer{round}"));
        let current = SessionId::generate().store_key();
        store
            .insert(&current, &live_record(Some(&user)))
            .await
            .unwrap();
        let mut others = Vec::new();
        for _ in 0..6 {
            let key = SessionId::generate().store_key();
            store.insert(&key, &live_record(Some(&user))).await.unwrap();
            others.push(key);
        }
        let renames: Vec<_> = others
            .iter()
            .map(|old| {
                let (store, old) = (Arc::clone(&store), *old);
                let new = SessionId::generate().store_key();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_micros(50 * (round % 7))).await;
                    let _ = store.rename(&old, &new).await;
                    new
                })
            })
            .collect();
        store.delete_for_user(&user, Some(&current)).await.unwrap();
        for (old, rename) in others.iter().zip(renames) {
            let new = rename.await.unwrap();
            assert_eq!(store.load(old).await.unwrap(), None, "round {round}");
            assert_eq!(
                store.load(&new).await.unwrap(),
                None,
                "round {round}: a session renamed during revoke-others survived"
            );
        }
        assert!(store.load(&current).await.unwrap().is_some());
    }
}

/// [`revoke_others_racing_renames`] run by `copies` tasks at once on one store, for `rounds`
/// rounds each: more renames complete between a revocation's index read and its record
/// reads than with one. Panics as that function does.
pub async fn revoke_others_racing_renames_concurrently(
    store: Arc<dyn SessionStore>,
    copies: usize,
    rounds: u64,
) {
    let tasks: Vec<_> = (0..copies)
        .map(|_| tokio::spawn(revoke_others_racing_renames(Arc::clone(&store), rounds)))
        .collect();
    for task in tasks {
        if let Err(failure) = task.await {
            std::panic::resume_unwind(failure.into_panic());
        }
    }
}
