//! The same scenarios on every transport (Kafka on the test broker, Kinesis on the emulator),
//! so a guarantee the README states holds on each.
//!
//! Relay: events of a key arrive in order with their event id; a relay killed with SIGKILL
//! mid-drain and restarted loses nothing and never reorders a key (a restart republishes a
//! suffix: duplicates, recognised by event id); an event the transport rejects is parked while
//! other keys flow.
//!
//! Consumer: every event is applied exactly once and in key order; consumers joining and
//! leaving (one killed with SIGKILL, then restarted) share the partitions and still apply each
//! event once; a failing handler is retried and its event applied once, while other keys flow;
//! a key whose event fails every attempt stops (policy `stop`) while the others flow, and goes
//! on once an operator skips the event.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Child;
use std::sync::Mutex;
use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic, Collector};
use common::db::TestDb;
use common::kinesis;
use common::ledger::{
    assert_exactly_once_in_key_order, effect_count, emit_credits, Entry, RetriedOut,
};
use common::model::emit_seqs as emit;
use procon::runtime::transport::kinesis::record;

const LONG: Duration = Duration::from_secs(90);

/// A transport under test.
#[derive(Debug, Clone, Copy)]
enum Bus {
    Kafka,
    Kinesis,
}

/// One published event as a reader sees it.
#[derive(Debug, Clone)]
struct Published {
    key: String,
    event_id: String,
    seq: i64,
}

impl Bus {
    /// A topic (stream) of the test's own, with 2 partitions (shards).
    async fn create(self, prefix: &str) -> String {
        let name = unique_topic(prefix);
        match self {
            Bus::Kafka => create_topic(&brokers(), &name, 2).await,
            Bus::Kinesis => kinesis::create_stream(&kinesis::client(), &name, 2).await,
        }
        name
    }

    /// The relay's settings for this transport.
    fn config(self, db: &TestDb) -> procon::Config {
        let mut config = common::runtime_config(db, &brokers());
        if let Bus::Kinesis = self {
            config.transport = procon::Transport::Kinesis;
            config.kinesis = kinesis::settings();
        }
        config.relay.park_after_attempts = 2;
        config.relay.backoff.initial = Duration::from_millis(50);
        config.relay.backoff.max = Duration::from_millis(200);
        config
    }

    /// Settings of a runtime that relays and consumes the ledger events of `topic` as `group`.
    fn consumer_config(self, db: &TestDb, group: &str, topic: &str) -> procon::Config {
        let mut config = common::consumer_config(db, &brokers(), group, topic);
        if let Bus::Kinesis = self {
            config.transport = procon::Transport::Kinesis;
            config.kinesis = kinesis::settings();
            config.kinesis.lease_ttl = Duration::from_secs(3);
            config.kinesis.idle_poll_interval = Duration::from_millis(50);
        }
        config
    }

    /// The ledger test consumer as its own process on this transport.
    fn spawn_consumer(self, db: &TestDb, group: &str, topic: &str, name: &str) -> Child {
        let vars = match self {
            Bus::Kafka => Vec::new(),
            Bus::Kinesis => vec![
                ("PROCON_TRANSPORT", "kinesis".to_owned()),
                ("PROCON_KINESIS_ENDPOINT_URL", kinesis::endpoint()),
                ("PROCON_KINESIS_LEASE_TTL_MS", "3000".to_owned()),
                ("PROCON_KINESIS_IDLE_POLL_INTERVAL_MS", "50".to_owned()),
            ],
        };
        common::process::spawn_consumer_with(&db.url, &brokers(), group, topic, name, &vars)
    }

    /// `procon relay` as its own process on this transport.
    fn spawn_relay(self, db: &TestDb, name: &str) -> std::process::Child {
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.log"));
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"));
        command
            .arg("relay")
            .env("PROCON_DATABASE_URL", &db.url)
            .env("PROCON_RELAY_BATCH_SIZE", "100")
            .env("PROCON_RELAY_POLL_INTERVAL_MS", "200")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        match self {
            Bus::Kafka => command.env("PROCON_BROKERS", brokers()),
            Bus::Kinesis => command
                .env("PROCON_TRANSPORT", "kinesis")
                .env("PROCON_KINESIS_ENDPOINT_URL", kinesis::endpoint()),
        };
        command.spawn().expect("spawn `procon relay`")
    }

