//! Group commit: writers to one session in one process take turns, and a writer that gets
//! its turn commits the change sets of every writer queued behind it in the same
//! compare-and-set. Under contention that is one store round trip for a whole queue
//! instead of one per writer, and no write is lost: each change set is re-applied to the
//! freshest record, in arrival order, exactly as a single writer's would be.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex as SyncMutex, PoisonError};

use tokio::sync::oneshot;
use tokio::sync::{Mutex, MutexGuard};

use crate::change::ChangeSet;
use crate::config::Limits;
use crate::error::SessionError;
use crate::id::StoreKey;
use crate::record::Record;
use crate::store::StoreError;

/// One stripe of the commit lock table.
#[derive(Default)]
pub(crate) struct CommitTurn {
    /// Held while committing; holds the record the last holder committed when another
    /// writer was queued, so that writer rebases on it instead of failing its
    /// compare-and-set and reloading.
    last: Mutex<Option<(StoreKey, Record)>>,
    /// Writers waiting for `last`.
    queued: AtomicUsize,
    /// Change sets offered to whoever commits their session next.
    riders: SyncMutex<Vec<Rider>>,
    tickets: AtomicU64,
}

/// What a writer gets when its turn comes.
pub(crate) enum Taken<'a> {
    /// The writer ahead committed (or refused) this writer's changes: nothing to do.
    Settled(RideOutcome),
    /// This writer commits, its own changes and those of the riders it carries.
    Turn(Holder<'a>),
}

/// The turn to commit one session: the lock, and the riders' changes to commit along.
/// Dropped without [`committed`](Self::committed), [`gone`](Self::gone) or
/// [`failed`](Self::failed) (its request was cancelled mid-commit), its riders learn that
/// whether their changes were saved is unknown.
pub(crate) struct Holder<'a> {
    turn: &'a CommitTurn,
    last: MutexGuard<'a, Option<(StoreKey, Record)>>,
    riders: Vec<Rider>,
}

impl Holder<'_> {
    /// The record the previous holder committed under `key`, if newer than `version`: a
    /// fresher base than this writer loaded.
    pub(crate) fn committed_since(&self, key: &StoreKey, version: u64) -> Option<&Record> {
        match self.last.as_ref() {
            Some((committed_key, committed))
                if committed_key == key && committed.version > version =>
            {
                Some(committed)
            }
            _ => None,
        }
    }

    /// Whether other writers' changes ride on this commit.
    pub(crate) fn has_riders(&self) -> bool {
        !self.riders.is_empty()
    }

    /// Applies the riders' changes to `record`; see [`board`].
    pub(crate) fn board(
        &mut self,
        record: &mut Record,
        limits: &Limits,
        total: &mut Option<usize>,
    ) {
        board(record, &mut self.riders, limits, total);
    }

    /// The compare-and-set of `record` under `key` succeeded: the riders are answered,
    /// and if a writer waits, the record stays for it to rebase on.
    pub(crate) fn committed(mut self, key: StoreKey, record: &Record) {
        if !self.riders.is_empty() {
            crate::telemetry::group_commit(self.riders.len() + 1);
        }
        for rider in self.riders.drain(..) {
            rider.answer(RideOutcome::Committed(record.clone()));
        }
        *self.last = (self.turn.queued.load(Ordering::SeqCst) > 0).then(|| (key, record.clone()));
    }

    /// The session was deleted meanwhile: the riders' changes are dropped with it.
    pub(crate) fn gone(mut self) {
        for rider in self.riders.drain(..) {
            rider.answer(RideOutcome::Gone);
        }
    }

    /// The commit failed with `error`, for the riders too.
    pub(crate) fn failed(mut self, error: &SessionError) {
        fail_all(&mut self.riders, error);
    }
}

/// A writer's change set, waiting for the writer ahead of it to commit it.
struct Rider {
    ticket: u64,
    key: StoreKey,
    changes: ChangeSet,
    reply: oneshot::Sender<RideOutcome>,
}

/// What became of a rider's change set.
pub(crate) enum RideOutcome {
    /// Committed; the record as committed, every rider's changes included.
    Committed(Record),
    /// The session was deleted meanwhile; the changes were dropped, as a single writer's
    /// would be.
    Gone,
    /// Not committed, for this reason.
    Failed(SessionError),
}

/// A writer's place among the riders, until its turn comes. Dropped unsettled (the
/// writer's request was cancelled while it waited), it withdraws its offer.
struct Ticket<'a> {
    turn: &'a CommitTurn,
    number: u64,
    outcome: oneshot::Receiver<RideOutcome>,
    settled: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.turn
                .riders()
                .retain(|rider| rider.ticket != self.number);
        }
    }
}

