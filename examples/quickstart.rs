//! The quickstart: emit events in Diesel transactions and watch them arrive as a consumer sees
//! them.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Uses PostgreSQL at `PROCON_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! in a schema `procon_quickstart` it recreates) and the brokers at `PROCON_BROKERS`; with no
//! broker configured it starts librdkafka's in-process mock cluster, so nothing else is needed.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use procon::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

diesel::table! {
    /// The service's accounts.
    accounts (id) {
        /// Primary key, also the Kafka key of the account's events.
        id -> BigInt,
        /// Published.
        email -> Text,
        /// Never published (`#[procon(skip)]`).
        password_hash -> Text,
    }
}

/// An account; its password hash never leaves the service.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize, Outbox)]
#[diesel(table_name = accounts)]
#[procon(topic = "accounts", entity = "account", key = id)]
struct Account {
    id: i64,
    email: String,
    #[procon(skip)]
    password_hash: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .init();

    // The broker: the configured one, or an in-process mock cluster.
    let mock;
    let brokers = match std::env::var("PROCON_BROKERS") {
        Ok(brokers) => brokers,
        Err(_) => {
            mock = MockCluster::new(1)?;
            mock.create_topic("accounts", 3, 1)?;
            println!("no PROCON_BROKERS set: using librdkafka's in-process mock cluster");
            mock.bootstrap_servers()
        }
    };

    // The database: a fresh schema with procon's tables and ours.
    let base = std::env::var("PROCON_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    PgConnection::establish(&base)?.batch_execute(
        "DROP SCHEMA IF EXISTS procon_quickstart CASCADE; CREATE SCHEMA procon_quickstart;",
    )?;
    let url = format!(
        "{base}{}options=-csearch_path%3Dprocon_quickstart",
        if base.contains('?') { '&' } else { '?' }
    );
    let mut conn = PgConnection::establish(&url)?;
    procon::migrate(&mut conn)?;
    conn.batch_execute(
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, email TEXT NOT NULL, password_hash TEXT NOT NULL)",
    )?;

    // The relay publishes each event once its transaction commits.
    let runtime = procon::start(procon::Config::new(url, brokers.clone()))?;

    let ada = Account {
        id: 1,
        email: "ada@example.com".into(),
        password_hash: "x1".into(),
    };
    // The ids of this run's events: the topic may hold earlier runs' events too.
    let mut ours = std::collections::HashSet::new();
    ours.insert(conn.transaction(|conn| {
        diesel::insert_into(accounts::table)
            .values(&ada)
            .execute(conn)?;
        procon::OutboxEvent::created(&ada)
            .metadata("request_id", "req-1")
            .emit(conn)
    })?);

    let renamed = Account {
        email: "ada@lovelace.example".into(),
        ..ada.clone()
    };
    ours.insert(conn.transaction(|conn| {
        diesel::update(accounts::table.find(1))
            .set(accounts::email.eq(&renamed.email))
            .execute(conn)?;
        renamed.emit_updated(&ada, conn)
    })?);

    // Rolled back: neither the row nor its event exists.
    let ghost = Account {
        id: 2,
        email: "ghost@example.com".into(),
        password_hash: "x2".into(),
    };
    let rolled_back = conn.transaction(|conn| {
        diesel::insert_into(accounts::table)
            .values(&ghost)
            .execute(conn)?;
        ghost.emit_created(conn)?;
        Err::<(), _>(diesel::result::Error::RollbackTransaction)
    });
    println!("rolled back a transaction that emitted account 2: {rolled_back:?}");

    ours.insert(conn.transaction(|conn| {
        diesel::delete(accounts::table.find(1)).execute(conn)?;
        renamed.emit_deleted(conn)
    })?);

    // Read the topic as any Kafka consumer would: every partition it has (a real broker may
    // have more than the mock's 3), showing this run's events only.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "quickstart-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let partitions = loop {
        // The relay's first send creates the topic on a broker that auto-creates topics.
        let metadata = consumer.fetch_metadata(Some("accounts"), Duration::from_secs(5))?;
        let count = metadata
            .topics()
            .first()
            .filter(|topic| topic.error().is_none())
            .map_or(0, |topic| topic.partitions().len());
        if count > 0 || std::time::Instant::now() > deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment.add_partition_offset("accounts", partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen = 0;
    while seen < 3 && std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let event_id = message
            .headers()
            .and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == "procon-event-id")
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
            .unwrap_or_default();
        if !ours.iter().any(|id| id.to_string() == event_id) {
            continue; // an earlier run's event
        }
        seen += 1;
        println!(
            "\n── partition {} offset {} key {:?}",
            message.partition(),
            message.offset(),
            message.key().map(String::from_utf8_lossy)
        );
        if let Some(headers) = message.headers() {
            for header in headers.iter() {
                println!(
                    "   {}: {}",
                    header.key,
                    header
                        .value
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default()
                );
            }
        }
        let envelope: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default())?;
        println!("{}", serde_json::to_string_pretty(&envelope)?);
    }
    runtime.shutdown().await?;
    if seen < 3 {
        return Err(format!("only {seen} of 3 events arrived within 30 s").into());
    }
    println!("\n3 committed events published in order; the rolled-back one never existed.");
    Ok(())
}
