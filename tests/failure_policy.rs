//! Failure policies against real PostgreSQL and the real broker: bounded retries, then stop
//! (survives a restart, resumed by the operator), dead letter, or error event. Undecodable
//! payloads follow the same policies.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic, Collector};
use common::db::TestDb;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Integer};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use procon::prelude::*;
use procon::runtime::backoff::BackoffConfig;
use procon::{event_handler, Exhausted, FailurePolicy};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

const LONG: Duration = Duration::from_secs(60);
const JOBS: i64 = 40;
const POISON_ID: i64 = 7;
const POISON_SEQ: i64 = 2;

/// A job; the one with `poison` set always fails its handler.
#[derive(Debug, Clone, Serialize, Deserialize, Outbox)]
#[procon(topic = "jobs", entity = "job")]
struct Job {
    id: i64,
    seq: i64,
    poison: bool,
}

#[event_handler(topic = "jobs", event = "job.created")]
fn run_job(ctx: &mut HandlerContext<'_>, event: Event<Job>) -> Result<(), HandlerError> {
    let job = event
        .after
        .as_ref()
        .ok_or_else(|| HandlerError::msg("no after"))?;
    if job.poison {
        return Err(HandlerError::msg(format!("job {} is poison", job.id)));
    }
    let at = ctx.coordinates().clone();
    diesel::sql_query(
        "INSERT INTO jobs_done (id, seq, kafka_partition, kafka_offset) VALUES ($1, $2, $3, $4)",
    )
    .bind::<BigInt, _>(job.id)
    .bind::<BigInt, _>(job.seq)
    .bind::<Integer, _>(at.partition)
    .bind::<BigInt, _>(at.position.as_offset().expect("a Kafka offset"))
    .execute(ctx.conn())?;
    Ok(())
}

#[derive(Debug, QueryableByName, PartialEq, Eq, PartialOrd, Ord)]
struct Done {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Integer)]
    kafka_partition: i32,
    #[diesel(sql_type = BigInt)]
    kafka_offset: i64,
}

fn done(conn: &mut PgConnection) -> Vec<Done> {
    diesel::sql_query(
        "SELECT id, seq, kafka_partition, kafka_offset FROM jobs_done ORDER BY id, seq",
    )
    .load(conn)
    .unwrap()
}

struct Setup {
    db: TestDb,
    topic: String,
    /// The topic this binary's ledger handlers are pointed at (unused here).
    ledger_topic: String,
    group: String,
}

async fn setup(name: &str) -> Setup {
    common::init_logs();
    let db = TestDb::new(name);
    db.conn()
        .batch_execute(
            "CREATE TABLE jobs_done (id BIGINT, seq BIGINT, kafka_partition INT, \
             kafka_offset BIGINT, PRIMARY KEY (id, seq))",
        )
        .unwrap();
    let topic = unique_topic(name);
    let ledger_topic = unique_topic(&format!("{name}-ledger"));
    create_topic(&brokers(), &topic, 2).await;
    create_topic(&brokers(), &ledger_topic, 1).await;
    Setup {
        db,
        topic,
        ledger_topic,
        group: unique_topic(&format!("{name}-group")),
    }
}

impl Setup {
    /// A runtime relaying and consuming `jobs` with `exhausted` after 3 quick attempts, in
    /// strict partition order (`partition_by = partition`: a stop holds the whole partition;
    /// per-key stops are tested in tests/pipeline.rs).
    fn config(&self, exhausted: Exhausted) -> procon::Config {
        let mut config =
            common::consumer_config(&self.db, &brokers(), &self.group, &self.ledger_topic);
        config.consumer.partition_by = procon::PartitionBy::Partition;
        config
            .relay
            .topics
            .insert("jobs".into(), self.topic.clone());
        config
            .consumer
            .topics
            .insert("jobs".into(), self.topic.clone());
        config.consumer.failure_by_topic.insert(
            "jobs".into(),
            FailurePolicy {
                max_attempts: 3,
                backoff: BackoffConfig {
                    initial: Duration::from_millis(20),
                    max: Duration::from_millis(100),
                },
                exhausted,
            },
        );
        config
    }

