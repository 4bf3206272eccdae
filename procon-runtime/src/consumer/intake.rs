//! The intake loop: the one thread that owns the transport [`Source`]. It polls messages into
//! the pipeline's lanes, pauses partitions that have `max_in_flight` messages waiting for a
//! processor and resumes them at half (back-pressure without unbounded buffering, and polling never stops,
//! so a long wait causes no rebalance), stores watermarks every `WATERMARK_PERIOD`, notices
//! resumed stops, and positions partitions that were held.
//!
//! Shutdown: stop taking messages, let the processors finish their units (bounded by
//! `drain_timeout`), store the final watermarks, close the pipeline, leave the group.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pipeline::{Held, Pipeline};
use super::{stopped, store};
use crate::backoff::Backoff;
use crate::transport::{PartitionId, Source};

/// How often changed watermarks are stored.
const WATERMARK_PERIOD: Duration = Duration::from_millis(100);
/// How often stops are checked for an operator's resume.
const STOP_CHECK: Duration = Duration::from_secs(1);
/// How often the partitions' lag and in-flight counts are reported as metrics.
const METRICS_PERIOD: Duration = Duration::from_secs(5);
/// How long one report may spend asking the transport for log ends (the lag metric).
const LAG_BUDGET: Duration = Duration::from_millis(250);
/// How long a poll waits when nothing is paused for back-pressure.
const POLL: Duration = Duration::from_millis(100);
/// How long a poll waits while a partition is paused for back-pressure (so it resumes soon).
const POLL_PAUSED: Duration = Duration::from_millis(10);

/// A change to make at the source.
enum Flow {
    Pause(PartitionId),
    Resume(PartitionId),
}

/// Runs the intake until `stop` is set, then shuts the pipeline down.
pub(crate) fn run(pipeline: Arc<Pipeline>, mut source: Box<dyn Source>, stop: Arc<AtomicBool>) {
    let mut next_store = Instant::now() + WATERMARK_PERIOD;
    let mut next_check = Instant::now() + STOP_CHECK;
    let mut next_metrics = Instant::now() + Duration::from_secs(1);
    let mut lag_turn = 0;
    let mut reclaim_backoff = Backoff::new(pipeline.config.backoff);
    let mut next_reclaim = Instant::now();
    let max_poll = pipeline.config.max_in_flight.max(1);
    let mut any_paused = false;
    while !stop.load(Ordering::Relaxed) {
        let timeout = if any_paused { POLL_PAUSED } else { POLL };
        let messages = source.poll(max_poll, timeout);
        pipeline.receive(messages);
        any_paused = flow_control(&pipeline, source.as_mut());
        let now = Instant::now();
        if now >= next_store {
            store_watermarks(&pipeline, source.as_mut());
            next_store = now + WATERMARK_PERIOD;
        }
        if now >= next_metrics {
            lag_turn = report_metrics(&pipeline, source.as_mut(), lag_turn);
            next_metrics = now + METRICS_PERIOD;
        }
        if now >= next_check {
            check_stops(&pipeline);
            follow_replays(&pipeline, source.as_mut());
            next_check = now + STOP_CHECK;
        }
        if now >= next_reclaim {
            next_reclaim = match reclaim_held(&pipeline, source.as_mut()) {
                true => {
                    reclaim_backoff.reset();
                    now + POLL
                }
                false => now + reclaim_backoff.next_delay(),
            };
        }
    }
    tracing::info!(
        group = pipeline.group,
        "consumer stopping: finishing the units in flight"
    );
    {
        let mut board = pipeline.board();
        for work in board.partitions.values_mut() {
            work.revoking = true;
        }
    }
    if !pipeline.drain(None, pipeline.config.drain_timeout) {
        tracing::warn!(
            "units still in flight after the drain timeout; they are applied by the next owner"
        );
    }
    store_watermarks(&pipeline, source.as_mut());
    pipeline.close();
    source.close();
    tracing::info!(group = pipeline.group, "consumer stopped");
}

