//! `procon`: the operator's command line, as a library (the `procon` binary is [`main`]).
//!
//! - `procon init [--dir D]`: write procon's migrations as one SQL file and a settings template;
//! - `procon migrate`: apply procon's migrations to the database;
//! - `procon relay [--topic TOPIC=PHYSICAL]... [--set PROCON_NAME=VALUE]...`: run the outbox
//!   relay until SIGINT / SIGTERM;
//! - `procon status`: how many events wait in the outbox, the oldest one's age, and the parked
//!   events (rows the broker rejected on every attempt);
//! - `procon parked list|retry <id>|drop <id>`: show parked events, put one back in the
//!   outbox (published before the later events of its key), or drop it for good;
//! - `procon stopped`: partitions stopped on a failed event;
//! - `procon resume <topic> <partition> [--lane L] [--skip | --reset]`: resume a stopped
//!   partition (every stopped key of it, or one lane);
//! - `procon dlq --topic T.dlq list|show <p>:<pos>|redrive (--all | <p>:<pos>...)`: read a
//!   dead-letter topic (Kafka, or Kinesis) and send letters back to the topic they failed on;
//! - `procon schemas list|register|check`: the Avro schemas of this program's models, against
//!   the schema registry (run from a service's own binary, which links its models);
//! - `procon replay --group G --topic T --to earliest|<timestamp>|<position> [--dry-run]
//!   [--no-publish]`: apply a topic's events again (KaufmannEx's reinit).
//!
//! Settings come from the environment (see `procon::Config::from_vars`), e.g.
//! `PROCON_DATABASE_URL=postgres://postgres@127.0.0.1/app PROCON_BROKERS=127.0.0.1:9092 procon relay`.
//! `--json` prints what a command shows as one JSON document, for scripts; progress bars (on
//! standard error, only on a terminal and without `--json`) follow the long operations. Every
//! query is a runtime function (`procon::backlog`, `procon::parked_rows`, `procon::replay`...):
//! nothing here duplicates the runtime's SQL.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod consumers;
mod dlq;
mod outbox;
mod output;
mod schemas;
mod setup;

use args::{Cli, Command};

/// What a command failed with: a message saying what to do, and its causes.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the command line of this process (`std::env::args`): the whole `procon` binary.
/// Logs go to standard error (`RUST_LOG`, default `info`); a failure is printed with its
/// causes and ends in exit code 1.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("procon: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), BoxError> {
    let json = cli.json;
    match cli.command {
        Command::Init { dir } => setup::init(&dir),
        Command::Migrate { db } => setup::migrate(db),
        Command::Relay { topics, settings } => setup::relay(topics, settings),
        Command::Status { db } => outbox::status(json, db),
        Command::Parked { db, action } => outbox::parked(json, db, action),
        Command::Stopped { db, group } => consumers::stopped(json, db, group),
        Command::Resume {
            db,
            group,
            topic,
            partition,
            skip,
            reset,
            lane,
        } => consumers::resume(db, &group, &topic, partition, (skip, reset), lane),
        Command::Replay {
            db,
            group,
            topic,
            to,
            brokers,
            dry_run,
            no_publish,
        } => consumers::replay(
            json,
            db,
            consumers::ReplayRequest {
                group,
                topic,
                to,
                brokers,
                dry_run,
                publish: !no_publish,
            },
        ),
        Command::Dlq {
            topic,
            brokers,
            action,
        } => dlq::run(json, &topic, brokers, action),
        Command::Schemas {
            registry,
            topics,
            action,
        } => schemas::run(json, registry, topics, action),
    }
}