    /// Emits `JOBS` jobs of seq 1..=3 each; job `POISON_ID` at seq `POISON_SEQ` is poison.
    fn emit_jobs(&self) {
        let mut conn = self.db.conn();
        conn.transaction(|conn| {
            for seq in 1..=3 {
                for id in 0..JOBS {
                    let poison = id == POISON_ID && seq == POISON_SEQ;
                    Job { id, seq, poison }.emit_created(conn)?;
                }
            }
            Ok::<_, procon::EmitError>(())
        })
        .unwrap();
    }

    fn wait_for_done(&self, count: usize) {
        common::wait_for(&format!("{count} jobs done"), LONG, || {
            (done(&mut self.db.conn()).len() >= count).then_some(())
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_message_stops_its_partition_across_restarts_until_resumed() {
    let setup = setup("policy_stop").await;
    setup.emit_jobs();
    let runtime = procon::start(setup.config(Exhausted::Stop)).unwrap();

    let stopped = common::wait_for("the partition to stop", LONG, || {
        let mut conn = setup.db.conn();
        let stopped = procon::stopped_partitions(&mut conn, Some(&setup.group)).unwrap();
        stopped.into_iter().next()
    });
    assert_eq!(stopped.topic, setup.topic);
    assert_eq!(stopped.attempts, 3);
    assert_eq!(stopped.event.as_deref(), Some("job.created"));
    assert!(
        stopped.error.contains("job 7 is poison"),
        "{}",
        stopped.error
    );
    common::wait_for("the runtime to report the stop", LONG, || {
        runtime
            .stalled_partitions()
            .iter()
            .any(|s| s.stopped)
            .then_some(())
    });

    // Everything of the other partition is applied; the stopped one holds at the poison.
    let other = 1 - stopped.partition;
    let expected_other = |rows: &[Done]| rows.iter().filter(|d| d.kafka_partition == other).count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = done(&mut setup.db.conn());
    let held: Vec<&Done> = rows
        .iter()
        .filter(|d| d.kafka_partition == stopped.partition)
        .collect();
    assert!(
        held.iter()
            .all(|d| d.kafka_offset < stopped.position.as_offset().unwrap()),
        "nothing behind the poison is applied in its partition"
    );
    assert!(!rows
        .iter()
        .any(|d| d.id == POISON_ID && d.seq >= POISON_SEQ));
    let other_count = expected_other(&rows);
    assert!(other_count > 0, "the other partition kept flowing");

    // A restart does not unstop it.
    runtime.shutdown().await.unwrap();
    let runtime = procon::start(setup.config(Exhausted::Stop)).unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let rows = done(&mut setup.db.conn());
    assert!(
        rows.iter()
            .filter(|d| d.kafka_partition == stopped.partition)
            .all(|d| d.kafka_offset < stopped.position.as_offset().unwrap()),
        "still stopped after a restart"
    );
    let mut conn = setup.db.conn();
    let still = procon::stopped_partitions(&mut conn, Some(&setup.group)).unwrap();
    assert_eq!(
        still,
        vec![stopped.clone()],
        "the restarted consumer did not even retry the poison (it would have re-stopped it)"
    );

    // The operator skips the poison: the partition goes on, the poison is never applied.
    let listed = cli(&setup, &["stopped", "--group", &setup.group]);
    assert!(listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("job 7 is poison"), "{listed}");
    let partition = stopped.partition.to_string();
    let resumed = cli(
        &setup,
        &[
            "resume",
            "--group",
            &setup.group,
            &setup.topic,
            &partition,
            "--skip",
        ],
    );
    let out = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{out}");
    assert!(
        out.contains(&format!("position {} skipped", stopped.position)),
        "{out}"
    );
    // Resuming what is not stopped is an error, and changes nothing.
    let again = cli(
        &setup,
        &["resume", "--group", &setup.group, &setup.topic, &partition],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("has no stop on"));
    setup.wait_for_done((JOBS * 3 - 1) as usize);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = done(&mut setup.db.conn());
    assert_eq!(
        rows.len() as i64,
        JOBS * 3 - 1,
        "every job but the poison, once"
    );
    assert!(procon::stopped_partitions(&mut conn, Some(&setup.group))
        .unwrap()
        .is_empty());
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letter_policy_sets_the_poison_aside_and_goes_on() {
    let setup = setup("policy_dlq").await;
    let dlq = format!("{}.dlq", setup.topic);
    create_topic(&brokers(), &dlq, 1).await;
    // Besides the poison event, a message that is not even JSON.
    produce_raw(
        &setup.topic,
        b"\xff not json",
        &[("content-type", "text/plain")],
    );
    setup.emit_jobs();
    let runtime = procon::start(setup.config(Exhausted::DeadLetter { topic: None })).unwrap();

    setup.wait_for_done((JOBS * 3 - 1) as usize);
    let mut collector = Collector::new(&brokers(), &dlq, 1);
    let letters = collector.at_least(2, LONG).to_vec();
    let letters_after = collector.drain_for(Duration::from_secs(1)).len();
    assert_eq!(letters_after, 2, "each failed message dead-lettered once");

    let poison = letters
        .iter()
        .find(|m| m.payload["after"]["poison"] == true)
        .expect("the poison event's original envelope");
    assert_eq!(poison.headers["procon-dlq-attempts"], "3");
    assert_eq!(poison.headers["procon-dlq-topic"], setup.topic);
    assert!(poison.headers["procon-dlq-error"].contains("job 7 is poison"));
    assert_eq!(poison.headers["procon-event"], "job.created");
    assert_ne!(
        poison.headers["procon-event-id"],
        poison.payload["event_id"].as_str().unwrap(),
        "a dead letter is an event of its own (a same-group handler of the dead-letter topic \
         must not take it for the consumed original)"
    );
    assert_eq!(
        poison.headers["procon-dlq-event-id"],
        poison.payload["event_id"].as_str().unwrap(),
        "the original event id travels in its own header"
    );
    let raw = letters
        .iter()
        .find(|m| m.headers.get("content-type").map(String::as_str) == Some("text/plain"))
        .expect("the undecodable message, with its original content type");
    assert_eq!(
        raw.payload,
        serde_json::Value::String("\u{fffd} not json".into())
    );
    assert_eq!(raw.headers["procon-dlq-offset"], "0");

    let rows = done(&mut setup.db.conn());
    let distinct: BTreeSet<(i64, i64)> = rows.iter().map(|d| (d.id, d.seq)).collect();
    assert_eq!(distinct.len(), rows.len(), "no job applied twice");
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_event_policy_emits_event_error_and_goes_on() {
    let setup = setup("policy_error_event").await;
    let errors = format!("{}.errors", setup.topic);
    create_topic(&brokers(), &errors, 1).await;
    setup.emit_jobs();
    let runtime = procon::start(setup.config(Exhausted::ErrorEvent { topic: None })).unwrap();

    setup.wait_for_done((JOBS * 3 - 1) as usize);
    let mut collector = Collector::new(&brokers(), &errors, 1);
    let received = collector.at_least(1, LONG).to_vec();
    let event = &received[0];
    assert_eq!(event.headers["procon-event"], "event.error.job.created");
    let failed: procon::Envelope<procon::FailedEvent> =
        serde_json::from_value(event.payload.clone()).unwrap();
    let after = failed.after.unwrap();
    assert_eq!(after.attempts, 3);
    assert_eq!(after.topic, setup.topic);
    assert_eq!(after.event.as_deref(), Some("job.created"));
    assert_eq!(after.payload["after"]["id"], POISON_ID);
    assert!(after.error.contains("job 7 is poison"));
    assert_eq!(
        failed.key,
        POISON_ID.to_string(),
        "keyed like the failed event"
    );
    assert_eq!(collector.drain_for(Duration::from_secs(1)).len(), 1);
    runtime.shutdown().await.unwrap();
}

/// Runs the operator CLI against the test schema.
fn cli(setup: &Setup, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .args(args)
        .env("PROCON_DATABASE_URL", &setup.db.url)
        .output()
        .expect("run the procon CLI")
}

/// Writes a message straight to the broker, as a foreign producer would.
fn produce_raw(topic: &str, payload: &[u8], headers: &[(&str, &str)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let mut owned = rdkafka::message::OwnedHeaders::new();
    for (key, value) in headers {
        owned = owned.insert(rdkafka::message::Header {
            key,
            value: Some(*value),
        });
    }
    producer
        .send(
            BaseRecord::to(topic)
                .key("raw")
                .payload(payload)
                .partition(0)
                .headers(owned),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
}
