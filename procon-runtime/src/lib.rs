//! # procon-runtime
//!
//! The runtime behind the `procon` facade: the transactional outbox ([`outbox`]), the relay that
//! publishes it (`relay`), the concurrent exactly-once consumer ([`consumer`]), the transport
//! seam they sit on ([`transport`]: Kafka today), procon's own tables ([`store`]) and
//! configuration ([`config`]). Applications depend on `procon`, which re-exports what they need.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = procon_runtime::Config::from_env()?;
//! let runtime = procon_runtime::start(config)?;
//! // ... serve requests that emit events ...
//! runtime.shutdown().await?;
//! # Ok(()) }
//! ```

#[cfg(feature = "admin")]
pub mod admin;
pub mod avro;
pub mod backoff;
pub mod config;
pub mod consumer;
mod db;
pub mod event;
pub mod materialize;
pub mod metrics;
pub mod outbox;
pub mod realtime;
mod relay;
mod secrets;
pub mod store;
pub mod trace;
pub mod transport;

#[doc(hidden)]
pub use inventory as __inventory;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    AdminConfig, Config, ConfigError, ConsumerConfig, Exhausted, FailurePolicy, KinesisConfig,
    PartitionBy, RateLimit, RelayConfig, Transport, UndeclaredTopics, UnknownEvents,
};

