//! The relay against real PostgreSQL and the real broker: at least once, in order per key,
//! nothing lost across kills, broker outages and database outages.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Child;
use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic, Collector, Received};
use common::db::TestDb;
use common::model::{upsert_and_emit, Account, Routed};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use procon::prelude::*;

const LONG: Duration = Duration::from_secs(60);

#[derive(QueryableByName)]
struct EventId {
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_id: String,
}

/// Event ids still in the outbox.
fn outbox_ids(db: &TestDb) -> BTreeSet<String> {
    diesel::sql_query("SELECT event_id::text AS event_id FROM procon_outbox")
        .load::<EventId>(&mut db.conn())
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

/// Emits `per_key` events for each of `keys` accounts, in one transaction, with `seq` counting
/// 1.. per key. Returns their event ids.
fn emit_sequences(
    conn: &mut PgConnection,
    topic: &str,
    keys: i64,
    per_key: i64,
    first_seq: i64,
) -> Vec<String> {
    conn.transaction(|conn| {
        let mut ids = Vec::new();
        for seq in first_seq..first_seq + per_key {
            for id in 0..keys {
                let account = Account {
                    id,
                    owner: format!("o{id}"),
                    seq,
                    secret: String::new(),
                };
                ids.push(
                    Routed {
                        topic: topic.to_owned(),
                        account,
                    }
                    .emit_created(conn)?
                    .to_string(),
                );
            }
        }
        Ok::<_, procon::EmitError>(ids)
    })
    .unwrap()
}

/// Checks that every key's sequence numbers arrive in increasing order, ignoring redeliveries
/// (the same event id seen again), and returns the distinct event ids.
fn assert_order_per_key(received: &[Received]) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut last_seq: BTreeMap<(i32, String), i64> = BTreeMap::new();
    let mut key_partition: BTreeMap<String, i32> = BTreeMap::new();
    for message in received {
        let partition = *key_partition
            .entry(message.key.clone())
            .or_insert(message.partition);
        assert_eq!(
            partition, message.partition,
            "key {} moved partitions",
            message.key
        );
        if !seen.insert(message.event_id().to_owned()) {
            continue;
        }
        let seq = message.payload["after"]["seq"]
            .as_i64()
            .expect("seq in payload");
        let last = last_seq
            .entry((message.partition, message.key.clone()))
            .or_insert(0);
        assert!(
            seq > *last,
            "key {}: seq {seq} arrived after {last}",
            message.key
        );
        *last = seq;
    }
    seen
}

/// Reads until every id of `expected` arrived (duplicates do not count), in partition order.
fn collect_all(collector: &mut Collector, expected: &HashSet<String>) -> Vec<Received> {
    collector.until(LONG, |received| {
        let ids: HashSet<&str> = received.iter().map(Received::event_id).collect();
        expected.iter().all(|id| ids.contains(id.as_str()))
    });
    by_partition(collector.drain_for(Duration::from_millis(300)))
}

/// Asserts two id sets are equal, reporting only counts and a few differences.
fn assert_same_ids(got: &HashSet<String>, expected: &HashSet<String>) {
    let missing: Vec<_> = expected.difference(got).take(5).collect();
    let unexpected: Vec<_> = got.difference(expected).take(5).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{} of {} expected events missing (e.g. {missing:?}), {} unexpected (e.g. {unexpected:?})",
        expected.difference(got).count(),
        expected.len(),
        got.difference(expected).count(),
    );
}

