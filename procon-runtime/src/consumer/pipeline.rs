//! The pipeline's shared state: per assigned partition its lanes, its watermark and its claim,
//! and the handing out of work to processors.
//!
//! Owners: the intake loop (the one thread that owns the transport [`crate::transport::Source`])
//! adds messages and stores watermarks; processors take units and report them; the
//! [`crate::transport::Ownership`] calls (from inside the source's poll) claim and release
//! partitions. All of them go through [`Pipeline`]'s methods; its lock is never held across a
//! database call or a handler.
//!
//! Partition states: *claimed* (flowing; paused by the intake while `max_in_flight` messages
//! are pending), *held* (its position is unknown, outside the log's range, or it is stopped as
//! a whole: paused at the source, no message queued), *revoking* (no new work handed out; the
//! revocation waits for busy lanes), *fenced* (another member claimed it: its work is dropped).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::apply::Registry;
use super::lanes::{Lanes, Taken};
use super::status::{Stall, Status};
use super::stopped::{self, StoppedPartition};
use super::store::{self, Claim};
use super::watermark::Watermark;
use crate::config::{ConsumerConfig, RateLimit};
use crate::db::DbPool;
use crate::transport::{
    Bounds, Message, Ownership, PartitionId, Position, StartAt, TransportError,
};

/// Why a claimed partition is held at the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    /// Its stored position could not be read (database down): claimed again later.
    Unpositioned,
    /// Stopped as a whole (out-of-range position, or `partition_by = partition`): until the
    /// stop's row is removed.
    Stopped,
    /// Its stored position still has to be checked against the log's range, which the intake
    /// does outside the transport's assignment callback before it seeks and resumes.
    Unchecked,
}

/// One assigned partition's work.
#[derive(Debug)]
pub(crate) struct PartitionWork {
    pub(crate) epoch: i64,
    /// The replay in progress when the partition was claimed.
    pub(crate) replay: Option<store::Replay>,
    /// The replay generation when it was claimed (a higher one stored means a replay moved it).
    pub(crate) generation: i32,
    pub(crate) lanes: Lanes<Message>,
    pub(crate) watermark: Watermark,
    /// The watermark last stored.
    pub(crate) stored: Option<Position>,
    /// Counted failures by position, as left by earlier attempts (also by earlier owners).
    pub(crate) failures: HashMap<Position, u32>,
    pub(crate) held: Option<Held>,
    /// Paused at the source by this member (held, fenced, or `max_in_flight` pending).
    pub(crate) paused: bool,
    /// Since when messages wait in its lanes (for `batch_timeout`).
    waiting_since: Option<Instant>,
    /// A batch handler reads its topic: hand out only full units or after `batch_timeout`.
    batching: bool,
    pub(crate) revoking: bool,
    pub(crate) fenced: bool,
}

impl PartitionWork {
    fn new(claim: Claim, start: Option<Position>) -> Self {
        PartitionWork {
            epoch: claim.epoch,
            replay: claim.replay,
            generation: claim.generation,
            lanes: Lanes::default(),
            watermark: Watermark::new(start),
            stored: start,
            failures: HashMap::new(),
            held: None,
            paused: false,
            waiting_since: None,
            batching: false,
            revoking: false,
            fenced: false,
        }
    }

    /// When a unit for a batch handler is handed out although not full: `None` when it may
    /// be handed out now.
    fn fill_until(&self, batch_size: usize, batch_timeout: Duration) -> Option<Instant> {
        if !self.batching || batch_timeout.is_zero() || self.lanes.queued() >= batch_size {
            return None;
        }
        self.waiting_since.map(|since| since + batch_timeout)
    }

    fn accepts_work(&self) -> bool {
        !self.revoking && !self.fenced && self.held.is_none()
    }
}

/// Work handed to one processor.
#[derive(Debug)]
pub(crate) struct Unit {
    pub(crate) partition: PartitionId,
    pub(crate) epoch: i64,
    pub(crate) replay: Option<store::Replay>,
    pub(crate) taken: Taken<Message>,
    /// Positions in the unit that failed before (their counted failures are cleared on
    /// success).
    pub(crate) retried: Vec<Position>,
}

