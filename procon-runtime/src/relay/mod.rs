//! The relay: publishes outbox rows to Kafka, then deletes them.
//!
//! Job: move every committed `procon_outbox` row to its topic, at least once, in order per key,
//! with the event-id header, as soon as its transaction commits; and publish realtime
//! notifications (`procon_realtime`) throttled per channel (see [`crate::realtime`]).
//!
//! Invariants and what a crash can do:
//! - A row is deleted only after the broker acknowledged it (idempotent producer, `acks=all`).
//!   A relay killed at any point therefore loses nothing; rows delivered but not yet deleted are
//!   published again on restart, with the same event id (consumers deduplicate on it).
//! - Rows are read in id order with no "last id" watermark: a transaction that commits after
//!   rows with higher ids is picked up by the next round, never skipped.
//! - Per (topic, key), ids follow commit order (see [`crate::outbox`]), rows are enqueued in id
//!   order, and a failed row keeps every later row of its key in the outbox (see `order`).
//! - One relay per schema is active: leadership is a session-level advisory lock, so a second
//!   process waits as a standby and takes over when the leader's connection ends.
//! - It wakes on `NOTIFY procon_outbox` (sent by the emitting transaction's commit) and also
//!   polls every `poll_interval`, so a lost notification only delays an event.
//! - A database or broker outage is logged and retried with exponential backoff; it never
//!   busy-loops and never crashes the relay. Shutdown stops reading, waits for in-flight
//!   deliveries (bounded by `shutdown_timeout`) and deletes what was delivered.

mod order;
mod publisher;
mod realtime;
mod source;

pub(crate) use source::connection_config;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{watch, Notify};

use crate::backoff::Backoff;
use crate::config::{redact, Config};
use crate::transport::Publisher;
use realtime::RealtimeRelay;
use source::{OutboxSource, SourceError};

/// A running relay's inputs.
pub(crate) struct Relay {
    config: Config,
    database: tokio_postgres::Config,
    producer: Box<dyn Publisher>,
}

/// How a relay session (one database connection) ended.
enum SessionEnd {
    /// Shutdown was requested and in-flight work is drained.
    Shutdown,
    /// The database failed; reconnect after a backoff.
    Failed(SourceError),
}

impl Relay {
    pub(crate) fn new(
        config: Config,
        database: tokio_postgres::Config,
        producer: Box<dyn Publisher>,
    ) -> Self {
        Relay {
            config,
            database,
            producer,
        }
    }

    /// Runs until `shutdown` becomes true.
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        let mut backoff = Backoff::new(self.config.relay.backoff);
        let database = redact(&self.config.database_url);
        tracing::info!(database, brokers = self.config.brokers, "relay starting");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let end = match OutboxSource::connect(&self.database, wake.clone()).await {
                Ok(source) => {
                    backoff.reset();
                    self.session(&source, &wake, &mut shutdown, &mut backoff)
                        .await
                }
                Err(error) => SessionEnd::Failed(error),
            };
            match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Failed(error) => {
                    let delay = backoff.next_delay();
                    if error.is_missing_table() {
                        tracing::error!(
                            retry_in_ms = delay.as_millis() as u64,
                            "table `procon_outbox` does not exist: run `procon::migrate` \
                             (or `procon migrate`); the relay keeps retrying"
                        );
                    } else {
                        tracing::error!(
                            %error, database, retry_in_ms = delay.as_millis() as u64,
                            "relay database unavailable; retrying"
                        );
                    }
                    if sleep_or_shutdown(delay, &mut shutdown).await {
                        break;
                    }
                }
            }
        }
        tracing::info!("relay stopped");
    }

    /// One connection's life: wait for leadership, then publish rounds until failure or shutdown.
    async fn session(
        &self,
        source: &OutboxSource,
        wake: &Notify,
        shutdown: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> SessionEnd {
        let relay = &self.config.relay;
        let mut announced_standby = false;
        loop {
            match source.try_lead().await {
                Ok(true) => break,
                Ok(false) => {
                    if !announced_standby {
                        tracing::info!("another relay is active for this schema; standing by");
                        announced_standby = true;
                    }
                    if sleep_or_shutdown(relay.poll_interval, shutdown).await {
                        return SessionEnd::Shutdown;
                    }
                }
                Err(error) => return SessionEnd::Failed(error),
            }
        }
        match source.backlog().await {
            Ok(backlog) => tracing::info!(backlog, "relay active"),
            Err(error) => return SessionEnd::Failed(error),
        }
        let mut realtime = RealtimeRelay::new(relay);
        loop {
            if *shutdown.borrow() {
                return SessionEnd::Shutdown;
            }
            let rows = match source.fetch(relay.batch_size).await {
                Ok(rows) => rows,
                Err(error) => return SessionEnd::Failed(error),
            };
            let realtime_due = match realtime
                .round(source, &*self.producer, relay, shutdown)
                .await
            {
                Ok(due) => due,
                Err(error) => return SessionEnd::Failed(error),
            };
            if rows.is_empty() {
                // Sleep until woken, the next poll, or the end of a held notification's window.
                let mut nap = relay.poll_interval;
                if let Some(due) = realtime_due {
                    nap = nap.min(due.saturating_duration_since(Instant::now()));
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(nap) => {}
                    _ = shutdown.changed() => {}
                }
                if source.is_closed() {
                    return SessionEnd::Failed(match source.fetch(1).await {
                        Err(error) => error,
                        Ok(_) => continue,
                    });
                }
                continue;
            }
            let outcomes = publisher::publish(
                &*self.producer,
                relay,
                &rows,
                shutdown,
                relay.shutdown_timeout,
            )
            .await;
            let delivered = order::deletable_ids(&rows, &outcomes);
            let complete = delivered.len() == rows.len();
            if let Err(error) = source.delete(&delivered).await {
                // Delivered rows stay and are published again: duplicates, never loss.
                return SessionEnd::Failed(error);
            }
            tracing::debug!(
                read = rows.len(),
                delivered = delivered.len(),
                "relay round"
            );
            if complete {
                backoff.reset();
            } else if !*shutdown.borrow() {
                let delay = backoff.next_delay();
                tracing::warn!(
                    undelivered = rows.len() - delivered.len(),
                    retry_in_ms = delay.as_millis() as u64,
                    "some events were not delivered; they stay in the outbox and are retried"
                );
                if sleep_or_shutdown(delay, shutdown).await {
                    return SessionEnd::Shutdown;
                }
            }
        }
    }
}

/// Sleeps for `delay`; returns true if shutdown was requested meanwhile.
async fn sleep_or_shutdown(
    delay: std::time::Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.changed() => {}
    }
    *shutdown.borrow()
}
