//! Lanes: which messages of one partition may be applied now, and by whom.
//!
//! Pure bookkeeping, no I/O. Messages are routed to lanes by their lane label (the key, the
//! whole partition, or a user function's answer, see [`crate::config::PartitionBy`]). A lane
//! is a FIFO: its messages are handed out in arrival (position) order, and never to two
//! processors at once: a lane is *busy* from [`Lanes::take`] until [`Lanes::complete`],
//! [`Lanes::put_back`] or [`Lanes::stop`]. So one key is never applied by two processors at
//! once and its events apply in order, while other lanes of the partition go on.
//!
//! States of a lane: *ready* (queued messages, not busy, not blocked) → *busy* → ready again;
//! *waiting* (a failed message waits for its retry time, then ready); *stopped* (the failure
//! policy stopped the key: it holds its messages until [`Lanes::unstop`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

/// Why a lane is not handed out although it has messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// Its head message failed; retry at this instant.
    RetryAt(Instant),
    /// Stopped by the failure policy until an operator resumes it.
    Stopped,
}

#[derive(Debug)]
struct Lane<M> {
    queue: VecDeque<M>,
    busy: bool,
    block: Option<Block>,
    /// The next take hands out this lane's head message alone (after a failed batch: applying
    /// one message at a time finds the culprit).
    solo: bool,
    /// Already in the ready queue.
    queued_ready: bool,
}

impl<M> Default for Lane<M> {
    fn default() -> Self {
        Lane {
            queue: VecDeque::new(),
            busy: false,
            block: None,
            solo: false,
            queued_ready: false,
        }
    }
}

/// The lanes of one partition.
#[derive(Debug)]
pub(crate) struct Lanes<M> {
    lanes: HashMap<String, Lane<M>>,
    /// Lanes that may be handed out, oldest first (fairness between keys).
    ready: VecDeque<String>,
    /// Lanes waiting for a retry time (so waking them does not scan every lane).
    waiting: HashSet<String>,
    /// Messages queued or handed out and not completed.
    in_flight: usize,
    /// Messages handed out and not yet returned.
    handed_out: usize,
    busy: usize,
}

impl<M> Default for Lanes<M> {
    fn default() -> Self {
        Lanes {
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            waiting: HashSet::new(),
            in_flight: 0,
            handed_out: 0,
            busy: 0,
        }
    }
}

/// Messages handed to one processor: whole runs of lanes, each in order.
#[derive(Debug)]
pub(crate) struct Taken<M> {
    /// (lane, its messages in order).
    pub(crate) lanes: Vec<(String, Vec<M>)>,
}

impl<M> Lanes<M> {
    /// Queues `message` at the end of `lane`.
    pub(crate) fn push(&mut self, lane: &str, message: M) {
        self.in_flight += 1;
        let entry = match self.lanes.get_mut(lane) {
            Some(entry) => entry,
            None => self.lanes.entry(lane.to_owned()).or_default(),
        };
        entry.queue.push_back(message);
        if !entry.busy && entry.block.is_none() && !entry.queued_ready {
            entry.queued_ready = true;
            self.ready.push_back(lane.to_owned());
        }
    }

    /// Messages received and not yet completed (queued, busy, waiting or stopped).
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Messages waiting in lanes (queued, waiting for a retry, or stopped).
    pub(crate) fn queued(&self) -> usize {
        self.in_flight.saturating_sub(self.handed_out)
    }

    /// Lanes handed out and not yet returned.
    pub(crate) fn busy(&self) -> usize {
        self.busy
    }