/// One writer counted in [`CommitTurn::queued`] for as long as it lives.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn join(queued: &'a AtomicUsize) -> Self {
        queued.fetch_add(1, Ordering::SeqCst);
        Self(queued)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a writer that offered its changes finds when its turn comes.
enum Turn {
    /// The writer ahead committed (or refused) this writer's changes.
    Settled(RideOutcome),
    /// This writer commits: its own changes and those of the riders handed over.
    Commit(Vec<Rider>),
}

impl CommitTurn {
    /// Takes the turn to commit the session under `key`: at once if no writer holds it.
    /// Otherwise a plain write (`offer` holds its changes; a rotation or a touch offers
    /// none) offers its changes to the writers ahead, one of which may commit them with
    /// its own, and waits.
    pub(crate) async fn take(&self, key: StoreKey, offer: Option<&ChangeSet>) -> Taken<'_> {
        if let Ok(last) = self.last.try_lock() {
            return Taken::Turn(self.holder(last, Vec::new()));
        }
        let ticket = offer.map(|changes| self.offer(key, changes.clone()));
        let last = self.wait_turn().await;
        let riders = match ticket {
            None => Vec::new(),
            Some(ticket) => match self.settle(&key, ticket) {
                Turn::Settled(outcome) => return Taken::Settled(outcome),
                Turn::Commit(riders) => riders,
            },
        };
        Taken::Turn(self.holder(last, riders))
    }

    fn holder<'a>(
        &'a self,
        last: MutexGuard<'a, Option<(StoreKey, Record)>>,
        riders: Vec<Rider>,
    ) -> Holder<'a> {
        Holder {
            turn: self,
            last,
            riders,
        }
    }

    /// Waits for the turn, counted in `queued` meanwhile so the holder knows to leave
    /// its committed record behind. The count is a guard's, so a writer whose request is
    /// dropped while it waits is uncounted too.
    async fn wait_turn(&self) -> MutexGuard<'_, Option<(StoreKey, Record)>> {
        let _queued = Queued::join(&self.queued);
        self.last.lock().await
    }

    /// Offers `changes` to whoever commits the session under `key` before this writer does.
    fn offer(&self, key: StoreKey, changes: ChangeSet) -> Ticket<'_> {
        let (reply, outcome) = oneshot::channel();
        let number = self.tickets.fetch_add(1, Ordering::Relaxed);
        self.riders().push(Rider {
            ticket: number,
            key,
            changes,
            reply,
        });
        Ticket {
            turn: self,
            number,
            outcome,
            settled: false,
        }
    }

    /// Called once the writer holding `ticket` has the turn (holds `last`).
    fn settle(&self, key: &StoreKey, mut ticket: Ticket<'_>) -> Turn {
        ticket.settled = true;
        match ticket.outcome.try_recv() {
            Ok(outcome) => Turn::Settled(outcome),
            // A writer took these changes and was cancelled before it could answer (its
            // request was dropped mid-commit). Whether its compare-and-set ran is unknown,
            // so committing them again could apply an increment twice: report it.
            Err(oneshot::error::TryRecvError::Closed) => Turn::Settled(RideOutcome::Failed(
                StoreError::unavailable(
                    "the request committing this session's concurrent writes was cancelled; \
                     whether they were saved is unknown",
                )
                .into(),
            )),
            // Nobody took them: every writer ahead answers before giving up the turn. Take
            // our own entry back and every other live one for the same session.
            Err(oneshot::error::TryRecvError::Empty) => {
                let mut riders = self.riders();
                let mut taken = Vec::new();
                let mut index = 0;
                while index < riders.len() {
                    let rider = &riders[index];
                    if rider.ticket == ticket.number || rider.reply.is_closed() {
                        // Ours, or one whose writer stopped listening.
                        riders.swap_remove(index);
                    } else if rider.key == *key {
                        taken.push(riders.swap_remove(index));
                    } else {
                        index += 1;
                    }
                }
                taken.sort_by_key(|rider| rider.ticket);
                Turn::Commit(taken)
            }
        }
    }

    fn riders(&self) -> std::sync::MutexGuard<'_, Vec<Rider>> {
        // No code path panics while holding the lock; recover the list if one ever did.
        self.riders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Rider {
    /// Answers the writer that offered these changes.
    fn answer(self, outcome: RideOutcome) {
        // A writer whose request was dropped no longer listens; nothing to tell it.
        let _ = self.reply.send(outcome);
    }
}