#[derive(Debug, Default)]
pub(crate) struct Board {
    pub(crate) partitions: BTreeMap<PartitionId, PartitionWork>,
    /// Round robin over partitions, so a busy partition does not starve the others.
    turn: VecDeque<PartitionId>,
    /// No unit is handed out any more; processors exit.
    pub(crate) closed: bool,
    /// Messages handed out in the current `rate_limit` window.
    rate: RateWindow,
}

/// The current window of Broadway-style rate limiting.
#[derive(Debug, Default)]
struct RateWindow {
    started: Option<Instant>,
    used: usize,
}

impl RateWindow {
    /// How many messages may still be handed out now, and when the window ends.
    fn allowance(&mut self, limit: &RateLimit, now: Instant) -> (usize, Instant) {
        let started = match self.started {
            Some(started) if now < started + limit.interval => started,
            _ => {
                self.started = Some(now);
                self.used = 0;
                now
            }
        };
        (
            limit.allowed_messages.saturating_sub(self.used),
            started + limit.interval,
        )
    }
}

/// The consumer's settings and its shared state.
pub(crate) struct Pipeline {
    pub(crate) group: String,
    pub(crate) registry: Registry,
    pub(crate) config: ConsumerConfig,
    pub(crate) pool: DbPool,
    pub(crate) status: Status,
    /// Decodes Avro messages (see `decode`).
    pub(crate) avro: super::decode::AvroDecoder,
    board: Mutex<Board>,
    /// Signalled when work may be available (processors wait on it).
    work: Condvar,
    /// Signalled when a unit is reported (revocation and shutdown wait on it).
    reported: Condvar,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    pub(crate) fn new(
        group: String,
        registry: Registry,
        config: ConsumerConfig,
        pool: DbPool,
        status: Status,
    ) -> Self {
        Pipeline {
            group,
            registry,
            config,
            pool,
            status,
            avro: super::decode::AvroDecoder::default(),
            board: Mutex::new(Board::default()),
            work: Condvar::new(),
            reported: Condvar::new(),
        }
    }

    /// The pipeline with `avro` decoding its Avro messages.
    pub(crate) fn with_avro(mut self, avro: super::decode::AvroDecoder) -> Self {
        self.avro = avro;
        self
    }