/// Why [`start`] refused to start. Nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot work.
    #[error("invalid procon configuration: {0}")]
    Config(#[from] ConfigError),
    /// The transport rejected the relay's client configuration (an unknown or malformed
    /// option).
    #[error("could not create the relay's producer: {0}")]
    Transport(#[from] transport::TransportError),
    /// The consumer could not be set up (two handlers for one event, a rejected option...).
    #[error("could not start the consumer: {0}")]
    Consumer(#[from] consumer::ConsumerSetupError),
    /// The admin server could not listen (its address is in use...).
    #[cfg(feature = "admin")]
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    /// `start` was called outside a Tokio runtime.
    #[error("procon_runtime::start must be called from within a Tokio runtime (e.g. in `#[tokio::main]`)")]
    NoTokioRuntime,
}

/// A failure while stopping the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A background task panicked.
    #[error("the procon {task} task failed: {source}")]
    TaskFailed {
        /// Which task.
        task: &'static str,
        /// The join error.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// The running procon tasks. Stop them with [`Runtime::shutdown`]; dropping it also asks them
/// to stop, without waiting.
#[derive(Debug)]
pub struct Runtime {
    shutdown: watch::Sender<bool>,
    relay: Option<JoinHandle<()>>,
    stop_consumer: Arc<AtomicBool>,
    consumer: Option<JoinHandle<()>>,
    consumer_status: consumer::Status,
    admin: Option<JoinHandle<()>>,
}

/// Starts procon's background tasks on the current Tokio runtime: the relay (when enabled) and
/// the consumer (when enabled and handlers are registered: every `#[event_handler]` function
/// and `register_handler!` of the program is found, no list needed).
///
/// Fails fast on a configuration that cannot work; an unreachable database or broker is not an
/// error here: the tasks log it and retry with backoff until it is reachable.
pub fn start(config: Config) -> Result<Runtime, StartError> {
    config.validate()?;
    metrics::describe();
    let handle = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoTokioRuntime)?;
    let consumer = consumer::prepare(&config, consumer::registered_handlers()).map_err(
        |error| match &error {
            consumer::ConsumerSetupError::Transport(transport) => {
                match transport::kafka::rejected_option(transport) {
                    Some(named) => StartError::Config(named),
                    None => StartError::Consumer(error),
                }
            }
            _ => StartError::Consumer(error),
        },
    )?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut relay_health = None;
    let relay = if config.relay.enabled {
        relay::check_declarations(&config.relay)?;
        let database = relay_database_config(&config)?;
        let producer: Arc<dyn transport::Publisher> = match config.transport {
            config::Transport::Kafka => Arc::new(
                transport::kafka::KafkaPublisher::new(&config).map_err(|error| {
                    match transport::kafka::rejected_option(&error) {
                        Some(named) => StartError::Config(named),
                        None => StartError::Transport(error),
                    }
                })?,
            ),
            config::Transport::Kinesis => Arc::new(
                transport::kinesis::KinesisPublisher::new(&config)
                    .map_err(StartError::Transport)?,
            ),
        };
        let relay = relay::Relay::new(config.clone(), database, producer.clone());
        relay_health = Some((producer, relay.state.clone()));
        Some(handle.spawn(relay.run(shutdown_rx.clone())))
    } else {
        None
    };
    let consumer_status = consumer.as_ref().map(|c| c.status()).unwrap_or_default();
    let admin = start_admin(
        &handle,
        &config,
        relay_health,
        consumer.as_ref().map(|_| consumer_status.clone()),
        shutdown_rx,
    )?;
    let stop_consumer = Arc::new(AtomicBool::new(false));
    let consumer = consumer.map(|consumer| {
        let stop = stop_consumer.clone();
        handle.spawn_blocking(move || consumer.run(stop))
    });
    Ok(Runtime {
        shutdown,
        relay,
        stop_consumer,
        consumer,
        consumer_status,
        admin,
    })
}

/// The relay's publisher and state, for the admin server's readiness.
type RelayHealth = Option<(Arc<dyn transport::Publisher>, Arc<relay::RelayState>)>;

/// Starts the admin server when `admin.enabled` (validation refused it in a build without the
/// `admin` feature).
#[cfg(feature = "admin")]
fn start_admin(
    handle: &tokio::runtime::Handle,
    config: &Config,
    relay: RelayHealth,
    consumer: Option<consumer::Status>,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, StartError> {
    if !config.admin.enabled {
        return Ok(None);
    }
    let health = admin::Health {
        database_url: config.database_url.clone(),
        group: config.service_name.clone(),
        token: config.admin.token.clone(),
        relay,
        consumer,
        settings: Arc::new(config.clone()),
    };
    Ok(Some(admin::spawn(
        handle,
        config.admin.bind,
        health,
        shutdown,
    )?))
}

#[cfg(not(feature = "admin"))]
fn start_admin(
    _: &tokio::runtime::Handle,
    _: &Config,
    _: RelayHealth,
    _: Option<consumer::Status>,
    _: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, StartError> {
    Ok(None)
}

/// Starts only the relay, publishing through `publisher` instead of the Kafka producer
/// `start` builds: a transport of your own behind [`transport::Publisher`], or a wrapper
/// around [`transport::kafka::KafkaPublisher`] (to count, trace or inject failures in tests).
/// The consumer is not started, whatever the configuration says.
pub fn start_relay_with(
    config: Config,
    publisher: Arc<dyn transport::Publisher>,
) -> Result<Runtime, StartError> {
    config.validate()?;
    relay::check_declarations(&config.relay)?;
    let handle = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoTokioRuntime)?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let database = relay_database_config(&config)?;
    let relay = relay::Relay::new(config, database, publisher);
    Ok(Runtime {
        shutdown,
        relay: Some(handle.spawn(relay.run(shutdown_rx))),
        stop_consumer: Arc::new(AtomicBool::new(false)),
        consumer: None,
        consumer_status: consumer::Status::default(),
        admin: None,
    })
}

fn relay_database_config(
    config: &Config,
) -> Result<(tokio_postgres::Config, relay::Tls), ConfigError> {
    relay::relay_connection(&config.database_url).map_err(|e| ConfigError::Invalid {
        name: "database_url".to_owned(),
        value: config::redact(&config.database_url),
        reason: e.to_string(),
    })
}

impl Runtime {
    /// Messages the consumer is held on (handler error, undecodable payload, a stopped lane
    /// or partition), by partition and lane, with the error and the attempts so far.
    pub fn stalled_partitions(&self) -> Vec<consumer::Stall> {
        self.consumer_status.stalls()
    }

    /// The partitions this process's consumer owns now, as (topic, partition).
    pub fn assigned_partitions(&self) -> Vec<(String, i32)> {
        self.consumer_status.assigned_partitions()
    }

    /// A handle on the consumer's status that can be cloned and kept (also by handlers).
    pub fn consumer_status(&self) -> consumer::Status {
        self.consumer_status.clone()
    }

    /// Stops the tasks gracefully: the consumer finishes the units its processors are applying
    /// (bounded by `consumer.drain_timeout`), stores its watermarks and leaves its group; the relay stops reading the outbox, waits for the deliveries in flight
    /// (bounded by `relay.shutdown_timeout`) and deletes the rows that were delivered.
    pub async fn shutdown(mut self) -> Result<(), RuntimeError> {
        let _ = self.shutdown.send(true);
        self.stop_consumer.store(true, Ordering::Relaxed);
        if let Some(consumer) = self.consumer.take() {
            consumer.await.map_err(|source| RuntimeError::TaskFailed {
                task: "consumer",
                source,
            })?;
        }
        if let Some(relay) = self.relay.take() {
            relay.await.map_err(|source| RuntimeError::TaskFailed {
                task: "relay",
                source,
            })?;
        }
        if let Some(admin) = self.admin.take() {
            admin.await.map_err(|source| RuntimeError::TaskFailed {
                task: "admin server",
                source,
            })?;
        }
        Ok(())
    }

    /// Runs until Ctrl-C (SIGINT) or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> Result<(), RuntimeError> {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        self.shutdown().await
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Tells the tasks to stop even when the runtime is dropped without `shutdown`.
        let _ = self.shutdown.send(true);
        self.stop_consumer.store(true, Ordering::Relaxed);
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
