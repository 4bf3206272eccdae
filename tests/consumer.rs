//! The exactly-once consumer against real PostgreSQL and the real broker.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::broker::{brokers, create_topic, produce_raw, unique_topic};
use common::db::TestDb;
use common::ledger::{effects, CreditOut, Entry, FlakyOut, OtherOut, Out};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use procon::prelude::*;

const LONG: Duration = Duration::from_secs(90);

fn out(topic: &str, account: i64, seq: i64) -> Out {
    Out {
        entity_topic: topic.to_owned(),
        entry: Entry { account, seq },
    }
}

/// Emits `count` credit events over `keys` accounts through the outbox (seq = 1..=count).
fn emit_credits(conn: &mut PgConnection, topic: &str, count: i64, keys: i64) {
    for chunk in 0..(count + 999) / 1000 {
        conn.transaction(|conn| {
            for seq in chunk * 1000 + 1..=((chunk + 1) * 1000).min(count) {
                CreditOut(out(topic, seq % keys, seq)).emit_created(conn)?;
            }
            Ok::<_, procon::EmitError>(())
        })
        .unwrap();
    }
}

/// Publishes everything in the outbox with a relay-only runtime, then stops it.
async fn publish_outbox(db: &TestDb) {
    let relay = procon::start(common::runtime_config(db, &brokers())).unwrap();
    common::wait_for("the outbox to be published", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });
    relay.shutdown().await.unwrap();
}

fn setup(name: &str) -> (TestDb, String) {
    common::init_logs();
    let db = TestDb::new(name);
    common::ledger::create_effects(&mut db.conn());
    (db, unique_topic(name))
}

/// Every effect's event id appears once, and there are `count` of them with seq 1..=count.
fn assert_exactly_once(db: &TestDb, count: i64) {
    let effects = effects(&mut db.conn());
    let mut per_event: HashMap<&str, usize> = HashMap::new();
    for effect in &effects {
        *per_event.entry(&effect.event_id).or_default() += 1;
    }
    let doubled: Vec<_> = per_event.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "events applied more than once: {doubled:?}"
    );
    assert_eq!(effects.len() as i64, count, "effect count");
    let checksum: i64 = effects.iter().map(|e| e.seq).sum();
    assert_eq!(
        checksum,
        count * (count + 1) / 2,
        "checksum of applied sequence numbers"
    );
}

fn wait_for_effects(db: &TestDb, count: usize) {
    common::wait_for(&format!("{count} effects"), LONG, || {
        (effects(&mut db.conn()).len() >= count).then_some(())
    });
}

#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    next_offset: i64,
}

