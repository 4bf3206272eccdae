//! The relay's realtime task: publish the newest notification of each channel whose throttle
//! window is over, then delete the rows it covers (the rule is stated in [`crate::realtime`]).
//! It runs beside the outbox rounds, on its own connection, while its relay leads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::publisher::{self, Outcome};
use super::source::{OutboxRow, OutboxSource, RealtimeRow, SourceError, Wakes};
use crate::config::RelayConfig;
use crate::realtime::throttle::{Latest, Throttle};
use crate::realtime::REALTIME_EVENT;
use crate::transport::Publisher;

/// Runs the realtime task while `leading` (this relay holds shard 0), on a connection of its
/// own, until `shutdown` or a database failure (returned).
pub(crate) async fn run_while_leading(
    database: tokio_postgres::Config,
    tls: super::tls::Tls,
    producer: Arc<dyn Publisher>,
    config: RelayConfig,
    mut leading: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    loop {
        if leading.wait_for(|leads| *leads).await.is_err() {
            return Ok(()); // the rounds ended
        }
        let wake = Arc::new(Notify::new());
        let source = OutboxSource::connect(&database, &tls, wake.clone(), Wakes::Realtime).await?;
        let running = run(
            source,
            wake,
            producer.clone(),
            config.clone(),
            shutdown.clone(),
        );
        tokio::pin!(running);
        tokio::select! {
            result = &mut running => return result,
            _ = leading.wait_for(|leads| !*leads) => {}
        }
        // The rounds hand shard 0 back when they shut down: let the round in progress delete
        // what it published (it ends at shutdown by itself). Leadership lost otherwise drops
        // the round: what it published and did not delete yet is published again by the next
        // leader (at least once).
        let shutting_down = *shutdown.borrow();
        if shutting_down {
            return running.await;
        }
    }
}

/// Runs realtime rounds until `shutdown`, or until the database fails (returned).
pub(crate) async fn run(
    source: OutboxSource,
    wake: Arc<Notify>,
    producer: Arc<dyn Publisher>,
    config: RelayConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let mut throttle = Throttle::new(config.realtime_threshold);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let due = round(&source, &*producer, &config, &mut throttle, &mut shutdown).await?;
        let now = Instant::now();
        let mut nap = config.poll_interval;
        for at in [due, throttle.next_window_end(now)].into_iter().flatten() {
            nap = nap.min(at.saturating_duration_since(now));
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(nap.max(Duration::from_millis(1))) => {}
            _ = shutdown.changed() => {}
        }
        if source.is_closed() {
            // Surface the connection's error.
            source.fetch_realtime(1, &[]).await?;
        }
    }
}

/// One round. Returns when a held notification's window ends, if one is held.
async fn round(
    source: &OutboxSource,
    producer: &dyn Publisher,
    config: &RelayConfig,
    throttle: &mut Throttle,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Instant>, SourceError> {
    let now = Instant::now();
    throttle.forget_quiet(now);
    let held = throttle.held(now);
    let latest = source
        .fetch_realtime(config.batch_size as usize, &held)
        .await?;
    if latest.is_empty() {
        return Ok(None);
    }
    let pending: Vec<Latest> = latest.iter().map(as_latest).collect();
    let plan = throttle.plan(&pending, Instant::now());
    if plan.publish.is_empty() {
        return Ok(plan.next_due);
    }
    let rows: Vec<OutboxRow> = plan
        .publish
        .iter()
        .map(|&index| as_outbox_row(&latest[index], config))
        .collect();
    let outcomes =
        publisher::publish(producer, config, &rows, shutdown, config.shutdown_timeout).await;
    let at = Instant::now();
    let mut covered = Vec::new();
    for (&index, outcome) in plan.publish.iter().zip(&outcomes) {
        if matches!(outcome, Outcome::Delivered) {
            let row = &latest[index];
            throttle.published(&row.channel, at, pending[index].threshold);
            covered.extend_from_slice(&row.coalesced);
        }
    }
    // Published but not deleted (a crash here) means published again: at least once.
    source.delete_realtime(&covered).await?;
    tracing::debug!(
        channels = latest.len(),
        published = covered.len(),
        "realtime round"
    );
    Ok(plan.next_due)
}

fn as_latest(row: &RealtimeRow) -> Latest {
    Latest {
        channel: row.channel.clone(),
        threshold: row
            .threshold_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
    }
}

fn as_outbox_row(row: &RealtimeRow, config: &RelayConfig) -> OutboxRow {
    OutboxRow {
        raw_key: None,
        id: row.id,
        event_id: row.message_id.clone(),
        topic: config.realtime_topic.clone(),
        key: row.channel.clone(),
        event_name: REALTIME_EVENT.to_owned(),
        entity: String::new(),
        payload: row.payload.clone().into_bytes(),
        traceparent: row.traceparent.clone(),
        headers: Vec::new(),
        txid: 0,
        shard: 0,
        avro_schema: None,
    }
}
