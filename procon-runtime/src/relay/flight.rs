//! What the pipelined relay holds between the outbox and the broker, and every decision about
//! it. Pure: the loop in `rounds` performs the I/O this state asks for.
//!
//! The rules:
//! - **A bounded window per key.** At most `per_key` rows of a key are in flight, handed to
//!   the producer in id order. With `per_key = 1` a key's next row goes out only after the
//!   previous one was acknowledged or set aside, whatever the transport does. A larger window
//!   is used only with a transport that fails every later record of a key once one fails (the
//!   Kafka publisher does, see `transport::kafka`): then a failed row's successors fail too
//!   and are read again behind it. Should a successor be acknowledged anyway, it is deleted
//!   (it is on the broker) and the breach is reported.
//! - **Bounded.** Rows held (in flight or waiting behind their key) stay within a row and a
//!   byte budget; a read asks for the rows that fit and stops streaming at the byte budget.
//! - **A cursor, checked.** After the first read from the head of the outbox, rows are read
//!   after the highest id read so far, so in-flight rows are not read again. A transaction
//!   that commits late can leave a row *below* the cursor. Such a row's transaction was still
//!   running at the previous read, so its txid is at least that read's snapshot xmin (the
//!   *horizon*). Each read therefore also counts the rows at or below the cursor written at or
//!   after the horizon (a few recent rows, through an index); when the database has more of
//!   them than the relay knows of, the relay reads again from the head (skipping rows it
//!   holds), so the late row is published before any later row of its key.
//! - **Failures stay with their key.** A failed row and every later row of its key wait for
//!   the key's backoff, then are read again; other keys go on. A row the broker *rejects*
//!   (too large, not allowed...) `park_after` times is parked: moved to `procon_outbox_parked`,
//!   after which the database hides its key's later rows until an operator retries or drops
//!   it. Outages and timeouts are retried without limit.

use std::collections::VecDeque;
use std::time::Instant;

use super::source::OutboxRow;
use crate::backoff::{Backoff, BackoffConfig};

/// A (topic, key): the unit of ordering.
pub(crate) type KeyId = (String, String);

/// The relay's per-row maps (looked up several times per row: SipHash showed in profiles).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The budgets of a relay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Rows held at most (in flight and waiting behind their key).
    pub(crate) max_rows: usize,
    /// Payload bytes held at most.
    pub(crate) max_bytes: usize,
    /// Largest number of rows one read asks for.
    pub(crate) batch_size: usize,
    /// Rejections of one row before it is parked.
    pub(crate) park_after: u32,
    /// Rows of one key in flight at most.
    pub(crate) per_key: usize,
    /// Retry delays of a key whose row failed.
    pub(crate) backoff: BackoffConfig,
}

/// The next read: rows after `after` (from the head when `None`), at most `limit`; rows at
/// or below `after` written at or after `horizon` are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    pub(crate) after: Option<i64>,
    pub(crate) horizon: Option<i64>,
    pub(crate) limit: usize,
    /// The read stops after the row that reaches this many bytes.
    pub(crate) max_bytes: usize,
}

/// What a failed delivery leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// An answer for a row already handed back (its key failed before): nothing to do.
    Ignore,
    /// Move the row to the parked table (then call [`Flight::parked`]).
    Park {
        /// Attempts made.
        attempts: u32,
    },
    /// The key waits until `at`, then its rows are read again.
    Retry {
        /// When.
        at: Instant,
    },
}

#[derive(Debug)]
struct KeyState {
    /// The shard the key belongs to (see `lease`).
    shard: i32,
    /// Rows handed to the producer, in id order: (id, bytes).
    sending: VecDeque<(i64, usize)>,
    /// Rows read, waiting for `sending` to finish.
    waiting: VecDeque<OutboxRow>,
    /// Set while the key backs off after a failure.
    failure: Option<KeyFailure>,
    /// Ids of this key's rows read while it backs off (kept in the outbox, not in memory).
    skipped: Vec<i64>,
}

#[derive(Debug)]
struct KeyFailure {
    attempts: u32,
    retry_at: Instant,
    /// The skipped rows were handed back to the database (to be read again).
    released: bool,
    backoff: Backoff,
}

