//! Several relays on one outbox, against real PostgreSQL and the real broker: shards are shared
//! through leases in PostgreSQL, a killed relay's shards move within seconds, a relay cut off
//! from the database stops publishing before its shards move, and every key keeps its order.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::broker::{brokers, create_topic, unique_topic, Collector, Received};
use common::db::TestDb;
use common::model::{Account, Routed};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use procon::prelude::*;
use procon::runtime::transport::kafka::KafkaPublisher;
use procon::runtime::transport::{Delivery, Publisher, Record, SendError};

const LONG: Duration = Duration::from_secs(60);

#[derive(QueryableByName, Debug)]
struct Lease {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    shard: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    owner: Option<String>,
}

/// Owner (by service-name prefix) of each shard whose lease is live.
fn owners(db: &TestDb) -> BTreeMap<i32, String> {
    diesel::sql_query(
        "SELECT shard, owner FROM procon_relay_leases WHERE expires_at > now() ORDER BY shard",
    )
    .load::<Lease>(&mut db.conn())
    .unwrap()
    .into_iter()
    .filter_map(|l| {
        let owner = l.owner?;
        Some((
            l.shard,
            owner.split('/').next().unwrap_or_default().to_owned(),
        ))
    })
    .collect()
}

fn count_owned(owners: &BTreeMap<i32, String>, relay: &str) -> usize {
    owners.values().filter(|o| *o == relay).count()
}

/// Emits one event for each of `keys` keys per `seq` of `seqs`, one transaction per `seq`.
/// Returns the event ids.
fn emit_rounds(
    url: &str,
    topic: &str,
    keys: i64,
    seqs: std::ops::RangeInclusive<i64>,
) -> HashSet<String> {
    let mut conn = PgConnection::establish(url).unwrap();
    let mut ids = HashSet::new();
    for seq in seqs {
        conn.transaction(|conn| {
            for id in 0..keys {
                let routed = Routed {
                    topic: topic.to_owned(),
                    account: Account {
                        id,
                        owner: format!("o{id}"),
                        seq,
                        secret: String::new(),
                    },
                };
                ids.insert(routed.emit_created(conn)?.to_string());
            }
            Ok::<_, procon::EmitError>(())
        })
        .unwrap();
    }
    ids
}

/// The first copy of each event, per key, comes in `seq` order, and every event is there.
fn assert_complete_and_in_key_order(received: &[Received], expected: &HashSet<String>) {
    let mut seen = HashSet::new();
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for message in received {
        if !seen.insert(message.event_id().to_owned()) {
            continue; // a copy published again across a lease move
        }
        let seq = message.payload["after"]["seq"].as_i64().unwrap();
        let before = last.insert(message.key.clone(), seq).unwrap_or(0);
        assert_eq!(
            seq,
            before + 1,
            "key {}: seq {seq} after {before}",
            message.key
        );
    }
    let missing: Vec<&String> = expected.difference(&seen).collect();
    assert!(missing.is_empty(), "{} events never arrived", missing.len());
}

fn all_arrived(expected: &HashSet<String>) -> impl FnMut(&[Received]) -> bool + '_ {
    move |received| {
        let seen: HashSet<&str> = received.iter().map(Received::event_id).collect();
        expected.iter().all(|id| seen.contains(id.as_str()))
    }
}

fn sharded_config(db_url: &str, name: &str, shards: u32, ttl: Duration) -> procon::Config {
    let mut config = procon::Config::new(db_url, brokers()).service_name(name);
    config.consumer.enabled = false;
    config.relay.shards = shards;
    config.relay.lease_ttl = ttl;
    config.relay.poll_interval = Duration::from_millis(100);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_share_the_shards_and_every_key_keeps_its_order() {
    common::init_logs();
    let db = TestDb::new("shards_split");
    let topic = unique_topic("shards");
    create_topic(&brokers(), &topic, 4).await;
    let ttl = Duration::from_millis(1500);
    let first = procon::start(sharded_config(&db.url, "relay-a", 4, ttl)).unwrap();
    common::wait_for("relay-a to hold every shard", LONG, || {
        (count_owned(&owners(&db), "relay-a") == 4).then_some(())
    });
    let second = procon::start(sharded_config(&db.url, "relay-b", 4, ttl)).unwrap();
    common::wait_for("the shards to be shared 2 and 2", LONG, || {
        let owners = owners(&db);
        (count_owned(&owners, "relay-a") == 2 && count_owned(&owners, "relay-b") == 2).then_some(())
    });
    let expected = emit_rounds(&db.url, &topic, 20, 1..=20);
    let mut collector = Collector::new(&brokers(), &topic, 4);
    let received = collector.until(LONG, all_arrived(&expected)).to_vec();
    assert_complete_and_in_key_order(&received, &expected);
    common::wait_for("the outbox to empty", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });
    first.shutdown().await.unwrap();
    // A relay that stops hands its shards over at once.
    common::wait_for("relay-b to take every shard", LONG, || {
        (count_owned(&owners(&db), "relay-b") == 4).then_some(())
    });
    second.shutdown().await.unwrap();
}