/// Per partition its lag (log end − stored watermark) and in-flight count; the member's
/// partitions and held lanes.
fn report_metrics(pipeline: &Pipeline, source: &mut dyn Source, lag_turn: usize) -> usize {
    let partitions: Vec<(PartitionId, Option<crate::transport::Position>, usize)> = pipeline
        .board()
        .partitions
        .iter()
        .map(|(p, w)| (p.clone(), w.stored, w.lanes.in_flight()))
        .collect();
    // Asking for log ends is a request per partition: the intake spends at most LAG_BUDGET on
    // it per report, starting where the last report stopped, so many partitions or a slow
    // broker delay no poll for long.
    let started = Instant::now();
    let count = partitions.len();
    let mut asked = 0;
    for k in 0..count {
        let (partition, stored, in_flight) = &partitions[(k + lag_turn) % count];
        let log_end = if started.elapsed() < LAG_BUDGET {
            asked += 1;
            source.log_end(partition)
        } else {
            None
        };
        let lag = log_end.and_then(|end| {
            let end = end.as_offset()?;
            let next = stored.map_or(Some(0), |s| s.as_offset())?;
            Some((end - next).max(0) as f64)
        });
        if let Some(lag) = lag {
            pipeline.status.set_lag(partition, lag as u64);
        }
        crate::metrics::partition(&partition.topic, partition.partition, lag, *in_flight);
    }
    let stalls = pipeline.status.stalls();
    let stopped = stalls.iter().filter(|s| s.stopped).count();
    crate::metrics::ownership(partitions.len(), stalls.len() - stopped, stopped);
    lag_turn + asked
}

fn store_watermarks(pipeline: &Pipeline, source: &mut dyn Source) {
    let stored = pipeline.store_watermarks();
    if pipeline.config.commit_hints {
        for (partition, next) in stored {
            source.hint_position(&partition, next);
        }
    }
}

/// Pauses and resumes partitions at the source; returns whether one is paused for
/// back-pressure.
fn flow_control(pipeline: &Pipeline, source: &mut dyn Source) -> bool {
    let max = pipeline.config.max_in_flight.max(1);
    let mut changes = Vec::new();
    let mut backpressure = false;
    {
        let mut board = pipeline.board();
        for (partition, work) in board.partitions.iter_mut() {
            pipeline
                .status
                .set_in_flight(partition, work.lanes.in_flight());
            // Waiting messages count, not those processors are applying (at most
            // `concurrency` × `batch_size`): so processors find work queued when they finish.
            let waiting = work.lanes.queued();
            let full = waiting >= max || (work.paused && waiting > max / 2);
            let hold = work.held.is_some() || work.fenced;
            let want_paused = hold || full;
            backpressure |= full && !hold;
            if want_paused != work.paused {
                // A held partition resumes through `reclaim_held` (seek, then resume).
                if !want_paused && work.held.is_some() {
                    continue;
                }
                work.paused = want_paused;
                changes.push(match want_paused {
                    true => Flow::Pause(partition.clone()),
                    false => Flow::Resume(partition.clone()),
                });
            }
        }
    }
    for change in changes {
        let (result, partition, what) = match change {
            Flow::Pause(p) => (source.pause(&p), p, "pause"),
            Flow::Resume(p) => (source.resume(&p), p, "resume"),
        };
        if let Err(error) = result {
            tracing::warn!(%error, %partition, what, "could not change the partition's flow");
        }
    }
    backpressure
}

/// Lets stopped lanes and partitions go on once an operator removed their stop.
fn check_stops(pipeline: &Pipeline) {
    let watched: Vec<(PartitionId, Vec<String>, bool)> = pipeline
        .board()
        .partitions
        .iter()
        .filter_map(|(p, w)| {
            let lanes = w.lanes.stopped();
            let whole = w.held == Some(Held::Stopped);
            (!lanes.is_empty() || whole).then(|| (p.clone(), lanes, whole))
        })
        .collect();
    if watched.is_empty() {
        return;
    }
    let Ok(mut conn) = pipeline.pool.get() else {
        return;
    };
    for (partition, lanes, whole) in watched {
        let stops = match stopped::stops_of(&mut conn, &pipeline.group, &partition) {
            Ok(stops) => stops,
            Err(error) => {
                tracing::warn!(%error, "could not read stops");
                return;
            }
        };
        let mut board = pipeline.board();
        let Some(work) = board.partitions.get_mut(&partition) else {
            continue;
        };
        for lane in lanes {
            if !stops.iter().any(|s| s.lane == lane) {
                tracing::info!(%partition, lane, "stop removed: the lane goes on");
                work.failures.clear();
                work.lanes.unstop(&lane);
                pipeline.status.flowing(&partition, &lane);
            }
        }
        if whole && !stops.iter().any(|s| s.lane.is_empty()) {
            tracing::info!(%partition, "stop removed: the partition is positioned again");
            work.held = Some(Held::Unpositioned);
            pipeline.status.flowing(&partition, "");
        }
        drop(board);
        pipeline.notify_work();
    }
}