    /// Everything `topic` holds once it holds at least `n` distinct events (a restarted
    /// relay publishes some twice).
    async fn read(self, topic: &str, n: usize) -> Vec<Published> {
        let distinct = |ids: &mut dyn Iterator<Item = &str>| ids.collect::<HashSet<_>>().len();
        match self {
            Bus::Kafka => Collector::new(&brokers(), topic, 2)
                .until(LONG, |r| distinct(&mut r.iter().map(|m| m.event_id())) >= n)
                .iter()
                .map(|m| Published {
                    key: m.key.clone(),
                    event_id: m.event_id().to_owned(),
                    seq: m.payload["after"]["seq"].as_i64().unwrap(),
                })
                .collect(),
            Bus::Kinesis => {
                let decode = |r: &kinesis::Read| {
                    let decoded = record::decode(&r.data).expect("a procon record");
                    let envelope: serde_json::Value =
                        serde_json::from_slice(decoded.payload).unwrap();
                    let event_id = decoded
                        .headers
                        .iter()
                        .find(|(name, _)| name == "procon-event-id")
                        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
                        .unwrap_or_default();
                    Published {
                        key: r.key.clone(),
                        event_id,
                        seq: envelope["after"]["seq"].as_i64().unwrap(),
                    }
                };
                let read = kinesis::read_until(&kinesis::client(), topic, LONG, |r| {
                    let events: Vec<Published> = r.iter().map(decode).collect();
                    distinct(&mut events.iter().map(|e| e.event_id.as_str())) >= n
                })
                .await;
                read.iter().map(decode).collect()
            }
        }
    }
}

/// Per key, the sequence numbers as delivered.
fn by_key(published: &[Published]) -> BTreeMap<String, Vec<i64>> {
    let mut keys: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for event in published {
        keys.entry(event.key.clone()).or_default().push(event.seq);
    }
    keys
}

async fn events_of_a_key_arrive_in_order_with_their_event_id(bus: Bus) {
    common::init_logs();
    let db = TestDb::new(&format!("conf_order_{bus:?}").to_lowercase());
    let topic = bus.create("conf-order").await;
    let mut conn = db.conn();
    for id in 1..=10 {
        emit(&mut conn, &topic, id, 1..21, "owner");
    }
    let runtime = procon::start(bus.config(&db)).unwrap();
    let published = bus.read(&topic, 200).await;
    assert_eq!(published.len(), 200, "each event once");
    let ids: HashSet<&str> = published.iter().map(|p| p.event_id.as_str()).collect();
    assert_eq!(ids.len(), 200, "every event carries its own id");
    for (key, seqs) in by_key(&published) {
        assert_eq!(seqs, (1..21).collect::<Vec<_>>(), "key {key}");
    }
    runtime.shutdown().await.unwrap();
}

async fn a_relay_killed_mid_drain_loses_nothing_and_keeps_key_order(bus: Bus) {
    common::init_logs();
    let db = TestDb::new(&format!("conf_kill_{bus:?}").to_lowercase());
    let topic = bus.create("conf-kill").await;
    let mut conn = db.conn();
    for id in 1..=20 {
        emit(&mut conn, &topic, id, 1..51, "owner");
    }
    let name = format!("conformance-kill-{bus:?}");
    let mut relay = bus.spawn_relay(&db, &name);
    common::wait_for("the relay to publish some events", LONG, || {
        (db.outbox_len() <= 900).then_some(())
    });
    relay.kill().unwrap(); // SIGKILL
    relay.wait().unwrap();
    let mut relay = bus.spawn_relay(&db, &format!("{name}-again"));
    common::wait_for("the restarted relay to drain the outbox", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });
    let _ = relay.kill();
    let _ = relay.wait();

    let published = bus.read(&topic, 1000).await;
    let ids: HashSet<&str> = published.iter().map(|p| p.event_id.as_str()).collect();
    assert_eq!(ids.len(), 1000, "every event published at least once");
    for (key, seqs) in by_key(&published) {
        // A restart republishes what was not deleted: a key may repeat a suffix, never skip
        // ahead of an event it has not delivered yet.
        let mut highest = 0;
        for seq in &seqs {
            assert!(*seq <= highest + 1, "key {key} skipped ahead: {seqs:?}");
            highest = highest.max(*seq);
        }
        assert_eq!(highest, 50, "key {key}");
    }
}

async fn a_rejected_event_is_parked_while_other_keys_flow(bus: Bus) {
    common::init_logs();
    let db = TestDb::new(&format!("conf_parked_{bus:?}").to_lowercase());
    let topic = bus.create("conf-parked").await;
    let mut conn = db.conn();
    // Over the limit of both: librdkafka's 1 MB message size, Kinesis's 1 MiB record.
    emit(&mut conn, &topic, 1, 1..2, &"x".repeat(1_100_000));
    emit(&mut conn, &topic, 1, 2..4, "small");
    for id in 2..5 {
        emit(&mut conn, &topic, id, 1..4, "small");
    }
    let runtime = procon::start(bus.config(&db)).unwrap();
    let published = bus.read(&topic, 9).await;
    let parked = common::wait_for("the oversized event to be parked", LONG, || {
        let rows = procon::parked_rows(&mut conn).unwrap();
        (rows.len() == 1).then_some(rows)
    });
    assert_eq!((parked[0].key.as_str(), parked[0].waiting_behind), ("1", 2));
    let keys = by_key(&published);
    assert!(
        !keys.contains_key("1"),
        "key 1 waits behind its parked event"
    );
    for id in 2..5 {
        assert_eq!(keys[&id.to_string()], vec![1, 2, 3]);
    }
    procon::drop_parked(&mut conn, parked[0].id).unwrap();
    let published = bus.read(&topic, 11).await;
    assert_eq!(by_key(&published)["1"], vec![2, 3]);
    runtime.shutdown().await.unwrap();
}