/// Applies each rider's changes to `record` in order. A rider whose changes cannot apply
/// (a value of an unexpected type, say, or one that would break the size `limits`) is
/// answered with that error and left out; the others are unaffected. `total` caches the
/// size of `record`'s data, as [`ChangeSet::apply_within`] keeps it.
fn board(record: &mut Record, riders: &mut Vec<Rider>, limits: &Limits, total: &mut Option<usize>) {
    let mut boarded = Vec::with_capacity(riders.len());
    for rider in riders.drain(..) {
        match rider.changes.apply_within(record, limits, total) {
            Ok(()) => boarded.push(rider),
            Err(error) => rider.answer(RideOutcome::Failed(error)),
        }
    }
    *riders = boarded;
}

/// Answers every rider with the failure that ended the commit they rode on.
fn fail_all(riders: &mut Vec<Rider>, error: &SessionError) {
    for rider in riders.drain(..) {
        rider.answer(RideOutcome::Failed(shared(error)));
    }
}

/// The same failure for another writer: store errors keep their kind (so the layer's
/// failure policy treats every writer alike), with the source as text.
fn shared(error: &SessionError) -> SessionError {
    match error {
        SessionError::Store(StoreError::Timeout(after)) => StoreError::Timeout(*after).into(),
        SessionError::Store(StoreError::Corrupt(reason)) => {
            StoreError::Corrupt(reason.clone()).into()
        }
        SessionError::Store(StoreError::Unavailable(source)) => {
            StoreError::unavailable(source.to_string()).into()
        }
        SessionError::Store(StoreError::Backend(source)) => {
            StoreError::backend(source.to_string()).into()
        }
        SessionError::TooManyConflicts { attempts } => SessionError::TooManyConflicts {
            attempts: *attempts,
        },
        other => StoreError::unavailable(other.to_string()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Change;
    use serde_json::json;

    /// The riders `ticket`'s writer takes when its turn comes; fails if it was settled.
    fn commits(turn: &CommitTurn, session: &StoreKey, ticket: Ticket<'_>) -> Vec<Rider> {
        match turn.settle(session, ticket) {
            Turn::Commit(riders) => riders,
            Turn::Settled(_) => panic!("the writer was settled instead of committing"),
        }
    }

    fn changes(key: &str, value: i64) -> ChangeSet {
        let mut changes = ChangeSet::default();
        changes.push(Change::Insert(key.into(), json!(value)));
        changes
    }

    /// Two writers of one session on `turn`, in order: the first inserts `a`, the second `b`.
    fn two_writers(turn: &CommitTurn) -> (StoreKey, Ticket<'_>, Ticket<'_>) {
        let session = StoreKey::from_bytes([1; 32]);
        let first = turn.offer(session, changes("a", 1));
        (session, first, turn.offer(session, changes("b", 2)))
    }

    #[test]
    fn the_writer_whose_turn_comes_takes_the_other_riders_of_its_session_in_order() {
        let turn = CommitTurn::default();
        let (session, first, _second) = two_writers(&turn);
        let other = StoreKey::from_bytes([2; 32]);
        let _elsewhere = turn.offer(other, changes("c", 3));
        let _third = turn.offer(session, changes("d", 4));
        let riders = commits(&turn, &session, first);
        let keys: Vec<String> = riders
            .iter()
            .map(|rider| {
                let mut record = Record::new(crate::record::now(), None, None);
                rider.changes.apply_all(&mut record).unwrap();
                record.data.keys().next().unwrap().clone()
            })
            .collect();
        assert_eq!(keys, ["b", "d"], "the others of the same session, in order");
        assert_eq!(turn.riders().len(), 1, "the other session's rider stays");
    }

    #[test]
    fn a_rider_answered_by_the_writer_ahead_is_settled() {
        let turn = CommitTurn::default();
        let (session, first, second) = two_writers(&turn);
        let mut riders = commits(&turn, &session, first);
        let mut record = Record::new(crate::record::now(), None, None);
        board(&mut record, &mut riders, &Limits::default(), &mut None);
        for rider in riders {
            rider.answer(RideOutcome::Committed(record.clone()));
        }
        match turn.settle(&session, second) {
            Turn::Settled(RideOutcome::Committed(committed)) => {
                assert_eq!(committed.data.get("b"), Some(&json!(2)));
            }
            _ => panic!("the second writer was not answered"),
        }
    }

    #[test]
    fn a_rider_dropped_by_a_cancelled_writer_is_reported_not_retried() {
        let turn = CommitTurn::default();
        let (session, first, second) = two_writers(&turn);
        let riders = commits(&turn, &session, first);
        drop(riders);
        assert!(matches!(
            turn.settle(&session, second),
            Turn::Settled(RideOutcome::Failed(SessionError::Store(
                StoreError::Unavailable(_)
            )))
        ));
    }

    #[test]
    fn a_writer_cancelled_while_waiting_withdraws_its_offer() {
        let turn = CommitTurn::default();
        let session = StoreKey::from_bytes([1; 32]);
        let first = turn.offer(session, changes("a", 1));
        drop(turn.offer(session, changes("b", 2)));
        assert_eq!(turn.riders().len(), 1);
        let riders = commits(&turn, &session, first);
        assert!(riders.is_empty(), "a withdrawn offer is not committed");
        assert!(turn.riders().is_empty());
    }

    /// Issue 12 #15a: a writer whose request is dropped while it waits for the turn must
    /// not stay counted, or every later holder keeps a copy of its record for nobody.
    #[tokio::test]
    async fn a_writer_cancelled_while_queued_is_no_longer_counted() {
        let turn = std::sync::Arc::new(CommitTurn::default());
        let held = turn.last.lock().await;
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let turn = std::sync::Arc::clone(&turn);
                tokio::spawn(async move {
                    let _turn = turn.wait_turn().await;
                })
            })
            .collect();
        while turn.queued.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        for waiter in &waiters {
            waiter.abort();
        }
        for waiter in waiters {
            assert!(waiter.await.unwrap_err().is_cancelled());
        }
        assert_eq!(
            turn.queued.load(Ordering::SeqCst),
            0,
            "cancelled waiters still counted"
        );
        drop(held);
        assert!(
            turn.last.try_lock().is_ok(),
            "the next writer takes the turn at once"
        );
    }

    /// Through `take`: two writers queued behind a holder; the one whose turn comes
    /// commits both change sets, and the other rides on that commit.
    #[tokio::test]
    async fn of_two_queued_writers_one_commits_both_and_the_other_rides() {
        let turn = std::sync::Arc::new(CommitTurn::default());
        let session = StoreKey::from_bytes([1; 32]);
        let Taken::Turn(holder) = turn.take(session, None).await else {
            panic!("an uncontended writer takes the turn at once");
        };
        let writers: Vec<_> = ["b", "c"]
            .into_iter()
            .map(|key| {
                let turn = std::sync::Arc::clone(&turn);
                tokio::spawn(async move {
                    let own = changes(key, 1);
                    match turn.take(session, Some(&own)).await {
                        Taken::Turn(mut holder) => {
                            let mut record = Record::new(crate::record::now(), None, None);
                            own.apply_all(&mut record).unwrap();
                            holder.board(&mut record, &Limits::default(), &mut None);
                            holder.committed(session, &record);
                            ("committed", record)
                        }
                        Taken::Settled(RideOutcome::Committed(record)) => ("rode", record),
                        Taken::Settled(_) => panic!("the ride failed"),
                    }
                })
            })
            .collect();
        while turn.queued.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        holder.committed(session, &Record::new(crate::record::now(), None, None));
        let mut outcomes = Vec::new();
        for writer in writers {
            let (how, record) = writer.await.unwrap();
            assert!(record.data.contains_key("b") && record.data.contains_key("c"));
            outcomes.push(how);
        }
        outcomes.sort_unstable();
        assert_eq!(outcomes, ["committed", "rode"]);
        assert_eq!(turn.queued.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_rider_that_cannot_apply_is_left_out_alone() {
        let turn = CommitTurn::default();
        let session = StoreKey::from_bytes([1; 32]);
        let first = turn.offer(session, changes("a", 1));
        let mut failing = ChangeSet::default();
        failing.push(Change::Update(
            "n".into(),
            std::sync::Arc::new(|_| Err(SessionError::Finished)),
        ));
        let bad = turn.offer(session, failing);
        let _good = turn.offer(session, changes("c", 3));
        let mut riders = commits(&turn, &session, first);
        let mut record = Record::new(crate::record::now(), None, None);
        board(&mut record, &mut riders, &Limits::default(), &mut None);
        assert_eq!(riders.len(), 1);
        assert_eq!(record.data.get("c"), Some(&json!(3)));
        assert!(!record.data.contains_key("n"));
        assert!(matches!(
            turn.settle(&session, bad),
            Turn::Settled(RideOutcome::Failed(SessionError::Finished))
        ));
    }
}
