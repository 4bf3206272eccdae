//! The relay: publishes outbox rows to the broker, then deletes them.
//!
//! Job: move every committed `procon_outbox` row to its topic, at least once, in order per key,
//! with the event-id header, as soon as its transaction commits; and publish realtime
//! notifications (`procon_realtime`) throttled per channel (see [`crate::realtime`]).
//!
//! Reading path: [`Relay::run`] (connect, reconnect) → `rounds` (the pipelined loop, with the
//! lease heartbeat of `lease`) →
//! `flight` (every decision: what to read, send, delete, retry or park) → `source` (SQL) and
//! `publisher` (records for the transport); acknowledged rows are deleted by the rounds' deleter
//! on a connection of its own. `realtime` runs beside `rounds` on its own connection; `tls`
//! makes the relay's connections match libpq's TLS modes.
//!
//! Invariants and what a crash can do:
//! - A row is deleted only after the broker acknowledged it (idempotent producer, `acks=all`).
//!   A relay killed at any point therefore loses nothing; rows delivered but not yet deleted are
//!   published again on restart, with the same event id (consumers deduplicate on it).
//! - Per (topic, key), ids follow commit order (see [`crate::outbox`]) and at most one row of a
//!   key is in flight: its next row is sent only after it was acknowledged or parked. A row
//!   committed late below the relay's read cursor is detected and read before anything after it
//!   (see `flight`).
//! - A row the broker rejects `park_after_attempts` times is parked (`procon_outbox_parked`)
//!   with its error; its key's later rows wait; other keys flow. Outages are retried forever.
//! - Memory is bounded: rows held stay within `2 × batch_size` rows and `max_bytes_in_flight`.
//! - Several relays share an outbox through shard leases in PostgreSQL (see `lease`): each
//!   publishes only the shards it holds, a dead relay's shards move once their leases expire
//!   (`lease_ttl`), and a relay that cannot renew stops sending before that. The holder of
//!   shard 0 also publishes realtime notifications.
//! - It wakes on `NOTIFY procon_outbox` carrying its table's oid (sent by the emitting
//!   transaction's commit) and also polls every `poll_interval`, so a lost notification only
//!   delays an event.
//! - A database or broker outage is logged and retried with exponential backoff; it never
//!   busy-loops and never crashes the relay. A missing table or schema is reported and retried.
//!   Shutdown stops reading, waits for in-flight deliveries (bounded by `shutdown_timeout`) and
//!   deletes what was delivered.

mod avro;
mod flight;
mod lease;
mod publisher;
mod realtime;
mod rounds;
mod source;
mod tls;
mod topics;

pub(crate) use tls::{relay_connection, Tls};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::backoff::Backoff;
use crate::config::{redact, Config};
use crate::transport::Publisher;
use source::{OutboxSource, SourceError, Wakes};

/// A running relay's inputs.
/// What a running relay shows its operator (the admin server's readiness): whether its
/// database session is up and how many outbox shards it holds (0: standby).
#[derive(Debug, Default)]
pub(crate) struct RelayState {
    pub(crate) connected: std::sync::atomic::AtomicBool,
    pub(crate) shards_held: std::sync::atomic::AtomicUsize,
}

/// Marks the relay connected for as long as it lives (a session): on its drop, however the
/// session ends, the relay shows disconnected and holding no shard.
struct Connected<'a>(&'a RelayState);

impl<'a> Connected<'a> {
    fn mark(state: &'a RelayState) -> Self {
        state
            .connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Connected(state)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.0.connected.store(false, Relaxed);
        self.0.shards_held.store(0, Relaxed);
    }
}