async fn every_event_is_applied_once_in_key_order(bus: Bus) {
    common::init_logs();
    let db = TestDb::new(&format!("conf_apply_{bus:?}").to_lowercase());
    common::ledger::create_effects(&mut db.conn());
    let topic = bus.create("conf-apply").await;
    let group = unique_topic("conf-apply-group");
    emit_credits(&mut db.conn(), &topic, 1..=600, 12);
    let runtime = procon::start(bus.consumer_config(&db, &group, &topic)).unwrap();
    common::wait_for("600 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 600).then_some(())
    });
    runtime.shutdown().await.unwrap();
    assert_exactly_once_in_key_order(&mut db.conn(), 600);

    // A restart of the group goes on from the stored positions: nothing is applied again.
    let runtime = procon::start(bus.consumer_config(&db, &group, &topic)).unwrap();
    emit_credits(&mut db.conn(), &topic, 601..=610, 12);
    common::wait_for("610 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 610).then_some(())
    });
    runtime.shutdown().await.unwrap();
    assert_exactly_once_in_key_order(&mut db.conn(), 610);
}

async fn consumers_joining_and_leaving_apply_each_event_once(bus: Bus) {
    common::init_logs();
    let db = TestDb::new(&format!("conf_members_{bus:?}").to_lowercase());
    common::ledger::create_effects(&mut db.conn());
    let topic = bus.create("conf-members").await;
    let group = unique_topic("conf-members-group");
    let name = format!("conformance-members-{bus:?}");
    emit_credits(&mut db.conn(), &topic, 1..=3000, 24);
    let mut relay_config = bus.config(&db);
    relay_config.consumer.enabled = false;
    let relay = procon::start(relay_config).unwrap();
    let mut first = bus.spawn_consumer(&db, &group, &topic, &format!("{name}-a"));
    common::wait_for("the first consumer to apply some events", LONG, || {
        (effect_count(&mut db.conn()) >= 300).then_some(())
    });
    // A second member joins: the partitions are shared between the two.
    let mut second = bus.spawn_consumer(&db, &group, &topic, &format!("{name}-b"));
    common::wait_for("more events applied", LONG, || {
        (effect_count(&mut db.conn()) >= 1200).then_some(())
    });
    // The first dies without a word: the second takes its partitions over and applies
    // everything (the first's partitions included).
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    common::wait_for("the survivor to apply every event", LONG, || {
        (effect_count(&mut db.conn()) >= 3000).then_some(())
    });
    // The first comes back and the two share the partitions again.
    let mut again = bus.spawn_consumer(&db, &group, &topic, &format!("{name}-a-again"));
    emit_credits(&mut db.conn(), &topic, 3001..=3600, 24);
    common::wait_for("the later events applied", LONG, || {
        (effect_count(&mut db.conn()) >= 3600).then_some(())
    });
    for child in [&mut second, &mut again] {
        let _ = child.kill();
        let _ = child.wait();
    }
    relay.shutdown().await.unwrap();
    assert_exactly_once_in_key_order(&mut db.conn(), 3600);
}

/// Failed attempts per account of `retried.created` events (each scenario uses accounts of
/// its own).
static RETRIES: Mutex<BTreeMap<i64, u32>> = Mutex::new(BTreeMap::new());

struct OnRetried;

impl procon::EventHandler for OnRetried {
    const TOPIC: &'static str = common::ledger::TOPIC;
    const EVENT: &'static str = "retried.created";
    type Payload = Entry;
    fn handle(
        ctx: &mut procon::HandlerContext<'_>,
        event: procon::Event<Entry>,
    ) -> Result<(), procon::HandlerError> {
        let entry = event.after.clone().expect("an entry");
        common::ledger::record(ctx, &event)?; // rolled back when the attempt fails
        if entry.account >= 950 && entry.seq == 1 {
            return Err(procon::HandlerError::msg(
                "a poison event: fails every attempt",
            ));
        }
        let mut retries = RETRIES.lock().unwrap();
        let failed = retries.entry(entry.account).or_default();
        if (900..950).contains(&entry.account) && *failed < 2 {
            *failed += 1;
            return Err(procon::HandlerError::msg("fails its first two attempts"));
        }
        Ok(())
    }
}
procon::register_handler!(OnRetried);