    /// Moves lanes whose retry time has come back to ready; returns the earliest retry time
    /// still ahead.
    pub(crate) fn wake_due(&mut self, now: Instant) -> Option<Instant> {
        if self.waiting.is_empty() {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut woken = Vec::new();
        for name in &self.waiting {
            let Some(lane) = self.lanes.get_mut(name) else {
                woken.push(name.clone());
                continue;
            };
            match lane.block {
                Some(Block::RetryAt(at)) if at > now => {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
                Some(Block::RetryAt(_)) => {
                    lane.block = None;
                    woken.push(name.clone());
                    if !lane.busy && !lane.queue.is_empty() && !lane.queued_ready {
                        lane.queued_ready = true;
                        self.ready.push_back(name.clone());
                    }
                }
                _ => woken.push(name.clone()),
            }
        }
        for name in woken {
            self.waiting.remove(&name);
        }
        next
    }

    /// How many lanes may be handed out now.
    pub(crate) fn ready_lanes(&self) -> usize {
        self.ready.len()
    }

    /// Hands out up to `max_messages` messages from at most `max_lanes` ready lanes, marking
    /// them busy. A lane marked solo is handed out alone, with its head message only.
    pub(crate) fn take(&mut self, max_messages: usize, max_lanes: usize) -> Option<Taken<M>> {
        let mut taken = Vec::new();
        let mut count = 0;
        while count < max_messages.max(1) && taken.len() < max_lanes.max(1) {
            let Some(name) = self.ready.front() else {
                break;
            };
            let lane = self.lanes.get_mut(name).expect("a ready lane exists");
            if lane.solo && !taken.is_empty() {
                break; // a solo lane goes alone, in the next take
            }
            let name = self.ready.pop_front().expect("front exists");
            lane.queued_ready = false;
            lane.busy = true;
            self.busy += 1;
            let solo = lane.solo;
            let n = if solo {
                1
            } else {
                (max_messages.max(1) - count).min(lane.queue.len())
            };
            let messages: Vec<M> = lane.queue.drain(..n).collect();
            count += messages.len();
            self.handed_out += messages.len();
            taken.push((name, messages));
            if solo {
                return Some(Taken { lanes: taken });
            }
        }
        (!taken.is_empty()).then_some(Taken { lanes: taken })
    }

    fn release(&mut self, lane: &str) -> Option<&mut Lane<M>> {
        let entry = self.lanes.get_mut(lane)?;
        if entry.busy {
            entry.busy = false;
            self.busy -= 1;
        }
        Some(entry)
    }

    fn requeue_if_ready(&mut self, lane: &str) {
        let Some(entry) = self.lanes.get_mut(lane) else {
            return;
        };
        if entry.queue.is_empty() && entry.block.is_none() && !entry.busy {
            self.lanes.remove(lane); // nothing left: forget the lane (bounded memory)
        } else if !entry.busy && entry.block.is_none() && !entry.queued_ready {
            entry.queued_ready = true;
            self.ready.push_back(lane.to_owned());
        }
    }

    /// `done` messages of `lane` were applied (or settled): the lane is free again.
    pub(crate) fn complete(&mut self, lane: &str, done: usize) {
        // Saturating: a fenced partition's lanes were dropped while a unit was out.
        self.in_flight = self.in_flight.saturating_sub(done);
        self.handed_out = self.handed_out.saturating_sub(done);
        if let Some(entry) = self.release(lane) {
            entry.solo = false;
        }
        self.requeue_if_ready(lane);
    }

    /// The handed-out `messages` of `lane` go back to its front, in order; the lane is handed
    /// out again at `retry_at` (or at once when `None`), alone when `solo`.
    pub(crate) fn put_back(
        &mut self,
        lane: &str,
        messages: Vec<M>,
        retry_at: Option<Instant>,
        solo: bool,
    ) {
        self.handed_out = self.handed_out.saturating_sub(messages.len());
        let Some(entry) = self.release(lane) else {
            return;
        };
        for message in messages.into_iter().rev() {
            entry.queue.push_front(message);
        }
        entry.solo = solo;
        if let Some(at) = retry_at {
            entry.block = Some(Block::RetryAt(at));
            self.waiting.insert(lane.to_owned());
        }
        self.requeue_if_ready(lane);
    }

    /// Stops `lane` holding `messages` at its front: nothing of it is handed out until
    /// [`Lanes::unstop`]. Also used for a lane found stopped before any message arrived.
    pub(crate) fn stop(&mut self, lane: &str, messages: Vec<M>) {
        self.handed_out = self.handed_out.saturating_sub(messages.len());
        let entry = match self.lanes.contains_key(lane) {
            true => self.release(lane).expect("exists"),
            false => self.lanes.entry(lane.to_owned()).or_default(),
        };
        for message in messages.into_iter().rev() {
            entry.queue.push_front(message);
        }
        entry.block = Some(Block::Stopped);
        entry.solo = true;
        if entry.queued_ready {
            entry.queued_ready = false;
            self.ready.retain(|l| l != lane);
        }
    }

    /// Whether `lane` is stopped.
    #[cfg(test)]
    pub(crate) fn is_stopped(&self, lane: &str) -> bool {
        self.lanes
            .get(lane)
            .is_some_and(|l| l.block == Some(Block::Stopped))
    }

    /// The stopped lanes.
    pub(crate) fn stopped(&self) -> Vec<String> {
        self.lanes
            .iter()
            .filter(|(_, l)| l.block == Some(Block::Stopped))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Lets a stopped lane go on (its head message is tried again, alone).
    pub(crate) fn unstop(&mut self, lane: &str) {
        if let Some(entry) = self.lanes.get_mut(lane) {
            if entry.block == Some(Block::Stopped) {
                entry.block = None;
            }
        }
        self.requeue_if_ready(lane);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lanes(messages: &[(&str, u32)]) -> Lanes<u32> {
        let mut lanes = Lanes::default();
        for (lane, m) in messages {
            lanes.push(lane, *m);
        }
        lanes
    }

    fn flat(taken: &Taken<u32>) -> Vec<(String, Vec<u32>)> {
        taken.lanes.clone()
    }

    #[test]
    fn a_busy_lane_is_never_handed_out_twice_and_keeps_its_order() {
        let mut l = lanes(&[("a", 1), ("b", 2), ("a", 3)]);
        let first = l.take(1, 1).unwrap();
        assert_eq!(flat(&first), vec![("a".into(), vec![1])]);
        l.push("a", 4);
        let second = l.take(10, 10).unwrap();
        assert_eq!(flat(&second), vec![("b".into(), vec![2])], "a is busy");
        assert!(l.take(10, 10).is_none());
        l.complete("a", 1);
        let third = l.take(10, 10).unwrap();
        assert_eq!(flat(&third), vec![("a".into(), vec![3, 4])]);
        assert_eq!(l.in_flight(), 3);
    }

    #[test]
    fn takes_are_bounded_in_messages_and_lanes_and_fair_between_lanes() {
        let mut l = lanes(&[("a", 1), ("a", 2), ("a", 3), ("b", 4), ("c", 5)]);
        let t = l.take(2, 5).unwrap();
        assert_eq!(flat(&t), vec![("a".into(), vec![1, 2])]);
        let t = l.take(10, 1).unwrap();
        assert_eq!(flat(&t), vec![("b".into(), vec![4])]);
        let t = l.take(10, 5).unwrap();
        assert_eq!(
            flat(&t),
            vec![("c".into(), vec![5])],
            "a is busy with 3 still queued"
        );
    }

    #[test]
    fn a_failed_lane_waits_for_its_retry_alone_while_others_flow() {
        let now = Instant::now();
        let mut l = lanes(&[("a", 1), ("a", 2), ("b", 3)]);
        let t = l.take(10, 10).unwrap();
        assert_eq!(t.lanes.len(), 2);
        // The batch failed: both lanes go back, solo, no delay.
        l.put_back("a", vec![1, 2], None, true);
        l.put_back("b", vec![3], None, true);
        let t = l.take(10, 10).unwrap();
        assert_eq!(
            flat(&t),
            vec![("a".into(), vec![1])],
            "a solo lane goes alone"
        );
        let t = l.take(10, 10).unwrap();
        assert_eq!(flat(&t), vec![("b".into(), vec![3])]);
        // a's message fails alone: it waits, b's next message flows.
        l.put_back("a", vec![1], Some(now + Duration::from_secs(1)), true);
        l.complete("b", 1);
        l.push("b", 4);
        let t = l.take(10, 10).unwrap();
        assert_eq!(flat(&t), vec![("b".into(), vec![4])]);
        assert_eq!(l.wake_due(now), Some(now + Duration::from_secs(1)));
        assert_eq!(l.ready_lanes(), 0);
        assert_eq!(l.wake_due(now + Duration::from_secs(1)), None);
        let t = l.take(10, 10).unwrap();
        assert_eq!(
            flat(&t),
            vec![("a".into(), vec![1])],
            "the retry goes alone"
        );
        l.complete("a", 1);
        let t = l.take(10, 10).unwrap();
        assert_eq!(flat(&t), vec![("a".into(), vec![2])]);
    }

    #[test]
    fn a_stopped_lane_holds_its_messages_until_unstopped() {
        let mut l = lanes(&[("a", 1), ("b", 2)]);
        let t = l.take(1, 1).unwrap();
        assert_eq!(flat(&t), vec![("a".into(), vec![1])]);
        l.stop("a", vec![1]);
        l.push("a", 3);
        assert!(l.is_stopped("a"));
        assert_eq!(flat(&l.take(10, 10).unwrap()), vec![("b".into(), vec![2])]);
        assert!(l.take(10, 10).is_none());
        assert_eq!(l.in_flight(), 3);
        assert_eq!(l.queued(), 2, "b's message is handed out");
        l.unstop("a");
        assert_eq!(flat(&l.take(10, 10).unwrap()), vec![("a".into(), vec![1])]);
        // A lane known stopped before its first message holds it too.
        l.stop("z", Vec::new());
        l.push("z", 9);
        assert!(l.take(10, 10).is_none());
    }

    #[test]
    fn empty_lanes_are_forgotten() {
        let mut l = lanes(&[("a", 1)]);
        let _ = l.take(10, 10);
        l.complete("a", 1);
        assert!(l.lanes.is_empty());
        assert_eq!(l.in_flight(), 0);
        assert_eq!(l.busy(), 0);
    }
}