/// Claims again the partitions a replay moved while this member held them (their stored
/// replay generation rose since the claim; `procon replay` or the admin page recorded it):
/// their work here is dropped, they are paused, and [`reclaim_held`] claims them anew and
/// seeks to the replay's start. So a replay needs no restart of the group's members, and an
/// idle partition, which writes nothing that could be refused, follows it too.
fn follow_replays(pipeline: &Pipeline, source: &mut dyn Source) {
    let claimed: Vec<(PartitionId, i32)> = pipeline
        .board()
        .partitions
        .iter()
        .filter(|(_, w)| w.held.is_none() && !w.revoking)
        .map(|(p, w)| (p.clone(), w.generation))
        .collect();
    if claimed.is_empty() {
        return;
    }
    let Ok(mut conn) = pipeline.pool.get() else {
        return;
    };
    let stored = match store::replay_generations(&mut conn, &pipeline.group) {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(%error, "could not read the replay generations; will try again");
            return;
        }
    };
    let moved: Vec<PartitionId> = stored
        .into_iter()
        .filter(|(partition, generation)| {
            claimed
                .iter()
                .any(|(p, claimed)| p == partition && generation > claimed)
        })
        .map(|(partition, _)| partition)
        .collect();
    for partition in moved {
        {
            let mut board = pipeline.board();
            let Some(work) = board.partitions.get_mut(&partition) else {
                continue;
            };
            tracing::info!(%partition, "a replay moved the partition: claiming it again there");
            work.lanes = Default::default();
            work.failures.clear();
            work.fenced = false;
            work.held = Some(Held::Unpositioned);
            work.paused = true;
        }
        if let Err(error) = source.pause(&partition) {
            tracing::warn!(%error, %partition, "could not pause the replayed partition");
        }
        pipeline.notify_work();
    }
}

/// Positions held partitions: claims those whose position could not be read again, checks
/// the ones claimed inside the transport's callback against the log's range, then seeks and
/// resumes them. Returns true when none is left waiting.
fn reclaim_held(pipeline: &Pipeline, source: &mut dyn Source) -> bool {
    let held: Vec<(PartitionId, Held)> = pipeline
        .board()
        .partitions
        .iter()
        .filter_map(|(p, w)| match &w.held {
            Some(held @ (Held::Unpositioned | Held::Unchecked)) => Some((p.clone(), held.clone())),
            _ => None,
        })
        .collect();
    let mut all = true;
    for (partition, held) in held {
        let start = match held {
            Held::Unchecked => {
                let range = source.bounds(&partition);
                pipeline.verify_position(&partition, range)
            }
            _ => {
                let cell = std::cell::RefCell::new(&mut *source);
                let bounds = |p: &PartitionId| cell.borrow_mut().bounds(p);
                pipeline.claim(&partition, &bounds, true)
            }
        };
        let Some(start) = start else {
            all &= !pipeline
                .board()
                .partitions
                .get(&partition)
                .is_some_and(|w| matches!(w.held, Some(Held::Unpositioned | Held::Unchecked)));
            continue;
        };
        match source.seek(&partition, start) {
            Ok(()) => {
                if let Some(work) = pipeline.board().partitions.get_mut(&partition) {
                    work.paused = false;
                }
                tracing::info!(%partition, ?start, "partition positioned; it flows");
            }
            Err(error) => {
                tracing::debug!(%error, %partition, "seek not possible yet");
                if let Some(work) = pipeline.board().partitions.get_mut(&partition) {
                    work.held = Some(held);
                }
                all = false;
            }
        }
    }
    all
}
