//! When to rebuild the cluster connection: the bookkeeping, without the I/O.
//!
//! The rule: once calls on one slot have failed without an answer for longer than a
//! failover should take (and none was answered meanwhile), build a fresh connection, and
//! keep building one, paced, until that slot answers.
//!
//! Why per slot: when a primary dies, only its shard fails, so a rule over every call (the
//! first version of this watchdog) never fires while the other shards answer; yet redis-rs
//! 0.32 was seen to keep routing the lost shard's slots by a topology read before the
//! replica took over, with no refresh after. Why again and again: a rebuild made before
//! the promotion reads the same stale topology, so only one made after it helps, and when
//! that is cannot be known from here. A stall of every shard (redis-rs's connection task
//! no longer serving anything) is the same rule for every slot at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Least time a slot must fail before a rebuild, whatever the operation timeout.
const PATIENCE_MIN: Duration = Duration::from_secs(1);
/// The pause after a rebuild before another, doubled by each rebuild the failing slots
/// outlast, up to the maximum: quick enough to catch the promotion soon after it happens,
/// and at most a fresh set of node connections every 2 s while a shard stays lost.
const INTERVAL_MIN: Duration = Duration::from_millis(500);
const INTERVAL_MAX: Duration = Duration::from_secs(2);
/// A slot with no call for this many patiences is forgotten (nobody asks for it now).
const FORGET_AFTER: u32 = 2;

/// The failures of the cluster connection's calls, by slot.
pub(super) struct Health {
    /// How long a slot must fail before a rebuild: two operation timeouts (a call that
    /// times out fails one timeout after it started; the pause of every shard while
    /// redis-rs refreshes its topology after a kill lasts about that long).
    patience: Duration,
    /// The slots whose latest calls failed, since when (the start of the first of them)
    /// and when the last failure ended.
    failing: HashMap<u16, Failing>,
    /// When stale entries of `failing` were last forgotten.
    pruned_at: Option<Instant>,
    /// Whether a rebuild is under way (one at a time).
    pub(super) rebuilding: bool,
    /// No rebuild starts before this.
    next_rebuild: Option<Instant>,
    interval: Duration,
    /// When the current connection was swapped in: calls started before then failed on
    /// the old one and say nothing about it.
    swapped_at: Option<Instant>,
}

#[derive(Clone, Copy)]
struct Failing {
    since: Instant,
    last: Instant,
}

impl Health {
    /// Health for calls bounded by `operation_timeout`.
    pub(super) fn new(operation_timeout: Duration) -> Self {
        Self {
            patience: operation_timeout.saturating_mul(2).max(PATIENCE_MIN),
            failing: HashMap::new(),
            pruned_at: None,
            rebuilding: false,
            next_rebuild: None,
            interval: INTERVAL_MIN,
            swapped_at: None,
        }
    }

    /// A call on `slot` was answered: that slot works. True when no slot is failing any
    /// more (nothing left to watch).
    pub(super) fn answered(&mut self, slot: u16, now: Instant) -> bool {
        self.failing.remove(&slot);
        self.prune(now);
        self.failing.is_empty()
    }

    /// A call on `slot`, started at `started`, failed without an answer. When the
    /// connection is to be rebuilt now, how long the slot has been failing.
    pub(super) fn failed(&mut self, slot: u16, started: Instant, now: Instant) -> Option<Duration> {
        if self.swapped_at.is_some_and(|swapped| started < swapped) {
            // It failed on the connection replaced since: nothing about this one.
            return None;
        }
        self.prune(now);
        let failing = self.failing.entry(slot).or_insert(Failing {
            since: started,
            last: now,
        });
        failing.since = failing.since.min(started);
        failing.last = now;
        let failing_for = now.saturating_duration_since(failing.since);
        (failing_for >= self.patience
            && !self.rebuilding
            && self.next_rebuild.is_none_or(|next| now >= next))
        .then_some(failing_for)
    }

    /// A rebuild ended at `now`, its connection swapped in or not. The failing slots stay
    /// failing until they answer: a fresh connection that still cannot reach one is
    /// replaced in turn.
    pub(super) fn rebuilt(&mut self, swapped: bool, now: Instant) {
        self.rebuilding = false;
        self.next_rebuild = Some(now + self.interval);
        self.interval = (self.interval * 2).min(INTERVAL_MAX);
        if swapped {
            self.swapped_at = Some(now);
        }
    }