fn positions(db: &TestDb, group: &str) -> Vec<i64> {
    diesel::sql_query(
        "SELECT next_offset::bigint AS next_offset FROM procon_consumer_offsets WHERE group_id = $1 ORDER BY partition",
    )
    .bind::<diesel::sql_types::Text, _>(group)
    .load::<Position>(&mut db.conn())
    .unwrap()
    .into_iter()
    .map(|p| p.next_offset)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handler_applies_each_event_once_and_stores_its_position() {
    let (db, topic) = setup("consume_once");
    let billing_once = &unique_topic("billing-once");
    create_topic(&brokers(), &topic, 3).await;
    emit_credits(&mut db.conn(), &topic, 300, 7);
    let runtime = procon::start(common::consumer_config(
        &db,
        &brokers(),
        billing_once,
        &topic,
    ))
    .unwrap();
    wait_for_effects(&db, 300);
    runtime.shutdown().await.unwrap();
    assert_exactly_once(&db, 300);
    // -1: a partition that received no message (nothing applied yet).
    let stored: i64 = positions(&db, billing_once).iter().map(|p| p.max(&0)).sum();
    assert_eq!(
        stored, 300,
        "the stored watermarks add up to every message of the 3 partitions"
    );

    // Restarting the group applies nothing again.
    let runtime = procon::start(common::consumer_config(
        &db,
        &brokers(),
        billing_once,
        &topic,
    ))
    .unwrap();
    emit_credits(&mut db.conn(), &topic, 1, 7); // one more event (seq 1 again), to know the consumer is live
    wait_for_effects(&db, 301);
    runtime.shutdown().await.unwrap();
    assert_eq!(effects(&mut db.conn()).len(), 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_event_id_delivered_twice_is_applied_once() {
    let (db, topic) = setup("dup_event_id");
    let billing_dup = &unique_topic("billing-dup");
    create_topic(&brokers(), &topic, 1).await;
    let event_id = uuid::Uuid::now_v7().to_string();
    let envelope = serde_json::json!({
        "schema_version": 1, "event_id": event_id, "event": "credit.created", "entity": "credit",
        "kind": "created", "key": "1", "occurred_at": "2026-11-23T10:00:00Z",
        "before": null, "after": {"account": 1, "seq": 1}, "metadata": {}
    })
    .to_string();
    let headers = [
        ("procon-event-id", event_id.as_str()),
        ("procon-event", "credit.created"),
    ];
    for _ in 0..2 {
        produce_raw(&brokers(), &topic, "1", envelope.as_bytes(), &headers).await;
    }
    let runtime = procon::start(common::consumer_config(
        &db,
        &brokers(),
        billing_dup,
        &topic,
    ))
    .unwrap();
    common::wait_for("both offsets consumed", LONG, || {
        (positions(&db, billing_dup) == [2]).then_some(())
    });
    runtime.shutdown().await.unwrap();
    let applied = effects(&mut db.conn());
    assert_eq!(
        applied.len(),
        1,
        "one effect for two deliveries: {applied:?}"
    );
    assert_eq!(applied[0].event_id, event_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_handler_is_retried_in_order_and_applied_once() {
    let (db, topic) = setup("flaky");
    let billing_flaky = &unique_topic("billing-flaky");
    create_topic(&brokers(), &topic, 1).await;
    db.conn()
        .transaction(|conn| {
            for seq in 1..=5 {
                FlakyOut(out(&topic, 1, seq)).emit_created(conn)?;
            }
            Ok::<_, procon::EmitError>(())
        })
        .unwrap();
    let runtime = procon::start(common::consumer_config(
        &db,
        &brokers(),
        billing_flaky,
        &topic,
    ))
    .unwrap();
    let stalled = common::wait_for("the failing event to stall its partition", LONG, || {
        runtime.stalled_partitions().into_iter().next()
    });
    assert_eq!(stalled.coordinates.position.as_offset(), Some(0));
    assert!(
        stalled.error.contains("flaky.created") && stalled.error.contains("fails its first two"),
        "{}",
        stalled.error
    );
    assert!(
        effects(&mut db.conn()).is_empty(),
        "nothing after the failing event was applied before it"
    );

    wait_for_effects(&db, 5);
    runtime.shutdown().await.unwrap();
    let seqs: Vec<i64> = effects(&mut db.conn()).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "applied once each, in offset order");
    assert_eq!(
        common::ledger::FLAKY_ATTEMPTS.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undecodable_message_stalls_its_partition_with_a_clear_error() {
    let (db, topic) = setup("undecodable");
    let billing_bad = &unique_topic("billing-bad");
    create_topic(&brokers(), &topic, 1).await;
    db.conn()
        .transaction(|conn| CreditOut(out(&topic, 1, 1)).emit_created(conn))
        .unwrap();
    publish_outbox(&db).await;
    let bad_id = uuid::Uuid::now_v7().to_string();
    produce_raw(
        &brokers(),
        &topic,
        "1",
        b"{ this is not json",
        &[
            ("procon-event", "credit.created"),
            ("procon-event-id", &bad_id),
        ],
    )
    .await;
    db.conn()
        .transaction(|conn| CreditOut(out(&topic, 1, 3)).emit_created(conn))
        .unwrap();
    publish_outbox(&db).await;

    let runtime = procon::start(common::consumer_config(
        &db,
        &brokers(),
        billing_bad,
        &topic,
    ))
    .unwrap();
    let stalled = common::wait_for("the bad message to stall", LONG, || {
        runtime
            .stalled_partitions()
            .into_iter()
            .find(|s| s.attempts >= 2)
    });
    assert_eq!(
        (
            stalled.coordinates.topic.as_str(),
            stalled.coordinates.partition,
            stalled.coordinates.position.as_offset().unwrap()
        ),
        (topic.as_str(), 0, 1)
    );
    assert!(
        stalled.error.contains("credit.created") && stalled.error.contains("decode"),
        "{}",
        stalled.error
    );
    assert!(
        stalled.error.contains(&format!("{topic}[0]@1")),
        "names topic, partition and offset: {}",
        stalled.error
    );
    let seqs: Vec<i64> = effects(&mut db.conn()).iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        [1],
        "the message after the bad one is not applied out of order"
    );
    assert_eq!(
        positions(&db, billing_bad),
        [1],
        "the position stays on the bad message"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_events_are_recorded_by_default_and_stop_when_configured() {
    let (db, topic) = setup("unknown_events");
    let billing_ignore = &unique_topic("billing-ignore");
    let billing_stop = &unique_topic("billing-stop");
    create_topic(&brokers(), &topic, 1).await;
    db.conn()
        .transaction(|conn| {
            OtherOut(out(&topic, 1, 1)).emit_created(conn)?;
            CreditOut(out(&topic, 1, 2)).emit_created(conn)
        })
        .unwrap();
    // Default: the unknown event is recorded as consumed and the next one is applied.
    let runtime = procon::start(common::consumer_config(
        &db,
        &brokers(),
        billing_ignore,
        &topic,
    ))
    .unwrap();
    wait_for_effects(&db, 1);
    runtime.shutdown().await.unwrap();
    assert_eq!(positions(&db, billing_ignore), [2]);

    // `stop`: another group stalls on the unknown event.
    let mut config = common::consumer_config(&db, &brokers(), billing_stop, &topic);
    config.consumer.unknown_events = procon::UnknownEvents::Stop;
    let runtime = procon::start(config).unwrap();
    let stalled = common::wait_for("the unknown event to stall", LONG, || {
        runtime.stalled_partitions().into_iter().next()
    });
    assert!(
        stalled.error.contains("other.created") && stalled.error.contains("no handler"),
        "{}",
        stalled.error
    );
    assert_eq!(stalled.coordinates.position.as_offset(), Some(0));
    runtime.shutdown().await.unwrap();
    assert_eq!(
        effects(&mut db.conn()).len(),
        1,
        "the stopped group applied nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreadable_position_holds_the_partition_instead_of_skipping() {
    let (db, topic) = setup("unreadable_position");
    let billing_held = &unique_topic("billing-held");
    create_topic(&brokers(), &topic, 2).await;
    emit_credits(&mut db.conn(), &topic, 50, 5);
    publish_outbox(&db).await;

    db.conn()
        .batch_execute("ALTER TABLE procon_consumer_offsets RENAME TO offsets_away")
        .unwrap();
    let mut config = common::consumer_config(&db, &brokers(), billing_held, &topic);
    config.relay.enabled = false;
    let runtime = procon::start(config).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        effects(&mut db.conn()).is_empty(),
        "nothing is applied while positions cannot be read"
    );

    db.conn()
        .batch_execute("ALTER TABLE offsets_away RENAME TO procon_consumer_offsets")
        .unwrap();
    wait_for_effects(&db, 50);
    runtime.shutdown().await.unwrap();
    assert_exactly_once(&db, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebalance_mid_stream_applies_each_event_exactly_once() {
    let (db, topic) = setup("rebalance");
    create_topic(&brokers(), &topic, 4).await;
    let group = &unique_topic("billing-rebalance");
    // The stream keeps flowing (100 events every 100 ms, through the relay) until the group
    // changed twice, so both rebalances happen mid-stream by construction.
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (url, topic, writing) = (db.url.clone(), topic.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            let mut written = 0i64;
            while writing.load(std::sync::atomic::Ordering::Relaxed) || written < 10_000 {
                conn.transaction(|conn| {
                    for seq in written + 1..=written + 100 {
                        CreditOut(out(&topic, seq % 50, seq)).emit_created(conn)?;
                    }
                    Ok::<_, procon::EmitError>(())
                })
                .unwrap();
                written += 100;
                std::thread::sleep(Duration::from_millis(100));
            }
            written
        })
    };
    let first = procon::start(common::consumer_config(&db, &brokers(), group, &topic)).unwrap();
    wait_for_effects(&db, 1000);
    assert_eq!(
        first.assigned_partitions().len(),
        4,
        "the only member reports every partition as its own"
    );
    let second = procon::start(common::consumer_config(&db, &brokers(), group, &topic)).unwrap();
    common::wait_for("the second member to own partitions", LONG, || {
        (!second.assigned_partitions().is_empty()).then_some(())
    });
    wait_for_effects(&db, effects(&mut db.conn()).len() + 500);
    first.shutdown().await.unwrap(); // a second rebalance: the survivor takes every partition
    wait_for_effects(&db, effects(&mut db.conn()).len() + 500);
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    wait_for_effects(&db, written as usize);
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.shutdown().await.unwrap();
    assert_exactly_once(&db, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handler_runs_once_after_crash() {
    let (db, topic) = setup("consumer_crash");
    let billing_crash = &unique_topic("billing-crash");
    create_topic(&brokers(), &topic, 4).await;
    emit_credits(&mut db.conn(), &topic, 12_000, 50);
    publish_outbox(&db).await;

    // Kafka offsets are never committed here, so every restart follows a crash that happened
    // after database commits and before any Kafka commit.
    let spawn = |round: usize| {
        common::process::spawn_consumer(
            &db.url,
            &brokers(),
            billing_crash,
            &topic,
            &format!("consumer_crash_{round}"),
        )
    };
    for (round, target) in [2_000usize, 5_000, 9_000].into_iter().enumerate() {
        let mut consumer = spawn(round);
        wait_for_effects(&db, target);
        consumer.kill().unwrap(); // SIGKILL: no shutdown, no commit of anything
        consumer.wait().unwrap();
    }
    let applied = effects(&mut db.conn()).len();
    assert!(
        applied < 12_000,
        "the last kill landed mid-stream ({applied} applied)"
    );
    let mut consumer = spawn(3);
    wait_for_effects(&db, 12_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    consumer.kill().unwrap();
    consumer.wait().unwrap();
    assert_exactly_once(&db, 12_000);
}

#[derive(QueryableByName)]
struct Remembered {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn applied_event_ids_are_forgotten_after_the_retention() {
    let (db, topic) = setup("dedup_retention");
    let group = &unique_topic("billing-retention");
    create_topic(&brokers(), &topic, 1).await;
    emit_credits(&mut db.conn(), &topic, 20, 3);
    // Another group's old record: its retention is its own business.
    diesel::sql_query(
        "INSERT INTO procon_consumed_events (group_id, event_id, consumed_at) \
         VALUES ('another-service', gen_random_uuid(), now() - interval '30 days')",
    )
    .execute(&mut db.conn())
    .unwrap();
    let mut config = common::consumer_config(&db, &brokers(), group, &topic);
    config.consumer.dedup_retention = Duration::from_secs(1);
    config.consumer.cleanup_interval = Duration::from_millis(300);
    let runtime = procon::start(config).unwrap();
    wait_for_effects(&db, 20);
    let remembered = || {
        diesel::sql_query("SELECT count(*) AS n FROM procon_consumed_events WHERE group_id = $1")
            .bind::<diesel::sql_types::Text, _>(group.as_str())
            .get_result::<Remembered>(&mut db.conn())
            .unwrap()
            .n
    };
    common::wait_for("expired event ids to be deleted", LONG, || {
        (remembered() == 0).then_some(())
    });
    runtime.shutdown().await.unwrap();
    assert_exactly_once(&db, 20);
    let others: Remembered = diesel::sql_query(
        "SELECT count(*) AS n FROM procon_consumed_events WHERE group_id = 'another-service'",
    )
    .get_result(&mut db.conn())
    .unwrap();
    assert_eq!(others.n, 1, "another group's records are left alone");
}