/// The relay's in-memory state for one leadership session.
#[derive(Debug)]
pub(crate) struct Flight {
    limits: Limits,
    cursor: Option<i64>,
    /// The previous read's snapshot xmin.
    horizon: Option<i64>,
    /// Ids read and still in the outbox as far as this relay knows, with their txids.
    known: FastMap<i64, i64>,
    keys: FastMap<KeyId, KeyState>,
    held_rows: usize,
    held_bytes: usize,
    /// Typical row size lately (follows the largest row of each read, decays slowly), so a
    /// read asks for about as many rows as the byte budget takes: the server then does not
    /// send rows the relay would drop.
    row_bytes: usize,
    deletable: Vec<i64>,
    last_idle_restart: Option<Instant>,
}

/// How often an idle relay reads from the head of the outbox (see
/// [`Flight::restart_when_idle`]).
pub(crate) const IDLE_RESTART_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Bytes a row holds in memory (payload and key dominate).
pub(crate) fn row_bytes(row: &OutboxRow) -> usize {
    row.payload.len() + row.key.len() + row.topic.len() + 128
}

impl Flight {
    pub(crate) fn new(limits: Limits) -> Self {
        Flight {
            limits,
            cursor: None,
            horizon: None,
            known: FastMap::default(),
            keys: FastMap::default(),
            held_rows: 0,
            held_bytes: 0,
            row_bytes: 512,
            deletable: Vec::new(),
            last_idle_restart: None,
        }
    }

    /// The read to make now, or `None` when the budgets are used up.
    pub(crate) fn next_read(&self) -> Option<Read> {
        let rows = self.limits.max_rows.saturating_sub(self.held_rows);
        let bytes = self.limits.max_bytes.saturating_sub(self.held_bytes);
        // While rows are held, read only once a quarter of a budget is free: a read per freed
        // row (10 KB rows against a full byte budget) made every read a one-row statement and
        // the drain five times slower.
        let starved = rows < (self.limits.batch_size / 4).max(1)
            || bytes < (self.limits.max_bytes / 4).max(1);
        if rows == 0 || (self.held_rows > 0 && starved) {
            return None;
        }
        let by_bytes = (bytes / self.row_bytes.max(1)).max(1);
        Some(Read {
            after: self.cursor,
            horizon: self.horizon,
            limit: rows.min(self.limits.batch_size).min(by_bytes),
            // A row larger than the whole budget is still read, alone, when nothing is held.
            max_bytes: bytes.max(1),
        })
    }

    /// Takes in what a read returned: `rows` in id order; `below`, the number of rows the
    /// database has at or below the read's cursor written at or after its horizon; and
    /// `horizon`, the read's snapshot xmin. Returns the rows to hand to the producer now.
    pub(crate) fn admit(
        &mut self,
        read: Read,
        rows: Vec<OutboxRow>,
        below: i64,
        horizon: i64,
    ) -> Vec<OutboxRow> {
        self.horizon = Some(horizon);
        if let (Some(cursor), Some(since)) = (read.after, read.horizon) {
            let known_below = self
                .known
                .iter()
                .filter(|&(&id, &txid)| id <= cursor && txid >= since)
                .count();
            if below > known_below as i64 {
                // A row committed late below the cursor (or an operator put one back): read
                // again from the head before anything read after it is sent.
                self.cursor = None;
                return Vec::new();
            }
        }
        let mut send = Vec::new();
        if let Some(largest) = rows.iter().map(row_bytes).max() {
            self.row_bytes = largest.max(self.row_bytes * 7 / 8);
        }
        for row in rows {
            self.cursor = Some(self.cursor.map_or(row.id, |c| c.max(row.id)));
            if self.known.insert(row.id, row.txid).is_some() {
                continue; // held already (a read from the head passes over held rows)
            }
            let bytes = row_bytes(&row);
            let key = (row.topic.clone(), row.key.clone());
            let shard = row.shard;
            let state = self.keys.entry(key).or_insert_with(|| KeyState {
                shard,
                sending: VecDeque::new(),
                waiting: VecDeque::new(),
                failure: None,
                skipped: Vec::new(),
            });
            // Blocked until the backoff is *released* (its rows handed back and read again
            // from the head), not merely over: a row read after the backoff ended but before
            // the release would overtake the key's earlier rows, which are still held back.
            if state.failure.as_ref().is_some_and(|f| !f.released) {
                state.skipped.push(row.id);
            } else if state.sending.len() >= self.limits.per_key || !state.waiting.is_empty() {
                self.held_rows += 1;
                self.held_bytes += bytes;
                state.waiting.push_back(row);
            } else {
                self.held_rows += 1;
                self.held_bytes += bytes;
                state.sending.push_back((row.id, bytes));
                send.push(row);
            }
        }
        send
    }

