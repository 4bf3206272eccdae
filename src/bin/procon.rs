//! `procon`: the operator's command line.
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
//! - `procon dlq list|show <p>:<pos>|redrive (--all | <p>:<pos>...) --topic T.dlq`: read a
//!   dead-letter topic (Kafka) and send letters back to the topic they failed on;
//! - `procon resume <topic> <partition> [--lane L] [--skip | --reset]`: resume a stopped
//!   partition (every stopped key of it, or one lane).
//!
//! Settings come from the environment (see `procon::Config::from_vars`), e.g.
//! `PROCON_DATABASE_URL=postgres://postgres@127.0.0.1/app PROCON_BROKERS=127.0.0.1:9092 procon relay`.
//! `--json` prints what `status`, `parked list` and `stopped` show as one JSON document, for
//! scripts. Every query is a runtime function (`procon::backlog`, `procon::parked_rows`...).

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use diesel::{Connection, PgConnection};

#[derive(Parser)]
#[command(
    name = "procon",
    version,
    about = "Operate procon's outbox, relay and consumers"
)]
struct Cli {
    /// Print the result as JSON (status, parked list, stopped, dlq list and show).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// The database a command works on, declared once for every command.
#[derive(Args)]
struct Database {
    /// PostgreSQL URL; defaults to PROCON_DATABASE_URL, then DATABASE_URL.
    #[arg(long, env = "PROCON_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
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
    /// Run the relay: publish the outbox to Kafka until SIGINT or SIGTERM. Settings come from
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
    /// Dead letters (policy `dead_letter`, Kafka): list a dead-letter topic, show a letter,
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
    /// Apply a topic's events again (a reinit): the group's stored positions move back and
    /// each event is applied once more. Stop the group's consumers first (a running one is
    /// fenced), start them after.
    Replay {
        #[command(flatten)]
        db: Database,
        /// The consumer group (service name).
        #[arg(long, env = "PROCON_SERVICE_NAME")]
        group: String,
        /// The topic, as consumed (physical name).
        #[arg(long)]
        topic: String,
        /// `earliest`, or a position (Kafka offset) in every partition.
        #[arg(long)]
        to: String,
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
enum DlqAction {
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
enum ParkedAction {
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

fn main() -> ExitCode {
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The settings template `procon init` writes.
const SETTINGS_TEMPLATE: &str = "\
# procon settings (every variable: procon::Config::from_vars, or the README's Configuration).
PROCON_DATABASE_URL=postgres://user@127.0.0.1:5432/app
PROCON_SERVICE_NAME=my-service
# kafka (default) or kinesis
PROCON_TRANSPORT=kafka
PROCON_BROKERS=127.0.0.1:9092
# PROCON_KINESIS_REGION=eu-west-1
# PROCON_RELAY_TOPICS=accounts=prod.accounts
# PROCON_CONSUMER_TOPICS=accounts=prod.accounts
# PROCON_CONSUMER_ON_FAILURE=stop
# PROCON_ADMIN_ENABLED=true
# PROCON_ADMIN_BIND=127.0.0.1:9464
";

fn init(dir: &std::path::Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut sql = String::from(
        "-- procon's migrations, in order. Apply them once, with your migration tool;\n\
         -- `procon migrate` does the same and records what it applied.\n",
    );
    for (name, up) in procon::runtime::store::migration_sql() {
        sql.push_str(&format!("\n-- {name}\n{up}\n"));
    }
    for (file, text) in [
        ("procon-migrations.sql", sql.as_str()),
        ("procon.env", SETTINGS_TEMPLATE),
    ] {
        let path = dir.join(file);
        if path.exists() {
            return Err(format!(
                "{} exists; remove it or choose another --dir",
                path.display()
            )
            .into());
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Settings for reading a topic: the environment's, with `brokers` over PROCON_BROKERS. Reading
/// needs no database, but the settings want a URL: a placeholder stands in when none is set.
fn kafka_settings(brokers: Option<String>) -> Result<procon::Config, BoxError> {
    let mut vars: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    if let Some(brokers) = brokers {
        vars.insert("PROCON_BROKERS".to_owned(), brokers);
    }
    vars.entry("PROCON_DATABASE_URL".to_owned())
        .or_insert_with(|| "postgres://localhost/unused".to_owned());
    Ok(procon::Config::from_vars(vars)?)
}

/// `<partition>:<position>` of a letter.
fn letter_place(text: &str) -> Result<(i32, procon::Position), BoxError> {
    let (partition, position) = text
        .split_once(':')
        .ok_or_else(|| format!("{text}: expected <partition>:<position>, e.g. 0:42"))?;
    Ok((partition.parse()?, position.parse()?))
}

fn dlq(
    json: bool,
    topic: &str,
    brokers: Option<String>,
    action: DlqAction,
) -> Result<(), BoxError> {
    let settings = kafka_settings(brokers)?;
    let letters = procon::dead_letters(&settings, topic, std::time::Duration::from_secs(15))
        .map_err(|e| format!("cannot read {topic}: {e} (is PROCON_BROKERS right?)"))?;
    let find = |place: &str| -> Result<procon::DeadLetter, BoxError> {
        let (partition, position) = letter_place(place)?;
        letters
            .iter()
            .find(|l| l.partition == partition && l.position == position)
            .cloned()
            .ok_or_else(|| {
                format!("{topic} has no letter at {place}: see `procon dlq list`").into()
            })
    };
    match action {
        DlqAction::List => {
            if json {
                return print_json(&letters);
            }
            if letters.is_empty() {
                println!("{topic} holds no letter");
            }
            for l in &letters {
                println!(
                    "{}:{} {} from {} (key {}): {}",
                    l.partition,
                    l.position,
                    l.event().unwrap_or("?"),
                    l.failed_topic().unwrap_or("?"),
                    l.key.as_deref().unwrap_or("-"),
                    l.error().unwrap_or("?")
                );
            }
            Ok(())
        }
        DlqAction::Show { letter } => {
            let letter = find(&letter)?;
            if json {
                return print_json(&letter);
            }
            for (name, value) in &letter.headers {
                println!("{name}: {value}");
            }
            println!("\n{}", letter.payload);
            Ok(())
        }
        DlqAction::Redrive {
            db,
            all,
            letters: chosen,
        } => {
            let picked: Vec<procon::DeadLetter> = if all {
                letters.clone()
            } else if chosen.is_empty() {
                return Err("say which letters: --all, or <partition>:<position>...".into());
            } else {
                chosen
                    .iter()
                    .map(|place| find(place))
                    .collect::<Result<_, _>>()?
            };
            let mut conn = connect(db)?;
            let sent = procon::redrive(&mut conn, &picked)?;
            println!(
                "{sent} letters written to the outbox; the relay publishes them in this order"
            );
            Ok(())
        }
    }
}

/// Prints `value` as JSON.
fn print_json(value: &impl serde::Serialize) -> Result<(), BoxError> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn run(cli: Cli) -> Result<(), BoxError> {
    let json = cli.json;
    match cli.command {
        Command::Init { dir } => init(&dir),
        Command::Replay {
            db,
            group,
            topic,
            to,
            dry_run,
            no_publish,
        } => {
            let from = match to.as_str() {
                "earliest" => procon::ReplayFrom::Earliest,
                other => procon::ReplayFrom::Position(other.parse().map_err(|_| {
                    format!("--to {other}: expected `earliest` or a position (a Kafka offset); timestamps are not supported yet")
                })?),
            };
            let mut conn = connect(db)?;
            let plan = procon::replay(&mut conn, &group, &topic, from, !no_publish, dry_run)?;
            if json {
                return print_json(&plan);
            }
            for step in &plan {
                println!(
                    "{topic}[{}]: events below {} applied again, from {}",
                    step.partition,
                    step.from,
                    step.to
                        .map_or("the oldest one".to_owned(), |p| format!("position {p}"))
                );
            }
            match (plan.is_empty(), dry_run) {
                (true, _) => {
                    println!("nothing to replay: every partition is stored before that position")
                }
                (false, true) => println!("dry run: nothing changed"),
                (false, false) => println!(
                    "replay recorded{}; start {group}'s consumers",
                    if no_publish {
                        " (handlers publish nothing while replaying)"
                    } else {
                        ""
                    }
                ),
            }
            Ok(())
        }
        Command::Dlq {
            topic,
            brokers,
            action,
        } => dlq(json, &topic, brokers, action),
        Command::Migrate { db } => {
            let mut conn = connect(db)?;
            let applied = procon::migrate(&mut conn)?;
            if applied.is_empty() {
                println!("procon tables are up to date");
            }
            for version in applied {
                println!("applied {version}");
            }
            Ok(())
        }
        Command::Relay { topics, settings } => {
            let mut vars: std::collections::BTreeMap<String, String> = std::env::vars().collect();
            for setting in settings {
                let (name, value) = setting.split_once('=').ok_or_else(|| {
                    format!(
                        "--set {setting}: expected NAME=VALUE, e.g. PROCON_RELAY_BATCH_SIZE=500"
                    )
                })?;
                vars.insert(name.trim().to_owned(), value.to_owned());
            }
            if !topics.is_empty() {
                let mut map = vars.remove("PROCON_RELAY_TOPICS").unwrap_or_default();
                for topic in topics {
                    if !map.is_empty() {
                        map.push(',');
                    }
                    map.push_str(&topic);
                }
                vars.insert("PROCON_RELAY_TOPICS".to_owned(), map);
            }
            let config = procon::Config::from_vars(vars)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let procon = procon::start(config)?;
                procon.run_until_signal().await?;
                Ok(())
            })
        }
        Command::Status { db } => {
            let mut conn = connect(db)?;
            let backlog = procon::backlog(&mut conn)?;
            let parked = procon::parked_rows(&mut conn)?;
            if json {
                return print_json(&serde_json::json!({ "outbox": backlog, "parked": parked }));
            }
            match backlog.oldest_age_seconds {
                Some(age) => println!("{} events waiting, oldest {age:.1} s old", backlog.waiting),
                None => println!("outbox empty"),
            }
            if !parked.is_empty() {
                println!(
                    "{} events parked (the broker rejected them; see `procon parked list`):",
                    parked.len()
                );
                for row in &parked {
                    print_parked(row);
                }
            }
            Ok(())
        }
        Command::Parked { db, action } => {
            let mut conn = connect(db)?;
            match action {
                ParkedAction::List => {
                    let parked = procon::parked_rows(&mut conn)?;
                    if json {
                        return print_json(&parked);
                    }
                    if parked.is_empty() {
                        println!("no parked event");
                    }
                    for row in &parked {
                        print_parked(row);
                    }
                }
                ParkedAction::Retry { id } => {
                    if !procon::retry_parked(&mut conn, id)? {
                        return Err(
                            format!("no parked event {id}: see `procon parked list`").into()
                        );
                    }
                    println!(
                        "parked event {id} is back in the outbox; the relay publishes it next"
                    );
                }
                ParkedAction::Drop { id } => {
                    if !procon::drop_parked(&mut conn, id)? {
                        return Err(
                            format!("no parked event {id}: see `procon parked list`").into()
                        );
                    }
                    println!("parked event {id} dropped; the later events of its key flow again");
                }
            }
            Ok(())
        }
        Command::Stopped { db, group } => {
            let mut conn = connect(db)?;
            let stopped = procon::stopped_partitions(&mut conn, group.as_deref())?;
            if json {
                return print_json(&stopped);
            }
            if stopped.is_empty() {
                println!("no stopped partition");
            }
            for s in stopped {
                let lane = if s.lane.is_empty() {
                    "whole partition"
                } else {
                    s.lane.as_str()
                };
                println!(
                    "{} {}[{}] ({lane})@{} event {} ({}) after {} attempts since {}: {}",
                    s.group_id,
                    s.topic,
                    s.partition,
                    s.position,
                    s.event.as_deref().unwrap_or("?"),
                    s.event_id
                        .map_or_else(|| "no id".to_owned(), |id| id.to_string()),
                    s.attempts,
                    s.stopped_at,
                    s.error
                );
            }
            Ok(())
        }
        Command::Resume {
            db,
            group,
            topic,
            partition,
            skip,
            reset,
            lane,
        } => {
            let mut conn = connect(db)?;
            let how = match (skip, reset) {
                (true, _) => procon::Resume::Skip,
                (_, true) => procon::Resume::Reset,
                _ => procon::Resume::Retry,
            };
            let resumed = match &lane {
                Some(lane) => procon::resume_lane(&mut conn, &group, &topic, partition, lane, how)?,
                None => procon::resume_partition(&mut conn, &group, &topic, partition, how)?,
            };
            if resumed.is_empty() {
                return Err(format!(
                    "{group} has no stop on {topic}[{partition}]{}: see `procon stopped` (the topic is the physical name)",
                    lane.map(|l| format!(" lane {l}")).unwrap_or_default()
                )
                .into());
            }
            for s in resumed {
                let what = match (how, s.reset_to) {
                    (procon::Resume::Skip, _) => "skipped",
                    (procon::Resume::Reset, Some(_)) => "reset",
                    _ => "will be retried",
                };
                let lane = if s.lane.is_empty() {
                    "whole partition"
                } else {
                    s.lane.as_str()
                };
                println!(
                    "resumed {topic}[{partition}] ({lane}): position {} {what}",
                    s.position
                );
            }
            Ok(())
        }
    }
}

fn print_parked(row: &procon::ParkedRow) {
    println!(
        "{} {} {}[key {}] event {} after {} attempts, parked {}, {} events of its key waiting: {}",
        row.id,
        row.event_name,
        row.topic,
        row.key,
        row.event_id,
        row.attempts,
        row.parked_at,
        row.waiting_behind,
        row.error
    );
}

fn connect(db: Database) -> Result<PgConnection, BoxError> {
    let url = db
        .database_url
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .ok_or("no database: pass --database-url or set PROCON_DATABASE_URL")?;
    PgConnection::establish(&url).map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is PostgreSQL running, and the URL right?)",
            procon::config::redact(&url)
        )
        .into()
    })
}