    /// Who applies a unit of `partition` under the claim `epoch`.
    pub(crate) fn unit_context<'p>(
        &'p self,
        partition: &'p PartitionId,
        epoch: i64,
        replay: Option<store::Replay>,
    ) -> super::apply::UnitContext<'p> {
        super::apply::UnitContext {
            group: &self.group,
            registry: &self.registry,
            unknown: self.config.unknown_events,
            partition,
            epoch,
            replay,
        }
    }

    /// The board, locked. Never held across a database call or a handler.
    pub(crate) fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes processors: new messages, lanes freed, retry times reached.
    pub(crate) fn notify_work(&self) {
        self.work.notify_all();
    }

    /// Queues received messages in their lanes; messages of partitions not claimed here (or
    /// held, revoking, fenced) and messages received before are dropped: they are read again
    /// by whoever applies the partition next, from its watermark.
    pub(crate) fn receive(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let mut board = self.board();
        for message in messages {
            let Some(work) = board.partitions.get_mut(&message.partition) else {
                continue;
            };
            if !work.accepts_work() || work.watermark.seen(message.position) {
                continue;
            }
            work.watermark.received(message.position);
            if work.lanes.queued() == 0 {
                work.waiting_since = Some(Instant::now());
            }
            let lane = self.config.partition_by.lane_of(&message);
            work.lanes.push(&lane, message);
        }
        drop(board);
        self.notify_work();
    }

    /// Takes the next unit for a processor, waiting up to `wait` for one. `None` when there is
    /// none (or the pipeline is closed: see [`Pipeline::is_closed`]).
    pub(crate) fn take(&self, wait: Duration) -> Option<Unit> {
        let deadline = Instant::now() + wait;
        let mut board = self.board();
        loop {
            let now = Instant::now();
            let mut next_retry: Option<Instant> = None;
            let Board {
                partitions,
                turn,
                closed,
                rate,
            } = &mut *board;
            if *closed {
                return None;
            }
            let mut allowed = self.config.batch_size;
            if let Some(limit) = &self.config.rate_limit {
                let (left, window_end) = rate.allowance(limit, now);
                if left == 0 {
                    next_retry = Some(window_end);
                }
                allowed = allowed.min(left);
            }
            if turn.len() != partitions.len() || turn.iter().any(|p| !partitions.contains_key(p)) {
                *turn = partitions.keys().cloned().collect();
            }
            let mut found = None;
            for (index, partition) in turn.iter().enumerate() {
                if allowed == 0 {
                    break;
                }
                let Some(work) = partitions.get_mut(partition) else {
                    continue;
                };
                if !work.accepts_work() {
                    continue;
                }
                if let Some(at) = work.lanes.wake_due(now) {
                    next_retry = Some(next_retry.map_or(at, |n| n.min(at)));
                }
                // Let a batch handler's unit fill up to `batch_size`, for `batch_timeout` at most.
                if let Some(until) =
                    work.fill_until(self.config.batch_size, self.config.batch_timeout)
                {
                    if until > now {
                        next_retry = Some(next_retry.map_or(until, |n| n.min(until)));
                        continue;
                    }
                }
                // Spread ready lanes over the processors; batch them when there are many.
                let per_processor = work
                    .lanes
                    .ready_lanes()
                    .div_ceil(self.config.concurrency.max(1));
                let Some(taken) = work.lanes.take(allowed, per_processor) else {
                    continue;
                };
                rate.used += taken.lanes.iter().map(|(_, ms)| ms.len()).sum::<usize>();
                if work.lanes.queued() == 0 {
                    work.waiting_since = None;
                }
                let retried = taken
                    .lanes
                    .iter()
                    .flat_map(|(_, ms)| ms.iter().map(|m| m.position))
                    .filter(|o| work.failures.contains_key(o))
                    .collect();
                found = Some((
                    index,
                    Unit {
                        partition: partition.clone(),
                        epoch: work.epoch,
                        replay: work.replay,
                        taken,
                        retried,
                    },
                ));
                break;
            }
            if let Some((index, unit)) = found {
                // The next take starts after this partition: partitions take turns.
                turn.rotate_left(index + 1);
                return Some(unit);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let until = next_retry.map_or(deadline, |at| at.min(deadline));
            let timeout = until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            board = self
                .work
                .wait_timeout(board, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Whether processors should exit.
    pub(crate) fn is_closed(&self) -> bool {
        self.board().closed
    }

    /// Reports a unit's lanes: `done` messages of each lane were applied or settled; the rest
    /// goes back (see the `put_back` callers).
    pub(crate) fn complete(&self, partition: &PartitionId, lane: &str, done: &[Position]) {
        let mut board = self.board();
        if let Some(work) = board.partitions.get_mut(partition) {
            for position in done {
                work.watermark.done(*position);
                work.failures.remove(position);
            }
            work.lanes.complete(lane, done.len());
        }
        drop(board);
        self.reported.notify_all();
        self.notify_work();
    }

    /// Gives a lane's messages back: tried again at `retry_at` (at once when `None`), alone
    /// when `solo`.
    pub(crate) fn put_back(
        &self,
        partition: &PartitionId,
        lane: &str,
        messages: Vec<Message>,
        retry_at: Option<Instant>,
        solo: bool,
    ) {
        let mut board = self.board();
        if let Some(work) = board.partitions.get_mut(partition) {
            work.lanes.put_back(lane, messages, retry_at, solo);
        }
        drop(board);
        self.reported.notify_all();
        self.notify_work();
    }

    /// Stops a lane on its head message (the failure policy `stop`).
    pub(crate) fn stop_lane(&self, partition: &PartitionId, lane: &str, messages: Vec<Message>) {
        let mut board = self.board();
        if let Some(work) = board.partitions.get_mut(partition) {
            work.lanes.stop(lane, messages);
        }
        drop(board);
        self.reported.notify_all();
    }

    /// Another member claimed `partition`, or a replay moved it, while this member worked on
    /// it under claim `epoch`: drop its work here. A refusal of an earlier claim's work (this
    /// member claimed the partition again since) changes nothing.
    pub(crate) fn fence(&self, partition: &PartitionId, epoch: i64) {
        let mut board = self.board();
        if let Some(work) = board
            .partitions
            .get_mut(partition)
            .filter(|w| w.epoch == epoch)
        {
            if !work.fenced {
                tracing::warn!(%partition, "another member claimed the partition; dropping its work here");
            }
            work.fenced = true;
            work.lanes = Lanes::default();
        }
        drop(board);
        self.reported.notify_all();
    }

    /// Counts one failed attempt of the message at `at`; returns the counted failures.
    pub(crate) fn count_failure(
        &self,
        partition: &PartitionId,
        at: Position,
        stored: Option<u32>,
    ) -> u32 {
        let mut board = self.board();
        let Some(work) = board.partitions.get_mut(partition) else {
            return stored.unwrap_or(1);
        };
        let count = work.failures.entry(at).or_insert(0);
        *count = stored.unwrap_or(*count + 1).max(*count + 1);
        *count
    }

    /// Closes the pipeline: processors exit once their current unit is reported.
    pub(crate) fn close(&self) {
        self.board().closed = true;
        self.notify_work();
    }

    /// Waits until no lane of `partitions` (all of them when `None`) is busy, up to `timeout`.
    pub(crate) fn drain(&self, partitions: Option<&[PartitionId]>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut board = self.board();
        loop {
            let busy: usize = board
                .partitions
                .iter()
                .filter(|(p, _)| partitions.is_none_or(|ps| ps.contains(p)))
                .map(|(_, w)| w.lanes.busy())
                .sum();
            if busy == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            board = self
                .reported
                .wait_timeout(board, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The watermarks that changed since they were last stored, as (partition, epoch, next).
    pub(crate) fn watermarks_to_store(&self) -> Vec<(PartitionId, i64, Position)> {
        let board = self.board();
        board
            .partitions
            .iter()
            .filter(|(_, w)| !w.fenced && w.held.is_none())
            .filter_map(|(p, w)| {
                let next = w.watermark.next()?;
                (w.stored != Some(next)).then(|| (p.clone(), w.epoch, next))
            })
            .collect()
    }

    /// Stores the changed watermarks; returns the ones stored (for the transport's hints).
    pub(crate) fn store_watermarks(&self) -> Vec<(PartitionId, Position)> {
        let changed = self.watermarks_to_store();
        if changed.is_empty() {
            return Vec::new();
        }
        let mut conn = match self.pool.get() {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "could not store watermarks; will try again");
                return Vec::new();
            }
        };
        let mut stored = Vec::new();
        for (partition, epoch, next) in changed {
            match store::store_watermark(&mut conn, &self.group, &partition, epoch, next) {
                Ok(true) => {
                    if let Some(work) = self.board().partitions.get_mut(&partition) {
                        work.stored = Some(next);
                    }
                    stored.push((partition, next));
                }
                Ok(false) => self.fence(&partition, epoch),
                Err(error) => {
                    tracing::warn!(%error, %partition, "could not store the watermark; will try again");
                    break;
                }
            }
        }
        stored
    }

    /// Claims `partition`: bumps its epoch, reads its watermark, stops and failures, checks
    /// the position against the log's `bounds`, and registers its work. Returns where it
    /// starts, or `None` when it is held.
    pub(crate) fn claim(
        &self,
        partition: &PartitionId,
        bounds: &dyn Fn(&PartitionId) -> Result<Bounds, TransportError>,
        check_range: bool,
    ) -> Option<StartAt> {
        match self.try_claim(partition, bounds, check_range) {
            Ok((work, start)) => {
                let held = work.held.clone();
                self.board().partitions.insert(partition.clone(), work);
                self.status.assigned(partition, true);
                match held {
                    None => {
                        tracing::info!(%partition, ?start, "partition claimed");
                        Some(start)
                    }
                    Some(Held::Unchecked) => {
                        tracing::debug!(%partition, "partition claimed; its position is checked before it flows");
                        None
                    }
                    Some(held) => {
                        tracing::warn!(%partition, ?held, "partition claimed but held: see the stop record");
                        None
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, %partition, "could not claim the partition (reading its stored position); it stays paused until the database answers");
                let mut work = PartitionWork::new(
                    Claim {
                        next: None,
                        epoch: -1,
                        replay: None,
                        generation: 0,
                    },
                    None,
                );
                work.held = Some(Held::Unpositioned);
                work.paused = true;
                self.board().partitions.insert(partition.clone(), work);
                self.status.assigned(partition, true);
                None
            }
        }
    }

    fn try_claim(
        &self,
        partition: &PartitionId,
        bounds: &dyn Fn(&PartitionId) -> Result<Bounds, TransportError>,
        check_range: bool,
    ) -> Result<(PartitionWork, StartAt), ClaimError> {
        let mut conn = self.pool.get()?;
        let claim = store::claim(&mut conn, &self.group, partition)?;
        let start = claim.next;
        let mut work = PartitionWork::new(claim, start);
        work.batching = self.registry.has_batch_handler(&partition.topic);
        for failure in store::failures(&mut conn, &self.group, partition)? {
            work.failures.insert(
                failure.position,
                u32::try_from(failure.attempts).unwrap_or(0),
            );
        }
        match start {
            Some(stored) if self.config.check_position_range && check_range => {
                self.check_range(&mut conn, partition, stored, bounds(partition))?;
            }
            Some(_) if self.config.check_position_range => {
                work.held = Some(Held::Unchecked);
                work.paused = true;
            }
            _ => {}
        }
        let stops = stopped::stops_of(&mut conn, &self.group, partition)?;
        for stop in &stops {
            if stop.lane.is_empty() {
                work.held = Some(Held::Stopped);
                work.paused = true;
            } else {
                work.lanes.stop(&stop.lane, Vec::new());
            }
            self.status.stalled(Stall::of_stop(stop));
        }
        let start = start.map_or(StartAt::Beginning, StartAt::At);
        Ok((work, start))
    }

    /// Checks a stored position against the log's range; an out-of-range one is recorded as a
    /// stop of the whole partition (with the proposed reset) and returned.
    fn check_range(
        &self,
        conn: &mut crate::db::DbConn,
        partition: &PartitionId,
        stored: Position,
        range: Result<Bounds, TransportError>,
    ) -> Result<Option<StoppedPartition>, ClaimError> {
        let range = match range {
            Ok(range) => range,
            Err(error) => {
                tracing::warn!(%error, %partition, "could not read the partition's range; its stored position is not checked against it");
                return Ok(None);
            }
        };
        let Some(stop) = out_of_range(&self.group, partition, stored, range) else {
            return Ok(None);
        };
        tracing::error!(%partition, error = stop.error, "stored position outside the log: partition STOPPED; accept the proposed position with `procon resume {} {} --reset`", partition.topic, partition.partition);
        stopped::record_stop(conn, &stop)?;
        Ok(Some(stop))
    }

    /// Checks the stored position of a partition claimed inside the transport's callback
    /// against the log's `range` (read outside it). Returns where it starts, or `None` when it
    /// is stopped now or the check has to be tried again.
    pub(crate) fn verify_position(
        &self,
        partition: &PartitionId,
        range: Result<Bounds, TransportError>,
    ) -> Option<StartAt> {
        let stored = self.board().partitions.get(partition)?.stored?;
        let checked = match self.config.check_position_range {
            true => self
                .pool
                .get()
                .map_err(ClaimError::from)
                .and_then(|mut conn| self.check_range(&mut conn, partition, stored, range)),
            false => Ok(None),
        };
        let mut board = self.board();
        let work = board.partitions.get_mut(partition)?;
        match checked {
            Ok(None) => {
                work.held = None;
                Some(StartAt::At(stored))
            }
            Ok(Some(stop)) => {
                work.held = Some(Held::Stopped);
                self.status.stalled(Stall::of_stop(&stop));
                None
            }
            Err(error) => {
                tracing::warn!(%error, %partition, "could not check the stored position; trying again");
                None
            }
        }
    }

    /// Releases revoked partitions: no new work, wait for busy lanes (bounded), store the
    /// final watermarks, forget them.
    pub(crate) fn release(&self, partitions: &[PartitionId]) {
        {
            let mut board = self.board();
            for partition in partitions {
                if let Some(work) = board.partitions.get_mut(partition) {
                    work.revoking = true;
                }
            }
        }
        if !self.drain(Some(partitions), self.config.drain_timeout) {
            tracing::warn!(?partitions, "revoked partitions still had work after the drain timeout; the next owner applies it");
        }
        self.store_watermarks();
        let mut board = self.board();
        for partition in partitions {
            board.partitions.remove(partition);
            self.status.assigned(partition, false);
            tracing::info!(%partition, "partition released");
        }
    }
}

/// Why a partition could not be claimed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClaimError {
    #[error("database unavailable: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

/// A stop for a stored position outside the log's range, or `None` when it is inside.
/// Beyond the end (the topic was recreated, or the position was written for another cluster):
/// the proposed reset is the log end. Below the start (retention deleted unapplied events):
/// the proposed reset is the log start, and the events in between are lost.
pub(crate) fn out_of_range(
    group: &str,
    partition: &PartitionId,
    stored: Position,
    range: Bounds,
) -> Option<StoppedPartition> {
    let (error, reset_to) = if stored > range.high {
        (
            format!(
                "stored position {stored} of {partition} is beyond the log end {}: the topic may have been recreated; nothing was applied from it",
                range.high
            ),
            range.high,
        )
    } else if stored < range.low {
        (
            format!(
                "stored position {stored} of {partition} is below the log start {}: events {stored}..{} were deleted by retention before they were applied",
                range.low, range.low
            ),
            range.low,
        )
    } else {
        return None;
    };
    Some(StoppedPartition {
        group_id: group.to_owned(),
        topic: partition.topic.clone(),
        partition: partition.partition,
        position: stored,
        event_id: None,
        event: None,
        error,
        attempts: 0,
        stopped_at: chrono::Utc::now(),
        lane: String::new(),
        reset_to: Some(reset_to),
    })
}

/// The [`Ownership`] the transport calls: claims and releases through the pipeline.
pub(crate) struct PipelineOwnership(pub(crate) Arc<Pipeline>);

impl Ownership for PipelineOwnership {
    fn assigned(
        &self,
        partitions: &[PartitionId],
        bounds: &dyn Fn(&PartitionId) -> Result<Bounds, TransportError>,
    ) -> Vec<Option<StartAt>> {
        // The range is checked by the intake, outside the callback: a ListOffsets request made
        // from inside librdkafka's rebalance callback was answered with a wrong log end.
        partitions
            .iter()
            .map(|p| self.0.claim(p, bounds, false))
            .collect()
    }

    fn revoked(&self, partitions: &[PartitionId]) {
        self.0.release(partitions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(low: i64, high: i64) -> Bounds {
        Bounds {
            low: Position::offset(low),
            high: Position::offset(high),
        }
    }

    #[test]
    fn a_position_beyond_the_log_end_or_below_its_start_is_a_stop_with_a_reset() {
        let p = PartitionId::new("t", 0);
        assert!(out_of_range("g", &p, Position::offset(5), range(0, 5)).is_none());
        assert!(out_of_range("g", &p, Position::offset(0), range(0, 5)).is_none());
        let beyond = out_of_range("g", &p, Position::offset(1000), range(0, 5)).unwrap();
        assert_eq!(beyond.reset_to, Some(Position::offset(5)));
        assert!(
            beyond.error.contains("beyond the log end 5"),
            "{}",
            beyond.error
        );
        let below = out_of_range("g", &p, Position::offset(3), range(10, 20)).unwrap();
        assert_eq!(below.reset_to, Some(Position::offset(10)));
        assert!(
            below.error.contains("below the log start 10"),
            "{}",
            below.error
        );
        assert_eq!(below.lane, "", "the whole partition is held");
    }
}