    /// True while row `id` of `key` is to be sent: a row handed back since it was planned (an
    /// earlier row of its key was refused on the spot) must not be sent any more.
    pub(crate) fn still_sending(&self, key: &KeyId, id: i64) -> bool {
        self.keys
            .get(key)
            .is_some_and(|state| state.sending.iter().any(|(sent, _)| *sent == id))
    }

    /// True when row `id` of `key` is in flight behind an earlier row of its key: its answer
    /// must wait for that row's answer.
    pub(crate) fn answered_too_early(&self, key: &KeyId, id: i64) -> bool {
        self.keys.get(key).is_some_and(|state| {
            state
                .sending
                .iter()
                .position(|(sent, _)| *sent == id)
                .is_some_and(|at| at > 0)
        })
    }

    /// Row `id` of `key` was acknowledged: it may be deleted. Returns the key's next rows to
    /// send (those its window now has room for).
    pub(crate) fn delivered(&mut self, id: i64, key: &KeyId) -> Vec<OutboxRow> {
        self.deletable.push(id);
        let per_key = self.limits.per_key;
        let Some(state) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        match state.sending.iter().position(|(sent, _)| *sent == id) {
            Some(at) => {
                if at > 0 {
                    tracing::error!(
                        outbox_id = id,
                        topic = key.0,
                        key = key.1,
                        "the transport acknowledged a row before an earlier row of its key"
                    );
                }
                if let Some((_, bytes)) = state.sending.remove(at) {
                    self.held_rows -= 1;
                    self.held_bytes -= bytes;
                }
            }
            None => {
                // A row handed back after an earlier row of its key failed, delivered anyway:
                // it is on the broker, so it is deleted; the transport broke its contract.
                tracing::error!(
                    outbox_id = id,
                    topic = key.0,
                    key = key.1,
                    "a row was acknowledged after an earlier row of its key failed; \
                     consumers may see it before that row"
                );
                state.skipped.retain(|skipped| *skipped != id);
                return Vec::new();
            }
        }
        if state.failure.as_ref().is_some_and(|f| !f.released) {
            return Vec::new();
        }
        state.failure = None;
        let mut next = Vec::new();
        while state.sending.len() < per_key {
            let Some(row) = state.waiting.pop_front() else {
                break;
            };
            state.sending.push_back((row.id, row_bytes(&row)));
            next.push(row);
        }
        if state.sending.is_empty() && state.waiting.is_empty() && state.skipped.is_empty() {
            self.keys.remove(key);
        }
        next
    }

    /// `row` failed (`rejected`: the broker refused the record itself). The key's waiting
    /// rows are handed back to the outbox (they are read again after the key's backoff).
    pub(crate) fn failed(
        &mut self,
        id: i64,
        key: &KeyId,
        rejected: bool,
        now: Instant,
    ) -> AfterFailure {
        let limits = self.limits;
        let Some(state) = self.keys.get_mut(key) else {
            return AfterFailure::Ignore;
        };
        let Some(at) = state.sending.iter().position(|(sent, _)| *sent == id) else {
            return AfterFailure::Ignore;
        };
        // The failed row and every later row of the key in flight are handed back: the
        // later ones fail too (or, breaking the transport's contract, are acknowledged).
        for (sent, bytes) in state.sending.drain(at..) {
            self.held_rows -= 1;
            self.held_bytes -= bytes;
            state.skipped.push(sent);
        }
        for row in state.waiting.drain(..) {
            self.held_rows -= 1;
            self.held_bytes -= row_bytes(&row);
            state.skipped.push(row.id);
        }
        let failure = state.failure.get_or_insert_with(|| KeyFailure {
            attempts: 0,
            retry_at: now,
            released: false,
            backoff: Backoff::new(limits.backoff),
        });
        failure.attempts += 1;
        if rejected && failure.attempts >= limits.park_after {
            return AfterFailure::Park {
                attempts: failure.attempts,
            };
        }
        failure.retry_at = now + failure.backoff.next_delay();
        failure.released = false;
        AfterFailure::Retry {
            at: failure.retry_at,
        }
    }

