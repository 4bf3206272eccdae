//! The relay's realtime round: publish the newest notification of each channel whose throttle
//! window is over, then delete it and the older rows of its channel (the rule is stated in
//! [`crate::realtime`]).

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::order::Outcome;
use super::publisher;
use super::source::{OutboxRow, OutboxSource, RealtimeRow, SourceError};
use crate::config::RelayConfig;
use crate::realtime::throttle::{Latest, Throttle};
use crate::realtime::REALTIME_EVENT;
use crate::transport::Publisher;

/// Throttle state of one relay session (windows restart with the relay).
pub(crate) struct RealtimeRelay {
    throttle: Throttle,
    longest_window: Duration,
}

impl RealtimeRelay {
    pub(crate) fn new(config: &RelayConfig) -> Self {
        RealtimeRelay {
            throttle: Throttle::new(config.realtime_threshold),
            longest_window: config.realtime_threshold,
        }
    }

    /// One round. Returns when a held notification's window ends, if one is held.
    pub(crate) async fn round(
        &mut self,
        source: &OutboxSource,
        producer: &dyn Publisher,
        config: &RelayConfig,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Instant>, SourceError> {
        let latest = source.fetch_realtime(config.batch_size).await?;
        if latest.is_empty() {
            return Ok(None);
        }
        let pending: Vec<Latest> = latest.iter().map(|row| self.latest(row)).collect();
        let plan = self.throttle.plan(&pending, Instant::now());
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
        let mut published = Vec::with_capacity(rows.len());
        for (row, outcome) in rows.iter().zip(&outcomes) {
            if matches!(outcome, Outcome::Delivered) {
                self.throttle.published(&row.key, at);
                published.push((row.key.clone(), row.id));
            }
        }
        // Published but not deleted (a crash here) means published again: at least once.
        source.delete_realtime(&published).await?;
        self.throttle.forget_quiet(at, self.longest_window);
        tracing::debug!(
            channels = latest.len(),
            published = published.len(),
            "realtime round"
        );
        Ok(plan.next_due)
    }

    fn latest(&mut self, row: &RealtimeRow) -> Latest {
        let threshold = row
            .threshold_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
        if let Some(window) = threshold {
            self.longest_window = self.longest_window.max(window);
        }
        Latest {
            channel: row.channel.clone(),
            threshold,
        }
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
    }
}
