//! Housekeeping on a thread of its own: deletes this group's applied-event ids older than the
//! retention, in bounded batches, so neither the processors nor the intake wait for it and
//! other groups' records (with their own retention) are left alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pipeline::Pipeline;
use super::store;

/// Rows deleted per statement.
const BATCH: i64 = 5_000;

/// Runs until `stop` is set.
pub(crate) fn run(pipeline: Arc<Pipeline>, stop: Arc<AtomicBool>) {
    let mut next = Instant::now() + pipeline.config.cleanup_interval;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::park_timeout((next - now).min(Duration::from_millis(200)));
            continue;
        }
        forget_old_events(&pipeline, &stop);
        next = Instant::now() + pipeline.config.cleanup_interval;
    }
}

fn forget_old_events(pipeline: &Pipeline, stop: &AtomicBool) {
    let retention = pipeline.config.dedup_retention.as_secs_f64();
    let Ok(mut conn) = pipeline.pool.get() else {
        return;
    };
    let mut total = 0;
    while !stop.load(Ordering::Relaxed) {
        match store::forget_events_older_than(&mut conn, &pipeline.group, retention, BATCH) {
            Ok(n) => {
                total += n;
                if (n as i64) < BATCH {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not delete expired applied-event ids");
                break;
            }
        }
    }
    tracing::debug!(
        forgotten = total,
        group = pipeline.group,
        "expired applied-event ids deleted"
    );
}