async fn a_failing_handler_is_retried_and_applied_once_while_other_keys_flow(bus: Bus) {
    use diesel::Connection;
    use procon::OutboxExt;
    common::init_logs();
    let db = TestDb::new(&format!("conf_retry_{bus:?}").to_lowercase());
    common::ledger::create_effects(&mut db.conn());
    let topic = bus.create("conf-retry").await;
    let group = unique_topic("conf-retry-group");
    let failing = match bus {
        Bus::Kafka => 900,
        Bus::Kinesis => 901,
    };
    db.conn()
        .transaction(|conn| {
            RetriedOut(common::ledger::Out {
                entity_topic: topic.clone(),
                entry: Entry {
                    account: failing,
                    seq: 1,
                },
            })
            .emit_created(conn)
        })
        .unwrap();
    emit_credits(&mut db.conn(), &topic, 2..=41, 4);
    let mut config = bus.consumer_config(&db, &group, &topic);
    config.consumer.backoff.initial = Duration::from_millis(50);
    config.consumer.backoff.max = Duration::from_millis(200);
    let runtime = procon::start(config).unwrap();
    common::wait_for("41 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 41).then_some(())
    });
    runtime.shutdown().await.unwrap();
    assert_eq!(
        RETRIES.lock().unwrap()[&failing],
        2,
        "two failed attempts before it applied"
    );
    assert_exactly_once_in_key_order(&mut db.conn(), 41);
}

async fn a_key_failing_every_attempt_stops_until_resumed_while_other_keys_flow(bus: Bus) {
    use diesel::Connection;
    use procon::OutboxExt;
    common::init_logs();
    let db = TestDb::new(&format!("conf_stop_{bus:?}").to_lowercase());
    common::ledger::create_effects(&mut db.conn());
    let topic = bus.create("conf-stop").await;
    let group = unique_topic("conf-stop-group");
    let failing = match bus {
        Bus::Kafka => 950,
        Bus::Kinesis => 951,
    };
    let retried = |seq: i64| {
        RetriedOut(common::ledger::Out {
            entity_topic: topic.clone(),
            entry: Entry {
                account: failing,
                seq,
            },
        })
    };
    db.conn()
        .transaction(|conn| retried(1).emit_created(conn))
        .unwrap();
    emit_credits(&mut db.conn(), &topic, 2..=21, 4);
    // The failing key's next event waits behind its stopped one.
    db.conn()
        .transaction(|conn| retried(22).emit_created(conn))
        .unwrap();
    let mut config = bus.consumer_config(&db, &group, &topic);
    // OnRetried fails every attempt at seq 1 of the key: two attempts in all, then `stop`.
    config.consumer.failure.max_attempts = 2;
    config.consumer.failure.exhausted = procon::Exhausted::Stop;
    config.consumer.failure.backoff.initial = Duration::from_millis(50);
    let runtime = procon::start(config).unwrap();
    let stopped = common::wait_for("the failing key to stop", LONG, || {
        runtime.stalled_partitions().into_iter().find(|s| s.stopped)
    });
    common::wait_for("the other keys' 20 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 20).then_some(())
    });
    let applied = |conn: &mut diesel::PgConnection| -> Vec<i64> {
        common::ledger::effects(conn)
            .iter()
            .filter(|e| e.account == failing)
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(applied(&mut db.conn()), Vec::<i64>::new(), "its key waits");
    assert_eq!(stopped.lane, format!("key:{failing}"));
    // The operator skips the failed event: its key flows again.
    let resumed = procon::resume_lane(
        &mut db.conn(),
        &group,
        &stopped.coordinates.topic,
        stopped.coordinates.partition,
        &stopped.lane,
        procon::Resume::Skip,
    )
    .unwrap();
    assert_eq!(resumed.len(), 1);
    common::wait_for("the key's next event", LONG, || {
        (applied(&mut db.conn()) == [22]).then_some(())
    });
    runtime.shutdown().await.unwrap();
    assert_eq!(
        effect_count(&mut db.conn()),
        21,
        "each event once, the skipped one not at all"
    );
}

macro_rules! on_every_transport {
    ($($scenario:ident),* $(,)?) => {
        mod on_kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::Bus::Kafka).await;
                }
            )*
        }
        mod on_kinesis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::Bus::Kinesis).await;
                }
            )*
        }
    };
}

on_every_transport!(
    events_of_a_key_arrive_in_order_with_their_event_id,
    a_relay_killed_mid_drain_loses_nothing_and_keeps_key_order,
    a_rejected_event_is_parked_while_other_keys_flow,
    every_event_is_applied_once_in_key_order,
    consumers_joining_and_leaving_apply_each_event_once,
    a_failing_handler_is_retried_and_applied_once_while_other_keys_flow,
    a_key_failing_every_attempt_stops_until_resumed_while_other_keys_flow,
);
