//! Puts a node's live events in clock order before they reach its connections.
//!
//! Every event a user is told of has a position on the database's one clock (a message's id, a
//! read marker's or a started chat's row), and a user's stream is their events in position
//! order, with holes where other users' events are. A connection cannot tell such a hole from
//! an event it was never sent, so it is never asked to: the node hears of **every** position
//! (each write publishes its positions, with the events of users of every node, through the
//! cluster's channel), and the sequencer hands them on strictly in order. A connection that was
//! sent position `p` has then been sent everything of its user's up to `p`, and `p` is a cursor
//! to resume from.
//!
//! Positions arrive out of order (two writers committing side by side; another node's events
//! coming through Redis) and some never arrive (a node that died between its commit and its
//! publish, a publish Redis lost). A position missing for longer than the timeout is given up on:
//! every connection of the node is told to catch up from the store, which holds every committed
//! position, and the positions after it go on. The store's clock, read now and then
//! ([`Sequencer::expect`]), reveals positions missing at the end, where nothing after them would.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use parley_common::Event;

use crate::relay::ConnId;

/// One user's event at a position.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub user_id: i64,
    pub event: Arc<Event>,
    /// The connection that sent the message, which gets it as its ack.
    pub origin: Option<ConnId>,
}

/// Everything a position tells, to whom: every member of a chat gets its message. Empty when
/// none of the users it concerns is here (a node publishes every position all the same).
#[derive(Debug, Clone)]
pub struct Positioned {
    pub pos: i64,
    pub deliveries: Vec<Delivery>,
}

/// What a step of the sequencer lets go of, in order.
#[derive(Debug)]
pub enum Released {
    /// Every connection must catch up from the store: a position was given up on.
    CatchUpAll,
    /// A position's deliveries.
    At(Positioned),
}

/// The positions of one node, in order (see the module).
pub struct Sequencer {
    state: Mutex<State>,
    timeout: Duration,
}

struct State {
    /// The next position to hand on; everything before it was handed on or given up on.
    next: i64,
    /// Positions that arrived before `next`.
    held: BTreeMap<i64, Vec<Delivery>>,
    /// The store's clock as last read: positions up to it exist.
    expected: i64,
    /// Since when `next` has been missing.
    missing_since: Option<Instant>,
}