fn spawn_sharded_relay(db: &TestDb, name: &str) -> std::process::Child {
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.log"));
    std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .arg("relay")
        .env("PROCON_DATABASE_URL", &db.url)
        .env("PROCON_BROKERS", brokers())
        .env("PROCON_SERVICE_NAME", name)
        .env("PROCON_CONSUMER_ENABLED", "false")
        .env("PROCON_RELAY_SHARDS", "4")
        .env("PROCON_RELAY_LEASE_TTL_MS", "2000")
        .env("PROCON_RELAY_POLL_INTERVAL_MS", "100")
        .env("PROCON_RELAY_BATCH_SIZE", "50")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn `procon relay`")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_relays_shards_move_within_seconds_and_nothing_is_lost_or_reordered() {
    common::init_logs();
    let db = TestDb::new("shards_kill");
    let topic = unique_topic("shards-kill");
    create_topic(&brokers(), &topic, 4).await;
    let mut victim = spawn_sharded_relay(&db, "relay-victim");
    common::wait_for("the first relay to hold every shard", LONG, || {
        (count_owned(&owners(&db), "relay-victim") == 4).then_some(())
    });
    let mut survivor = spawn_sharded_relay(&db, "relay-survivor");
    common::wait_for("the shards to be shared", LONG, || {
        (count_owned(&owners(&db), "relay-survivor") == 2).then_some(())
    });

    // The first half of the stream is published by both relays; the first relay is killed
    // once events arrive, and the second half is written while its shards are still leased to
    // the dead relay: the survivor must take them over.
    let mut expected = emit_rounds(&db.url, &topic, 20, 1..=20);
    let mut collector = Collector::new(&brokers(), &topic, 4);
    collector.at_least(100, LONG);
    victim.kill().unwrap();
    let killed = Instant::now();
    victim.wait().unwrap();
    expected.extend(emit_rounds(&db.url, &topic, 20, 21..=40));
    common::wait_for("the survivor to hold every shard", LONG, || {
        (count_owned(&owners(&db), "relay-survivor") == 4).then_some(())
    });
    let moved_after = killed.elapsed();
    assert!(
        moved_after < Duration::from_secs(10),
        "the shards moved {moved_after:?} after the kill"
    );
    let received = collector.until(LONG, all_arrived(&expected)).to_vec();
    assert_complete_and_in_key_order(&received, &expected);
    survivor.kill().unwrap();
    survivor.wait().unwrap();
}

/// The Kafka publisher, each record answered no sooner than `delay` after it was handed over,
/// recording when the last record was handed over.
struct SlowPublisher {
    inner: Arc<KafkaPublisher>,
    delay: Duration,
    sends: AtomicUsize,
    last_send: Mutex<Option<Instant>>,
}

impl Publisher for SlowPublisher {
    fn send(&self, record: Record<'_>) -> Result<Delivery, SendError> {
        let delivery = self.inner.send(record)?;
        self.sends.fetch_add(1, Ordering::SeqCst);
        *self.last_send.lock().unwrap() = Some(Instant::now());
        let delay = self.delay;
        Ok(Box::pin(async move {
            let (answer, ()) = tokio::join!(delivery, tokio::time::sleep(delay));
            answer
        }))
    }

    fn fails_successors(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_cut_off_from_the_database_stops_publishing_before_its_shards_move() {
    common::init_logs();
    let db = TestDb::new("shards_fenced");
    let topic = unique_topic("shards-fenced");
    create_topic(&brokers(), &topic, 2).await;
    // The first relay reaches PostgreSQL through a proxy the test freezes.
    let (proxy, proxied_url) = common::proxy::database_proxy(&db.url).await;
    let ttl = Duration::from_millis(1500);
    let mut config = sharded_config(&proxied_url, "relay-cut", 2, ttl);
    config.relay.max_in_flight_per_key = 1;
    let publisher = Arc::new(SlowPublisher {
        inner: Arc::new(KafkaPublisher::new(&config).unwrap()),
        delay: Duration::from_millis(200),
        sends: AtomicUsize::new(0),
        last_send: Mutex::new(None),
    });
    let cut = procon::start_relay_with(config, publisher.clone()).unwrap();
    common::wait_for("the first relay to hold both shards", LONG, || {
        (count_owned(&owners(&db), "relay-cut") == 2).then_some(())
    });
    // One event per key every 200 ms at most: the first relay is still busy when it is cut off.
    let expected = emit_rounds(&db.url, &topic, 10, 1..=20);
    common::wait_for("the first relay to publish some", LONG, || {
        (publisher.sends.load(Ordering::SeqCst) >= 20).then_some(())
    });
    proxy.freeze();
    let frozen_at = Instant::now();
    let other = procon::start(sharded_config(&db.url, "relay-other", 2, ttl)).unwrap();
    common::wait_for("the other relay to take both shards", LONG, || {
        (count_owned(&owners(&db), "relay-other") == 2).then_some(())
    });
    let mut collector = Collector::new(&brokers(), &topic, 2);
    let received = collector.until(LONG, all_arrived(&expected)).to_vec();
    assert_complete_and_in_key_order(&received, &expected);
    let last_send = publisher
        .last_send
        .lock()
        .unwrap()
        .expect("it published before");
    assert!(
        last_send < frozen_at + ttl,
        "the cut-off relay handed over a record {:?} after the freeze, past its lease",
        last_send - frozen_at
    );
    proxy.thaw();
    cut.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}