    /// The read took in every row of its span up to `span_end` (the rest of the span belongs
    /// to other relays' shards, or to parked keys): the cursor moves past the span.
    pub(crate) fn spanned(&mut self, span_end: i64) {
        self.cursor = Some(self.cursor.map_or(span_end, |c| c.max(span_end)));
    }

    /// Row `id` of `key` was moved to the parked table: the database now hides the key's
    /// later rows, so this relay forgets them.
    pub(crate) fn parked(&mut self, id: i64, key: &KeyId) {
        self.known.remove(&id);
        if let Some(state) = self.keys.remove(key) {
            for skipped in state.skipped {
                self.known.remove(&skipped);
            }
        }
    }

    /// Hands back the rows of keys whose backoff is over, so the next read (from the head)
    /// picks them up. Returns true when something was handed back.
    pub(crate) fn release_due(&mut self, now: Instant) -> bool {
        let mut released = false;
        for state in self.keys.values_mut() {
            let Some(failure) = state.failure.as_mut() else {
                continue;
            };
            if failure.released || now < failure.retry_at {
                continue;
            }
            failure.released = true;
            for id in state.skipped.drain(..) {
                self.known.remove(&id);
            }
            released = true;
        }
        if released {
            self.cursor = None;
        }
        released
    }

    /// The next read starts from the head of the outbox (shards were gained: their rows lie
    /// below the cursor, written long ago).
    pub(crate) fn restart_from_head(&mut self) {
        self.cursor = None;
    }

    /// Forgets everything of the keys of `shards` (their leases were lost): nothing of them is
    /// sent any more; answers still coming for them change nothing.
    pub(crate) fn forget_shards(&mut self, shards: &[i32]) {
        if shards.is_empty() {
            return;
        }
        let lost: Vec<KeyId> = self
            .keys
            .iter()
            .filter(|(_, state)| shards.contains(&state.shard))
            .map(|(key, _)| key.clone())
            .collect();
        for key in lost {
            let Some(state) = self.keys.remove(&key) else {
                continue;
            };
            for (id, bytes) in state.sending {
                self.held_rows -= 1;
                self.held_bytes -= bytes;
                self.known.remove(&id);
            }
            for row in state.waiting {
                self.held_rows -= 1;
                self.held_bytes -= row_bytes(&row);
                self.known.remove(&row.id);
            }
            for id in state.skipped {
                self.known.remove(&id);
            }
        }
    }

    /// With nothing held, and at most every `IDLE_RESTART_EVERY`, the next read starts from
    /// the head of the outbox: the same rows as after the cursor, plus any that reappeared
    /// below it without a recent txid, so an idle relay heals itself without relying on the
    /// horizon alone. Not more often: a read from the head walks the index entries of every
    /// row deleted since the last vacuum.
    pub(crate) fn restart_when_idle(&mut self, now: Instant) {
        let idle = self.held_rows == 0 && self.keys.is_empty() && self.deletable.is_empty();
        let due = self
            .last_idle_restart
            .is_none_or(|at| now.saturating_duration_since(at) >= IDLE_RESTART_EVERY);
        if idle && due {
            self.cursor = None;
            self.last_idle_restart = Some(now);
        }
    }