impl Sequencer {
    /// A sequencer whose node starts at the store's `clock`: earlier positions were committed
    /// before any connection here could ask for them live.
    pub fn new(clock: i64, timeout: Duration) -> Self {
        let state = State { next: clock + 1, held: BTreeMap::new(), expected: clock, missing_since: None };
        Self { state: Mutex::new(state), timeout }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes positions as they arrive and hands on, to `release` and under the sequencer's lock
    /// (so that concurrent callers keep the order), what is now in order. A position before
    /// `next` (late, after it was given up on) is handed on at once: connections that caught up
    /// past it skip it, and its sender still needs the ack.
    pub fn publish(&self, items: Vec<Positioned>, now: Instant, mut release: impl FnMut(Released)) {
        let mut state = self.lock();
        for item in items {
            if item.pos < state.next {
                release(Released::At(item));
            } else {
                state.held.entry(item.pos).or_default().extend(item.deliveries);
            }
        }
        state.release_in_order(&mut release);
        state.note_missing(now);
    }

    /// The store's clock was read at `clock`: every position up to it was committed.
    pub fn expect(&self, clock: i64, now: Instant) {
        let mut state = self.lock();
        state.expected = state.expected.max(clock);
        state.note_missing(now);
    }

    /// Gives up on the missing positions before the next one held (or up to the expected clock)
    /// once `next` has been missing for the timeout; `true` if it did.
    pub fn give_up_overdue(&self, now: Instant, mut release: impl FnMut(Released)) -> bool {
        let mut state = self.lock();
        match state.missing_since {
            Some(since) if now.duration_since(since) >= self.timeout => {}
            _ => return false,
        }
        let next_held = state.held.keys().next().copied();
        let skipped_to = next_held.unwrap_or(state.expected + 1);
        tracing::warn!(
            from = state.next,
            to = skipped_to - 1,
            "positions never arrived; connections catch up from the store"
        );
        ::metrics::counter!(crate::metrics::POSITIONS_GIVEN_UP).increment((skipped_to - state.next).max(0) as u64);
        release(Released::CatchUpAll);
        state.next = skipped_to;
        state.missing_since = None;
        state.release_in_order(&mut release);
        state.note_missing(now);
        true
    }

    /// Gives up at once on every position up to the store's `clock` not yet handed on: for a node
    /// that could not hear of them (before its subscription to the other nodes' positions was
    /// up). Every connection catches up from the store first, then what was held goes on.
    pub fn skip_to(&self, clock: i64, now: Instant, mut release: impl FnMut(Released)) {
        let mut state = self.lock();
        if clock < state.next {
            return;
        }
        release(Released::CatchUpAll);
        let later = state.held.split_off(&(clock + 1));
        for (pos, deliveries) in std::mem::replace(&mut state.held, later) {
            release(Released::At(Positioned { pos, deliveries }));
        }
        state.next = clock + 1;
        state.expected = state.expected.max(clock);
        state.missing_since = None;
        state.release_in_order(&mut release);
        state.note_missing(now);
    }

    /// The first position not yet handed on.
    pub fn next(&self) -> i64 {
        self.lock().next
    }
}

impl State {
    fn release_in_order(&mut self, release: &mut impl FnMut(Released)) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            let (pos, deliveries) = entry.remove_entry();
            release(Released::At(Positioned { pos, deliveries }));
            self.next += 1;
            self.missing_since = None;
        }
        self.expected = self.expected.max(self.next - 1);
    }

    /// Starts the timeout when `next` is missing (something after it arrived, or the clock is past
    /// it), keeps it running while it stays missing, clears it otherwise.
    fn note_missing(&mut self, now: Instant) {
        let missing = !self.held.is_empty() || self.expected >= self.next;
        if !missing {
            self.missing_since = None;
        } else if self.missing_since.is_none() {
            self.missing_since = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    fn at(pos: i64, user_id: i64) -> Positioned {
        let event = Event::Read { cursor: pos.to_string(), chat_id: 1, user_id, up_to: pos };
        Positioned { pos, deliveries: vec![Delivery { user_id, event: Arc::new(event), origin: None }] }
    }

    /// What was released, as positions (0 for a catch-up of everyone).
    fn run(f: impl FnOnce(&mut dyn FnMut(Released))) -> Vec<i64> {
        let mut out = Vec::new();
        f(&mut |r| {
            out.push(match r {
                Released::CatchUpAll => 0,
                Released::At(p) => p.pos,
            })
        });
        out
    }

    #[test]
    fn positions_out_of_order_are_released_in_order() {
        let seq = Sequencer::new(10, TIMEOUT);
        let now = Instant::now();
        assert_eq!(run(|r| seq.publish(vec![at(12, 1), at(13, 2)], now, r)), Vec::<i64>::new());
        assert_eq!(run(|r| seq.publish(vec![at(11, 1)], now, r)), vec![11, 12, 13]);
        assert_eq!(run(|r| seq.publish(vec![at(14, 3)], now, r)), vec![14]);
        assert_eq!(seq.next(), 15);
    }

    #[test]
    fn a_missing_position_holds_the_later_ones_until_its_timeout_then_everyone_catches_up() {
        let seq = Sequencer::new(0, TIMEOUT);
        let start = Instant::now();
        assert!(run(|r| seq.publish(vec![at(2, 1), at(3, 1)], start, r)).is_empty());
        let early = run(|r| {
            assert!(!seq.give_up_overdue(start + TIMEOUT / 2, r));
        });
        assert!(early.is_empty(), "nothing before the timeout");
        let released = run(|r| {
            assert!(seq.give_up_overdue(start + TIMEOUT, r));
        });
        assert_eq!(released, vec![0, 2, 3], "the catch-up before what was held");
        // The missing position arrives after all: handed on at once (connections that caught
        // up past it skip it), not held again.
        assert_eq!(run(|r| seq.publish(vec![at(1, 1)], start + TIMEOUT * 2, r)), vec![1]);
        assert_eq!(seq.next(), 4);
        assert!(run(|r| {
            seq.give_up_overdue(start + TIMEOUT * 10, r);
        })
        .is_empty());
    }

    #[test]
    fn the_timeout_runs_from_when_the_position_went_missing() {
        let seq = Sequencer::new(0, TIMEOUT);
        let start = Instant::now();
        seq.publish(vec![at(2, 1)], start, |_| {});
        // Filling 1 clears the wait; 4 arriving later starts a new one for 3.
        seq.publish(vec![at(1, 1)], start + TIMEOUT / 2, |_| {});
        seq.publish(vec![at(4, 1)], start + TIMEOUT, |_| {});
        assert!(!seq.give_up_overdue(start + TIMEOUT + TIMEOUT / 2, |_| {}));
        assert!(seq.give_up_overdue(start + TIMEOUT * 2, |_| {}));
        assert_eq!(seq.next(), 5);
    }

    #[test]
    fn positions_missing_at_the_end_are_found_through_the_clock() {
        let seq = Sequencer::new(5, TIMEOUT);
        let start = Instant::now();
        seq.expect(5, start);
        assert!(!seq.give_up_overdue(start + TIMEOUT * 3, |_| {}), "nothing is missing");
        // The store holds 6 and 7, which never arrive, and nothing comes after them.
        seq.expect(7, start);
        assert!(!seq.give_up_overdue(start + TIMEOUT / 2, |_| {}));
        assert_eq!(run(|r| assert!(seq.give_up_overdue(start + TIMEOUT, r))), vec![0]);
        assert_eq!(seq.next(), 8);
        // Arriving in time clears the wait instead.
        seq.expect(9, start + TIMEOUT);
        assert_eq!(run(|r| seq.publish(vec![at(9, 1), at(8, 2)], start + TIMEOUT, r)), vec![8, 9]);
        assert!(!seq.give_up_overdue(start + TIMEOUT * 5, |_| {}));
    }

    #[test]
    fn skipping_to_the_clock_catches_everyone_up_then_goes_on_past_it() {
        let seq = Sequencer::new(10, TIMEOUT);
        let now = Instant::now();
        seq.publish(vec![at(12, 1), at(14, 1), at(16, 1)], now, |_| {});
        // 11, 13 and 15 were published before this node could hear them; the clock is at 14.
        assert_eq!(run(|r| seq.skip_to(14, now, r)), vec![0, 12, 14]);
        assert_eq!(seq.next(), 15);
        assert!(run(|r| seq.publish(vec![at(13, 2)], now, r)) == vec![13], "late: handed on at once");
        assert_eq!(run(|r| seq.publish(vec![at(15, 2)], now, r)), vec![15, 16]);
        assert!(run(|r| seq.skip_to(16, now, r)).is_empty(), "nothing left to skip");
    }

    #[test]
    fn one_positions_deliveries_arriving_apart_are_released_together() {
        let seq = Sequencer::new(0, TIMEOUT);
        let now = Instant::now();
        seq.publish(vec![at(2, 1)], now, |_| {});
        seq.publish(vec![at(2, 2)], now, |_| {});
        let mut users = Vec::new();
        seq.publish(vec![at(1, 3)], now, |r| {
            if let Released::At(p) = r {
                users.extend(p.deliveries.iter().map(|d| (p.pos, d.user_id)));
            }
        });
        assert_eq!(users, vec![(1, 3), (2, 1), (2, 2)]);
    }
}
