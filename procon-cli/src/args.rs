//! The command line's arguments (clap): every command, its options and their help.

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "procon",
    version,
    about = "Operate procon's outbox, relay and consumers"
)]
pub(crate) struct Cli {
    /// Print the result as JSON (status, parked list, stopped, dlq list and show, replay).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The database a command works on, declared once for every command.
#[derive(Args)]
pub(crate) struct Database {
    /// PostgreSQL URL; defaults to PROCON_DATABASE_URL, then DATABASE_URL.
    #[arg(long, env = "PROCON_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Write procon's migrations as one SQL file (for a migration tool of your own) and a
    /// template of the settings (`procon.env`) into a directory.
    Init {
        /// Where to write `procon-migrations.sql` and `procon.env`.
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
    },
    /// Apply procon's migrations (creates `procon_outbox`).
    Migrate {
        #[command(flatten)]
        db: Database,
    },
    /// Run the relay: publish the outbox (Kafka or Kinesis) until SIGINT or SIGTERM. Settings come from
    /// the environment (PROCON_*); the options below override it.
    Relay {
        /// Publish topic TOPIC (as models name it) to PHYSICAL; repeatable. Same as
        /// PROCON_RELAY_TOPICS=TOPIC=PHYSICAL,...
        #[arg(long = "topic", value_name = "TOPIC=PHYSICAL")]
        topics: Vec<String>,
        /// Any setting, as its environment variable: `--set PROCON_RELAY_BATCH_SIZE=500`,
        /// `--set PROCON_KAFKA_LINGER_MS=5`; repeatable.
        #[arg(long = "set", value_name = "PROCON_NAME=VALUE")]
        settings: Vec<String>,
    },
    /// Show the outbox backlog.
    Status {
        #[command(flatten)]
        db: Database,
    },
    /// Events the relay parked because the broker rejected them on every attempt.
    Parked {
        #[command(flatten)]
        db: Database,
        #[command(subcommand)]
        action: ParkedAction,
    },
    /// Dead letters (policy `dead_letter`; a Kafka topic, or a Kinesis stream with
    /// PROCON_TRANSPORT=kinesis): list a dead-letter topic, show a letter,
    /// redrive letters to the topic they failed on (through the outbox, in order).
    Dlq {
        /// The dead-letter topic (by default `<topic>.dlq`).
        #[arg(long)]
        topic: String,
        /// Kafka bootstrap servers; defaults to PROCON_BROKERS.
        #[arg(long, env = "PROCON_BROKERS")]
        brokers: Option<String>,
        #[command(subcommand)]
        action: DlqAction,
    },
    /// The Avro schemas of this program's `format = "avro"` models: list them, register them,
    /// or check them against the registry (exit code 1 on a breaking change). Run it from your
    /// service's own binary (`fn main() { procon_cli::main() }`), which links the models.
    Schemas {
        /// The registry's URL; defaults to PROCON_SCHEMA_REGISTRY_URL.
        #[arg(long, env = "PROCON_SCHEMA_REGISTRY_URL", hide_env_values = true)]
        registry: Option<String>,
        /// Publish topic TOPIC (as models name it) to PHYSICAL, as the relay does (subjects
        /// are named after physical topics); repeatable. Defaults to PROCON_RELAY_TOPICS.
        #[arg(
            long = "topic",
            value_name = "TOPIC=PHYSICAL",
            env = "PROCON_RELAY_TOPICS",
            value_delimiter = ','
        )]
        topics: Vec<String>,
        #[command(subcommand)]
        action: SchemasAction,
    },
    /// Apply a topic's events again (a reinit): the group's stored positions move back and
    /// each event is applied once more. Running consumers of the group follow within a second;
    /// stopped ones start from there.
    Replay {
        #[command(flatten)]
        db: Database,
        /// The consumer group (service name).
        #[arg(long, env = "PROCON_SERVICE_NAME")]
        group: String,
        /// The topic, as consumed (physical name).
        #[arg(long)]
        topic: String,
        /// `earliest`; a time (RFC 3339, e.g. `2026-12-01T09:30:00Z`: each partition from its
        /// first event written at or after it, from the broker or Kinesis); or a position (a Kafka
        /// offset) in every partition.
        #[arg(long)]
        to: String,
        /// Kafka bootstrap servers, to find the positions of a time; defaults to
        /// PROCON_BROKERS.
        #[arg(long, env = "PROCON_BROKERS")]
        brokers: Option<String>,
        /// Show what would move; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// What handlers emit while they replay is not published (nor realtime notifications).
        #[arg(long)]
        no_publish: bool,
    },
    /// List partitions stopped on an event that failed every attempt.
    Stopped {
        #[command(flatten)]
        db: Database,
        /// Only this consumer group (service name).
        #[arg(long)]
        group: Option<String>,
    },
    /// Resume a stopped partition: retry the failed event, or skip it with --skip.
    Resume {
        #[command(flatten)]
        db: Database,
        /// The consumer group (service name).
        #[arg(long, env = "PROCON_SERVICE_NAME")]
        group: String,
        /// The topic, as consumed.
        topic: String,
        /// The partition.
        partition: i32,
        /// Record the failed event as consumed without applying it.
        #[arg(long, conflicts_with = "reset")]
        skip: bool,
        /// Accept the proposed position of a partition whose stored position was outside the
        /// log's range (events in between are not applied).
        #[arg(long)]
        reset: bool,
        /// Resume only this lane (`key:<key>`, as `procon stopped` lists it).
        #[arg(long)]
        lane: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum SchemasAction {
    /// Each model's entity, subject, record name and (with a registry) its id there.
    List,
    /// Register each schema (a new subject gets the configured compatibility level).
    Register,
    /// Check each schema against its subject's versions at PROCON_SCHEMA_REGISTRY_COMPATIBILITY
    /// (default BACKWARD); registers nothing.
    Check,
}

#[derive(Subcommand)]
pub(crate) enum DlqAction {
    /// Every letter: where it sits, the event, the topic it failed on, the error.
    List,
    /// One letter in full: headers and payload.
    Show {
        /// `<partition>:<position>`, as `procon dlq list` shows it.
        letter: String,
    },
    /// Send letters back to the topic they failed on, in order, under new event ids (deploy the
    /// fix first). The letters stay in the dead-letter topic.
    Redrive {
        #[command(flatten)]
        db: Database,
        /// Every letter of the topic.
        #[arg(long, conflicts_with = "letters")]
        all: bool,
        /// `<partition>:<position>` of each letter, as `procon dlq list` shows them.
        letters: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum ParkedAction {
    /// List parked events with their error and the events of their key waiting behind them.
    List,
    /// Put parked event `id` back into the outbox: the relay publishes it again, before the
    /// later events of its key (fix the cause first: size limit, permission, topic).
    Retry {
        /// The parked row's id, as `procon parked list` shows it.
        id: i64,
    },
    /// Drop parked event `id` for good: it is never published; its key's later events flow.
    Drop {
        /// The parked row's id, as `procon parked list` shows it.
        id: i64,
    },
}