    /// When the earliest backoff ends, if a key backs off.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.keys
            .values()
            .filter_map(|s| s.failure.as_ref())
            .filter(|f| !f.released)
            .map(|f| f.retry_at)
            .min()
    }

    /// Acknowledged rows not deleted yet (taken: the caller deletes them, then calls
    /// [`Flight::deleted`]).
    pub(crate) fn take_deletable(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.deletable)
    }

    /// Acknowledged rows waiting to be deleted.
    pub(crate) fn deletable(&self) -> usize {
        self.deletable.len()
    }

    /// `ids` are gone from the outbox.
    pub(crate) fn deleted(&mut self, ids: &[i64]) {
        for id in ids {
            self.known.remove(id);
        }
    }

    /// Rows handed to the producer and not answered yet.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.keys.values().map(|s| s.sending.len()).sum()
    }

    /// Rows and bytes held now.
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.held_rows, self.held_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            max_rows: 100,
            max_bytes: 1 << 20,
            batch_size: 10,
            park_after: 2,
            per_key: 1,
            backoff: BackoffConfig {
                initial: Duration::from_millis(100),
                max: Duration::from_millis(100),
            },
        }
    }

    fn row(id: i64, key: &str) -> OutboxRow {
        OutboxRow {
            raw_key: None,
            id,
            event_id: format!("e{id}"),
            topic: "t".into(),
            key: key.into(),
            event_name: "x.created".into(),
            entity: "x".into(),
            payload: b"{}".to_vec(),
            traceparent: None,
            headers: Vec::new(),
            txid: id,
            shard: 0,
            avro_schema: None,
        }
    }

    fn key(k: &str) -> KeyId {
        ("t".into(), k.into())
    }

    fn ids(rows: &[OutboxRow]) -> Vec<i64> {
        rows.iter().map(|r| r.id).collect()
    }

    #[test]
    fn one_row_per_key_is_in_flight_and_the_next_follows_its_ack() {
        let mut f = Flight::new(limits());
        let read = f.next_read().unwrap();
        assert_eq!(read.after, None);
        let send = f.admit(read, vec![row(1, "a"), row(2, "b"), row(3, "a")], 0, 0);
        assert_eq!(ids(&send), vec![1, 2]);
        assert_eq!(f.in_flight(), 2);
        assert_eq!(ids(&f.delivered(1, &key("a"))), vec![3]);
        assert!(f.delivered(2, &key("b")).is_empty());
        assert_eq!(f.take_deletable(), vec![1, 2]);
        assert_eq!(f.next_read().unwrap().after, Some(3));
    }

    #[test]
    fn a_failure_holds_back_every_later_row_of_its_key_only() {
        let mut f = Flight::new(limits());
        let now = Instant::now();
        let read = f.next_read().unwrap();
        f.admit(read, vec![row(1, "a"), row(2, "a"), row(3, "b")], 0, 0);
        let after = f.failed(1, &key("a"), false, now);
        assert!(matches!(after, AfterFailure::Retry { .. }));
        assert_eq!(f.held().0, 1, "row 2 was handed back, row 3 is in flight");
        // A later row of the key read during the backoff is not sent.
        let read = f.next_read().unwrap();
        assert!(f.admit(read, vec![row(4, "a"), row(5, "c")], 3, 0).len() == 1);
        assert!(f.delivered(3, &key("b")).is_empty());
        // After the backoff, everything of the key is read again from the head.
        let later = now + Duration::from_secs(1);
        assert!(f.release_due(later));
        let read = f.next_read().unwrap();
        assert_eq!(read.after, None);
        let send = f.admit(
            read,
            vec![
                row(1, "a"),
                row(2, "a"),
                row(3, "b"),
                row(4, "a"),
                row(5, "c"),
            ],
            0,
            0,
        );
        assert_eq!(
            ids(&send),
            vec![1],
            "row 3 is held (acknowledged), 5 is in flight"
        );
    }

    #[test]
    fn a_rejected_row_is_parked_after_the_limit_and_its_key_forgotten() {
        let mut f = Flight::new(limits());
        let now = Instant::now();
        let read = f.next_read().unwrap();
        f.admit(read, vec![row(1, "a"), row(2, "a")], 0, 0);
        assert!(matches!(
            f.failed(1, &key("a"), true, now),
            AfterFailure::Retry { .. }
        ));
        let later = now + Duration::from_secs(1);
        f.release_due(later);
        let read = f.next_read().unwrap();
        let send = f.admit(read, vec![row(1, "a"), row(2, "a")], 0, 0);
        assert_eq!(ids(&send), vec![1]);
        assert_eq!(
            f.failed(1, &key("a"), true, later),
            AfterFailure::Park { attempts: 2 }
        );
        f.parked(1, &key("a"));
        // The database hides the key now: nothing of it is known or held.
        assert_eq!(f.held(), (0, 0));
        let read = f.next_read().unwrap();
        assert!(f.admit(read, Vec::new(), 0, 0).is_empty());
    }

    #[test]
    fn outages_are_never_parked() {
        let mut f = Flight::new(limits());
        let mut now = Instant::now();
        for _ in 0..10 {
            let read = f.next_read().unwrap();
            let send = f.admit(read, vec![row(1, "a")], 0, 0);
            assert_eq!(ids(&send), vec![1]);
            assert!(matches!(
                f.failed(1, &key("a"), false, now),
                AfterFailure::Retry { .. }
            ));
            now += Duration::from_secs(1);
            f.release_due(now);
        }
    }

    #[test]
    fn a_row_committed_late_below_the_cursor_sends_the_read_back_to_the_head() {
        let mut f = Flight::new(limits());
        let read = f.next_read().unwrap();
        f.admit(read, vec![row(1, "a"), row(3, "c")], 0, 0);
        // Row 2 (key b) commits late; row 4 (key b) follows it. The database now counts 3
        // rows at or below the cursor 3, the relay knows 2.
        let read = f.next_read().unwrap();
        assert_eq!(read.after, Some(3));
        let send = f.admit(read, vec![row(4, "b")], 3, 0);
        assert!(send.is_empty(), "row 4 must not overtake row 2");
        let read = f.next_read().unwrap();
        assert_eq!(read.after, None);
        let send = f.admit(
            read,
            vec![row(1, "a"), row(2, "b"), row(3, "c"), row(4, "b")],
            0,
            0,
        );
        assert_eq!(
            ids(&send),
            vec![2],
            "1 and 3 are in flight already, 4 waits behind 2"
        );
        assert_eq!(ids(&f.delivered(2, &key("b"))), vec![4]);
    }

    #[test]
    fn only_rows_written_since_the_horizon_are_counted_below_the_cursor() {
        let mut f = Flight::new(limits());
        let read = f.next_read().unwrap();
        // Rows 1 and 2 (txids 1 and 2) are held; the read's snapshot xmin is 2.
        f.admit(read, vec![row(1, "a"), row(2, "b")], 0, 2);
        let read = f.next_read().unwrap();
        assert_eq!(read.horizon, Some(2));
        // The database counts one row at or below 2 with txid >= 2: row 2, known.
        assert_eq!(ids(&f.admit(read, vec![row(3, "c")], 1, 3)), vec![3]);
        // Now two rows written since txid 3 sit at or below 3: row 3 and an unknown one.
        let read = f.next_read().unwrap();
        assert!(f.admit(read, vec![row(4, "d")], 2, 3).is_empty());
        assert_eq!(f.next_read().unwrap().after, None);
    }

    #[test]
    fn an_answer_behind_an_unanswered_row_of_its_key_is_too_early() {
        let mut f = Flight::new(Limits {
            per_key: 2,
            ..limits()
        });
        let read = f.next_read().unwrap();
        f.admit(read, vec![row(1, "a"), row(2, "a"), row(3, "b")], 0, 0);
        assert!(f.answered_too_early(&key("a"), 2));
        assert!(!f.answered_too_early(&key("a"), 1));
        assert!(!f.answered_too_early(&key("b"), 3));
        f.delivered(1, &key("a"));
        assert!(!f.answered_too_early(&key("a"), 2));
    }

    #[test]
    fn a_lost_shard_is_forgotten_and_other_shards_go_on() {
        let mut f = Flight::new(limits());
        let mut other = row(2, "b");
        other.shard = 1;
        let read = f.next_read().unwrap();
        f.admit(read, vec![row(1, "a"), other, row(3, "a")], 0, 0);
        f.forget_shards(&[0]);
        assert_eq!(f.held().0, 1, "only shard 1's row is held");
        assert!(
            f.delivered(1, &key("a")).is_empty(),
            "a late answer changes nothing"
        );
        assert!(!f.still_sending(&key("a"), 3));
        f.restart_from_head();
        assert_eq!(f.next_read().unwrap().after, None);
    }

    #[test]
    fn a_row_read_after_the_backoff_ended_but_before_its_release_waits() {
        let mut f = Flight::new(limits());
        let now = Instant::now();
        let read = f.next_read().unwrap();
        f.admit(read, vec![row(1, "a"), row(2, "a")], 0, 0);
        f.failed(1, &key("a"), false, now);
        // The backoff (100 ms) is over, but release_due has not run yet: a later row of the
        // key read now must not be sent ahead of rows 1 and 2.
        let later = now + Duration::from_secs(1);
        let read = f.next_read().unwrap();
        assert!(f.admit(read, vec![row(3, "a")], 2, 0).is_empty());
        assert!(f.release_due(later));
        let read = f.next_read().unwrap();
        let send = f.admit(read, vec![row(1, "a"), row(2, "a"), row(3, "a")], 0, 0);
        assert_eq!(ids(&send), vec![1]);
    }

    #[test]
    fn a_wider_window_sends_several_rows_of_a_key_and_a_failure_hands_back_its_successors() {
        let mut f = Flight::new(Limits {
            per_key: 2,
            ..limits()
        });
        let now = Instant::now();
        let read = f.next_read().unwrap();
        let send = f.admit(
            read,
            vec![row(1, "a"), row(2, "a"), row(3, "a"), row(4, "b")],
            0,
            0,
        );
        assert_eq!(ids(&send), vec![1, 2, 4]);
        assert!(matches!(
            f.failed(1, &key("a"), false, now),
            AfterFailure::Retry { .. }
        ));
        // Row 2 was in flight behind row 1: its failure is expected and changes nothing.
        assert_eq!(f.failed(2, &key("a"), false, now), AfterFailure::Ignore);
        assert_eq!(f.held().0, 1, "only row 4 is held");
        // After the backoff, the key starts over from row 1.
        let later = now + Duration::from_secs(1);
        f.release_due(later);
        let read = f.next_read().unwrap();
        let send = f.admit(read, vec![row(1, "a"), row(2, "a"), row(3, "a")], 0, 0);
        assert_eq!(ids(&send), vec![1, 2]);
        assert_eq!(ids(&f.delivered(1, &key("a"))), vec![3]);
    }

    #[test]
    fn a_successor_acknowledged_after_its_predecessor_failed_is_deleted_not_resent() {
        let mut f = Flight::new(Limits {
            per_key: 2,
            ..limits()
        });
        let now = Instant::now();
        let read = f.next_read().unwrap();
        f.admit(read, vec![row(1, "a"), row(2, "a")], 0, 0);
        f.failed(1, &key("a"), false, now);
        assert!(f.delivered(2, &key("a")).is_empty());
        assert_eq!(f.take_deletable(), vec![2]);
        f.deleted(&[2]);
        let later = now + Duration::from_secs(1);
        f.release_due(later);
        let read = f.next_read().unwrap();
        let send = f.admit(read, vec![row(1, "a")], 0, 0);
        assert_eq!(ids(&send), vec![1]);
    }

    #[test]
    fn a_nearly_full_budget_waits_for_a_quarter_to_free_up() {
        let mut f = Flight::new(Limits {
            max_bytes: 100_000,
            ..limits()
        });
        let mut rows = Vec::new();
        for id in 1..=9 {
            let mut r = row(id, &format!("k{id}"));
            r.payload = vec![b'x'; 10_000];
            rows.push(r);
        }
        let read = f.next_read().unwrap();
        f.admit(read, rows, 0, 0);
        // 9 rows of ~10 KB held: less than a quarter of the bytes is free.
        assert!(f.next_read().is_none());
        f.delivered(1, &key("k1"));
        assert!(
            f.next_read().is_none(),
            "one freed row does not call for a read"
        );
        f.delivered(2, &key("k2"));
        assert!(f.next_read().is_some());
    }

    #[test]
    fn reads_are_sized_by_bytes_as_well_as_rows() {
        let mut f = Flight::new(Limits {
            max_bytes: 100_000,
            ..limits()
        });
        let mut big = row(1, "a");
        big.payload = vec![b'x'; 40_000];
        let read = f.next_read().unwrap();
        assert_eq!(read.max_bytes, 100_000);
        f.admit(read, vec![big], 0, 0);
        let read = f.next_read().unwrap();
        assert!(read.max_bytes < 60_000, "{read:?}");
        assert!(read.limit <= 2, "{read:?}");
        // A row larger than the whole budget is still read, alone, when nothing is held.
        let mut f = Flight::new(Limits {
            max_bytes: 1_000,
            ..limits()
        });
        let mut huge = row(1, "a");
        huge.payload = vec![b'x'; 5_000];
        let read = f.next_read().unwrap();
        f.admit(read, vec![huge], 0, 0);
        assert!(f.next_read().is_none());
        f.delivered(1, &key("a"));
        assert!(f.next_read().is_some());
    }
}