    /// Forgets, at most once a patience, the slots nobody has called for a while, and
    /// paces rebuilds from scratch when nothing is failing.
    fn prune(&mut self, now: Instant) {
        if self
            .pruned_at
            .is_none_or(|at| now.saturating_duration_since(at) >= self.patience)
        {
            self.pruned_at = Some(now);
            let horizon = self.patience.saturating_mul(FORGET_AFTER);
            self.failing
                .retain(|_, failing| now.saturating_duration_since(failing.last) < horizon);
        }
        if self.failing.is_empty() {
            // A new spell of failures waits a whole patience (at least a second) before
            // its first rebuild anyway.
            self.interval = INTERVAL_MIN;
            self.next_rebuild = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// Operation timeout of the calls in these tests: a patience of 1 s.
    const TIMEOUT: Duration = Duration::from_millis(500);

    /// Calls on `slot` failing every 100 ms from `t0` (while `others` answer) until one
    /// says to rebuild: how long after `t0` that was.
    fn first_rebuild(health: &mut Health, slot: u16, t0: Instant, others: &[u16]) -> Option<u64> {
        (0..200u64).find_map(|step| {
            let now = t0 + 100 * MS * u32::try_from(step).unwrap();
            for other in others {
                health.answered(*other, now);
            }
            health.failed(slot, now, now).map(|_| step * 100)
        })
    }

    #[test]
    fn a_slot_failing_past_the_patience_rebuilds_even_while_others_answer() {
        let t0 = Instant::now();
        assert_eq!(
            first_rebuild(&mut Health::new(TIMEOUT), 7, t0, &[]),
            Some(1000)
        );
        assert_eq!(
            first_rebuild(&mut Health::new(TIMEOUT), 7, t0, &[1, 2, 3]),
            Some(1000),
            "the other shards answering changes nothing"
        );
        // Calls that time out count from their start: 1-s timeouts started at t0.
        let mut health = Health::new(TIMEOUT);
        assert_eq!(health.failed(7, t0, t0 + 1000 * MS), Some(1000 * MS));
    }

    #[test]
    fn an_answer_on_the_slot_starts_its_patience_again() {
        let t0 = Instant::now();
        let mut health = Health::new(TIMEOUT);
        assert!(health.failed(7, t0, t0 + 900 * MS).is_none());
        assert!(health.answered(7, t0 + 900 * MS));
        assert!(health.failed(7, t0 + 950 * MS, t0 + 1500 * MS).is_none());
        assert!(health.failed(7, t0 + 1900 * MS, t0 + 1950 * MS).is_some());
    }

    #[test]
    fn a_pause_of_one_timeout_rebuilds_nothing() {
        // With 1-s timeouts, every call in flight during a 1-s pause fails within about
        // 1.05 s of its start.
        let t0 = Instant::now();
        let mut health = Health::new(Duration::from_secs(1));
        for call in 0..30u32 {
            let started = t0 + 2 * MS * call;
            assert!(health
                .failed(call as u16 % 3, started, started + 1050 * MS)
                .is_none());
        }
        for slot in 0..3 {
            health.answered(slot, t0 + 1100 * MS);
        }
        assert!(health.failed(0, t0 + 1200 * MS, t0 + 2250 * MS).is_none());
    }

    #[test]
    fn rebuilds_repeat_paced_until_the_slot_answers() {
        let t0 = Instant::now();
        let mut health = Health::new(TIMEOUT);
        assert_eq!(first_rebuild(&mut health, 7, t0, &[1]), Some(1000));
        health.rebuilding = true;
        let t1 = t0 + 1100 * MS;
        assert!(health.failed(7, t1, t1).is_none(), "one rebuild at a time");
        health.rebuilt(true, t1);
        // Calls that started on the replaced connection say nothing about the new one.
        assert!(health.failed(7, t1 - MS, t1 + 600 * MS).is_none());
        // Still failing on the new connection: again 500 ms later, then 1 s, then 2 s, 2 s.
        let mut at = t1;
        for pause in [500, 1000, 2000, 2000] {
            assert!(health.failed(7, at + MS, at + (pause - 1) * MS).is_none());
            at += pause * MS;
            assert!(
                health.failed(7, at, at).is_some(),
                "a rebuild {pause} ms after the last"
            );
            health.rebuilding = true;
            health.rebuilt(true, at);
        }
        // Once the slot answers, the next failure waits a whole patience, and the pace
        // starts again from 500 ms.
        assert!(health.answered(7, at + 100 * MS));
        let t2 = at + 200 * MS;
        assert_eq!(first_rebuild(&mut health, 7, t2, &[]), Some(1000));
        health.rebuilding = true;
        health.rebuilt(false, t2 + 1000 * MS);
        assert!(health.failed(7, t2 + 1500 * MS, t2 + 1500 * MS).is_some());
    }

    /// An operation timeout as long as it goes (`Duration::MAX`): the patience derived
    /// from it, and the horizon after which a slot is forgotten, saturate instead of
    /// overflowing with a panic (in `new`, and in the pruning every call runs).
    #[test]
    fn an_endless_operation_timeout_never_rebuilds() {
        let t0 = Instant::now();
        let mut health = Health::new(Duration::MAX);
        for call in 0..3 {
            let at = t0 + call * 1000 * MS;
            assert!(health.failed(7, at, at + 900 * MS).is_none());
        }
        assert!(
            !health.answered(8, t0 + 5000 * MS),
            "slot 7 is still failing"
        );
    }

    #[test]
    fn slots_nobody_calls_are_forgotten() {
        let t0 = Instant::now();
        let mut health = Health::new(TIMEOUT);
        assert!(health.failed(7, t0, t0 + 500 * MS).is_none());
        assert!(!health.answered(8, t0 + 1000 * MS), "slot 7 still failing");
        assert!(health.answered(8, t0 + 2600 * MS), "slot 7 forgotten");
        // Forgotten, it starts a whole patience again.
        assert!(health.failed(7, t0 + 2700 * MS, t0 + 3000 * MS).is_none());
    }
}