/// Messages of all partitions, each partition in offset order (the order a consumer sees).
fn by_partition(received: &[Received]) -> Vec<Received> {
    let mut sorted = received.to_vec();
    sorted.sort_by_key(|m| (m.partition, m.offset));
    sorted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_keeps_order_per_key() {
    common::init_logs();
    let db = TestDb::new("order_per_key");
    let topic = unique_topic("order");
    create_topic(&brokers(), &topic, 8).await;
    let mut config = common::runtime_config(&db, &brokers());
    config.relay.batch_size = 100;
    let runtime = procon::start(config).unwrap();

    // 1,000 events over 50 keys from 4 concurrent writers, while the relay is running.
    let writers: Vec<_> = (0..4u64)
        .map(|writer| {
            let url = db.url.clone();
            let topic = topic.clone();
            std::thread::spawn(move || {
                let mut conn = PgConnection::establish(&url).unwrap();
                let mut rng = fastrand::Rng::with_seed(writer);
                for _ in 0..250 {
                    upsert_and_emit(&mut conn, &topic, rng.i64(0..50));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }

    let mut collector = Collector::new(&brokers(), &topic, 8);
    collector.at_least(1000, LONG);
    let received = by_partition(collector.drain_for(Duration::from_millis(300)));
    assert_eq!(
        received.len(),
        1000,
        "exactly the emitted events, no duplicates in a clean run"
    );
    // Per key the sequence is exactly 1..=n: nothing missing, nothing reordered.
    let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for message in &received {
        per_key
            .entry(message.key.clone())
            .or_default()
            .push(message.payload["after"]["seq"].as_i64().unwrap());
    }
    assert_eq!(per_key.len(), 50);
    for (key, seqs) in per_key {
        let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
        assert_eq!(seqs, expected, "key {key}");
    }
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_publishes_rows_committed_out_of_id_order() {
    common::init_logs();
    let db = TestDb::new("out_of_id_order");
    let topic = unique_topic("late-commit");
    create_topic(&brokers(), &topic, 2).await;
    let runtime = procon::start(common::runtime_config(&db, &brokers())).unwrap();

    // The slow transaction draws the lower outbox id but commits last.
    let mut slow = db.conn();
    AnsiTransactionManager::begin_transaction(&mut slow).unwrap();
    let late = Routed {
        topic: topic.clone(),
        account: Account {
            id: 1,
            owner: "late".into(),
            seq: 1,
            secret: String::new(),
        },
    };
    let late_id = late.emit_created(&mut slow).unwrap().to_string();

    upsert_and_emit(&mut db.conn(), &topic, 2);
    let mut collector = Collector::new(&brokers(), &topic, 2);
    collector.at_least(1, LONG);
    assert_eq!(collector.received[0].key, "2");
    common::wait_for("the relay to delete the published row", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });

    AnsiTransactionManager::commit_transaction(&mut slow).unwrap();
    let received = collector.at_least(2, LONG);
    assert_eq!(
        received[1].event_id(),
        late_id,
        "the late-committed event with the lower id was published"
    );
    runtime.shutdown().await.unwrap();
}

fn spawn_relay(db: &TestDb, name: &str) -> Child {
    common::process::spawn_relay(&db.url, &brokers(), name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_killed_mid_batch_loses_nothing() {
    common::init_logs();
    let db = TestDb::new("relay_killed");
    let topic = unique_topic("killed");
    create_topic(&brokers(), &topic, 4).await;
    let emitted: BTreeSet<String> = emit_sequences(&mut db.conn(), &topic, 50, 400, 1)
        .into_iter()
        .collect();
    let total = emitted.len() as i64;

    // Kill -9 the relay process twice while it is draining, then let a third one finish.
    for round in 0..2 {
        let mut relay = spawn_relay(&db, &format!("relay_killed_{round}"));
        let before = db.outbox_len();
        common::wait_for("the relay to make progress", LONG, || {
            (db.outbox_len() < before - 1500).then_some(())
        });
        relay.kill().unwrap();
        relay.wait().unwrap();
    }
    let left = db.outbox_len();
    assert!(
        left > 0 && left < total,
        "the kills landed mid-stream ({left} of {total} left)"
    );
    let mut relay = spawn_relay(&db, "relay_killed_final");
    common::wait_for("the outbox to drain", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });
    relay.kill().unwrap();
    relay.wait().unwrap();

    let expected: HashSet<String> = emitted.into_iter().collect();
    let mut collector = Collector::new(&brokers(), &topic, 4);
    let received = collect_all(&mut collector, &expected);
    assert_same_ids(&assert_order_per_key(&received), &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_outage_during_emission_loses_nothing() {
    common::init_logs();
    let db = TestDb::new("broker_outage");
    // A broker of this test's own, reachable only through a proxy the test can cut.
    let mut broker = common::proxy::PrivateBroker::start().await;
    let brokers = broker.brokers.clone();
    let topic = unique_topic("outage");
    create_topic(&brokers, &topic, 4).await;
    let config = common::runtime_config(&db, &brokers)
        .kafka_option("reconnect.backoff.max.ms", "500")
        .kafka_option("socket.connection.setup.timeout.ms", "2000");
    let runtime = procon::start(config).unwrap();

    let mut expected: HashSet<String> = emit_sequences(&mut db.conn(), &topic, 20, 5, 1)
        .into_iter()
        .collect();
    common::wait_for("the first events to be delivered", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });

    broker.proxy.cut().await;
    for batch in 0..4 {
        expected.extend(emit_sequences(&mut db.conn(), &topic, 20, 5, 6 + batch * 5));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        db.outbox_len(),
        400,
        "no row may be deleted while the broker is unreachable"
    );

    broker.proxy.restore().await;
    common::wait_for("the outbox to drain after the outage", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });
    let mut collector = Collector::new(&brokers, &topic, 4);
    let received = collect_all(&mut collector, &expected);
    assert_same_ids(&assert_order_per_key(&received), &expected);

    runtime.shutdown().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_waits_for_the_database_then_publishes() {
    common::init_logs();
    let database = "procon_late_database";
    let mut admin = PgConnection::establish(&common::db::base_url()).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .unwrap();
    let base = common::db::base_url();
    let url = format!("{}/{database}", &base[..base.rfind('/').unwrap()]);
    let topic = unique_topic("late-db");
    create_topic(&brokers(), &topic, 1).await;
    let config = procon::Config::new(url.clone(), brokers());
    let runtime = procon::start(config).expect("an unreachable database is not a start error");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .unwrap();
    let mut conn = PgConnection::establish(&url).unwrap();
    procon::migrate(&mut conn).unwrap();
    let account = Account {
        id: 9,
        owner: "late".into(),
        seq: 1,
        secret: String::new(),
    };
    let event_id = conn
        .transaction(|conn| {
            Routed {
                topic: topic.clone(),
                account,
            }
            .emit_created(conn)
        })
        .unwrap();

    let mut collector = Collector::new(&brokers(), &topic, 1);
    assert_eq!(
        collector.at_least(1, LONG)[0].event_id(),
        event_id.to_string()
    );
    runtime.shutdown().await.unwrap();
    drop(conn);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_drains_in_flight_deliveries() {
    common::init_logs();
    let db = TestDb::new("shutdown_drains");
    let topic = unique_topic("drain");
    create_topic(&brokers(), &topic, 4).await;
    let emitted: BTreeSet<String> = emit_sequences(&mut db.conn(), &topic, 50, 100, 1)
        .into_iter()
        .collect();
    let mut config = common::runtime_config(&db, &brokers());
    config.relay.batch_size = 500;
    let runtime = procon::start(config).unwrap();
    common::wait_for("the relay to start publishing", LONG, || {
        (db.outbox_len() < 5000).then_some(())
    });
    runtime.shutdown().await.unwrap();

    let remaining = outbox_ids(&db);
    let deleted: HashSet<String> = emitted.difference(&remaining).cloned().collect();
    assert!(!deleted.is_empty());
    let mut collector = Collector::new(&brokers(), &topic, 4);
    collector.until(LONG, |received| {
        let on_broker: HashSet<&str> = received.iter().map(Received::event_id).collect();
        deleted.iter().all(|id| on_broker.contains(id.as_str()))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_relay_takes_over_when_the_leader_stops() {
    common::init_logs();
    let db = TestDb::new("standby");
    let topic = unique_topic("standby");
    create_topic(&brokers(), &topic, 2).await;
    let leader = procon::start(common::runtime_config(&db, &brokers())).unwrap();
    let mut expected: HashSet<String> = emit_sequences(&mut db.conn(), &topic, 5, 2, 1)
        .into_iter()
        .collect();
    common::wait_for("the leader to publish", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });

    let standby = procon::start(common::runtime_config(&db, &brokers())).unwrap();
    expected.extend(emit_sequences(&mut db.conn(), &topic, 5, 2, 3));
    common::wait_for("the leader to publish again", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });
    leader.shutdown().await.unwrap();

    expected.extend(emit_sequences(&mut db.conn(), &topic, 5, 2, 5));
    common::wait_for("the standby to take over", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });
    let mut collector = Collector::new(&brokers(), &topic, 2);
    collector.at_least(expected.len(), LONG);
    let received = by_partition(collector.drain_for(Duration::from_millis(300)));
    assert_eq!(
        received.len(),
        expected.len(),
        "one relay at a time: no event published twice"
    );
    assert_same_ids(&assert_order_per_key(&received), &expected);
    standby.shutdown().await.unwrap();
}

#[tokio::test]
async fn start_refuses_an_option_librdkafka_rejects() {
    let config = procon::Config::new("postgres://postgres@127.0.0.1/test", brokers())
        .kafka_option("no.such.option", "1");
    // The producer's configuration (no consumer in this runtime)...
    let mut relay_only = config.clone();
    relay_only.consumer.enabled = false;
    let err = procon::start(relay_only).unwrap_err();
    assert!(matches!(err, procon::StartError::Config(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("PROCON_KAFKA_NO_SUCH_OPTION"), "{text}");
    assert!(text.contains("`no.such.option`"), "{text}");
    assert!(text.contains("fix or remove it"), "{text}");
    // ...and the consumer's (this test binary links the ledger handlers).
    let err = procon::start(config).unwrap_err();
    assert!(matches!(err, procon::StartError::Config(_)), "{err:?}");
    assert!(
        err.to_string().contains("PROCON_KAFKA_NO_SUCH_OPTION"),
        "{err}"
    );
}

#[test]
fn start_outside_a_tokio_runtime_is_an_error() {
    let config = procon::Config::new("postgres://postgres@127.0.0.1/test", brokers());
    let err = procon::start(config).unwrap_err();
    assert!(matches!(err, procon::StartError::NoTokioRuntime), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn procon_relay_takes_topic_maps_and_settings_as_options() {
    common::init_logs();
    let db = TestDb::new("relay_cli_options");
    let topic = unique_topic("cli-mapped");
    create_topic(&brokers(), &topic, 1).await;
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("relay-cli-options.log");
    let mut relay = std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .args(["relay", "--topic", &format!("accounts={topic}")])
        .args(["--set", "PROCON_RELAY_POLL_INTERVAL_MS=100"])
        .env("PROCON_DATABASE_URL", &db.url)
        .env("PROCON_BROKERS", brokers())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // `Account` names the topic `accounts`; the option sends it to this test's topic.
    db.conn()
        .transaction(|conn| {
            Account {
                id: 7,
                owner: "cli".into(),
                seq: 1,
                secret: String::new(),
            }
            .emit_created(conn)
        })
        .unwrap();
    let mut collector = Collector::new(&brokers(), &topic, 1);
    let received = collector.at_least(1, LONG);
    assert_eq!(received[0].key, "7");
    let _ = relay.kill();
    let _ = relay.wait();

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .args(["relay", "--topic", "accounts"])
        .env("PROCON_DATABASE_URL", &db.url)
        .env("PROCON_BROKERS", brokers())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("PROCON_RELAY_TOPICS"), "{stderr}");
}