pub(crate) struct Relay {
    /// Shared with the admin server.
    pub(crate) state: Arc<RelayState>,
    config: Config,
    database: tokio_postgres::Config,
    tls: Tls,
    producer: Arc<dyn Publisher>,
    /// This relay among the relays of its outbox: `<service name>/<uuid>`.
    member: String,
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
        (database, tls): (tokio_postgres::Config, Tls),
        producer: Arc<dyn Publisher>,
    ) -> Self {
        let member = format!("{}/{}", config.service_name, uuid::Uuid::now_v7());
        Relay {
            state: Arc::default(),
            config,
            database,
            tls,
            producer,
            member,
        }
    }

    /// Runs until `shutdown` becomes true.
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        let mut backoff = Backoff::new(self.config.relay.backoff);
        let database = redact(&self.config.database_url);
        let transport = self.config.transport.name();
        match self.config.transport {
            crate::config::Transport::Kafka => {
                tracing::info!(
                    database,
                    transport,
                    brokers = self.config.brokers,
                    "relay starting"
                )
            }
            crate::config::Transport::Kinesis => tracing::info!(
                database,
                transport,
                region = self.config.kinesis.region,
                endpoint = self.config.kinesis.endpoint_url.as_deref().map(redact),
                "relay starting"
            ),
        }
        let producer = self.producer.clone();
        let warm = tokio::task::spawn_blocking(move || producer.warm_up(Duration::from_secs(10)));
        if let Ok(Err(error)) = warm.await {
            tracing::warn!(%error, "the relay could not reach {transport} yet; it keeps trying");
        }
        loop {
            if *shutdown.borrow() {
                break;
            }
            let end =
                match OutboxSource::connect(&self.database, &self.tls, wake.clone(), Wakes::Outbox)
                    .await
                {
                    Ok(source) => {
                        backoff.reset();
                        self.session(&source, &wake, &mut shutdown).await
                    }
                    Err(error) => SessionEnd::Failed(error),
                };
            match end {
                SessionEnd::Shutdown => break,
                SessionEnd::Failed(error) => {
                    let delay = backoff.next_delay();
                    if error.is_missing_table() {
                        tracing::error!(
                            database,
                            retry_in_ms = delay.as_millis() as u64,
                            "table `procon_outbox` does not exist in the connection's search_path \
                             (is the schema created and migrated?): run `procon::migrate` \
                             (or `procon migrate`); the relay keeps retrying"
                        );
                    } else {
                        // The whole chain: a TLS failure's reason (the certificate) is in a source.
                        let error = error_chain(&error);
                        tracing::error!(
                            error,
                            database,
                            retry_in_ms = delay.as_millis() as u64,
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

    /// One connection's life: take part in the shard leases and publish the shards held,
    /// until failure or shutdown.
    async fn session(
        &self,
        source: &OutboxSource,
        wake: &Notify,
        shutdown: &mut watch::Receiver<bool>,
    ) -> SessionEnd {
        let relay = &self.config.relay;
        // Per session: a reconnection asks the registry again (once per schema).
        let framing = &mut avro::AvroFraming::new(&self.config.schema_registry);
        if let Err(error) = source.prepare_leases(relay.shards).await {
            return SessionEnd::Failed(error);
        }
        let _connected = Connected::mark(&self.state);
        match source.backlog().await {
            Ok((backlog, _, parked)) => tracing::info!(
                backlog,
                parked,
                shards = relay.shards,
                member = self.member,
                "relay connected; taking its share of the shards"
            ),
            Err(error) => return SessionEnd::Failed(error),
        }
        // Realtime notifications run beside the outbox rounds, on their own connection, while
        // this relay holds shard 0.
        let (leading, leading_rx) = watch::channel(false);
        let mut realtime = tokio::spawn(realtime::run_while_leading(
            self.database.clone(),
            self.tls.clone(),
            self.producer.clone(),
            relay.clone(),
            leading_rx,
            shutdown.clone(),
        ));
        // Acknowledged rows are deleted on a connection of their own, beside the reads.
        let deleter = match OutboxSource::connect(
            &self.database,
            &self.tls,
            Arc::new(Notify::new()),
            Wakes::Nothing,
        )
        .await
        {
            Ok(deleter) => deleter,
            Err(error) => {
                realtime.abort();
                return SessionEnd::Failed(error);
            }
        };
        let membership = rounds::Membership {
            member: &self.member,
            leading,
            held: &self.state.shards_held,
        };
        let outbox = rounds::run(
            source,
            deleter,
            (&*self.producer, framing),
            relay,
            wake,
            shutdown,
            membership,
        );
        tokio::pin!(outbox);
        let end = tokio::select! {
            end = &mut outbox => end,
            finished = &mut realtime => match finished {
                Ok(Err(error)) => Err(error),
                // Realtime stopped for shutdown (or panicked: logged by the runtime); the
                // outbox rounds finish their own shutdown.
                _ => outbox.await,
            },
        };
        if matches!(end, Ok(rounds::End::Shutdown)) && !realtime.is_finished() {
            // The realtime round in progress takes its answers in (bounded by the shutdown
            // timeout, like the outbox's) and deletes what it published: aborted, it would
            // leave published notifications to be published again.
            let bound = relay.shutdown_timeout + std::time::Duration::from_secs(5);
            if tokio::time::timeout(bound, &mut realtime).await.is_err() {
                tracing::warn!("shutdown: the realtime round did not finish in time");
            }
        }
        realtime.abort();
        match end {
            Ok(rounds::End::Shutdown) => SessionEnd::Shutdown,
            Err(error) => SessionEnd::Failed(error),
        }
    }
}

/// `error` and each of its sources, joined by `: `.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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

/// Refuses `relay.undeclared_topics = refuse` in a program that declares no topic at all: it
/// would have nothing to check against (a standalone `procon relay` declares through
/// `--topic`).
pub(crate) fn check_declarations(
    config: &crate::config::RelayConfig,
) -> Result<(), crate::config::ConfigError> {
    let check = topics::TopicCheck::new(config, crate::outbox::declared_topics());
    if config.undeclared_topics == crate::config::UndeclaredTopics::Refuse
        && check.declares_nothing()
    {
        return Err(crate::config::ConfigError::Invalid {
            name: "relay.undeclared_topics".to_owned(),
            value: "refuse".to_owned(),
            reason: "no topic is declared in this program (no #[derive(Outbox)] model with a \
                     fixed topic, declare_topic! or relay.topics entry): declare the topics, or \
                     use `warn`"
                .to_owned(),
        });
    }
    Ok(())
}
