//! What only the Kinesis consumer has to get right, on the emulator: resharding (a child shard
//! is read only once its parents are applied to their end), shard leases moving between
//! members through PostgreSQL, throttled reads and expired iterators (injected on the wire by
//! a proxy) losing no record, and records procon did not write (another producer's envelope
//! is applied; bytes that are no event stall their shard with a clear error). The scenarios
//! every transport shares are in `conformance.rs`.

mod common;

use std::time::Duration;

use common::db::TestDb;
use common::kinesis;
use common::ledger::{assert_exactly_once_in_key_order, effect_count, effects, emit_credits};
use diesel::sql_types::{Bool, Text};
use diesel::{QueryableByName, RunQueryDsl};
use procon::runtime::transport::kinesis::record;

const LONG: Duration = Duration::from_secs(90);

fn relay_config(db: &TestDb) -> procon::Config {
    let mut config = common::runtime_config(db, "unused:9092");
    config.transport = procon::Transport::Kinesis;
    config.kinesis = kinesis::settings();
    config
}

fn consumer_config(db: &TestDb, group: &str, stream: &str) -> procon::Config {
    let mut config = common::consumer_config(db, "unused:9092", group, stream);
    config.transport = procon::Transport::Kinesis;
    config.kinesis = kinesis::settings();
    config.kinesis.lease_ttl = Duration::from_secs(3);
    config.kinesis.idle_poll_interval = Duration::from_millis(50);
    config.relay.enabled = false;
    config
}

/// Publishes what the outbox holds with a relay-only runtime.
async fn publish(db: &TestDb) {
    let relay = procon::start(relay_config(db)).unwrap();
    common::wait_for("the outbox to be published", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });
    relay.shutdown().await.unwrap();
}

/// Splits the stream's only open shard in two halves of its hash range.
async fn split(stream: &str) {
    let client = kinesis::client();
    let open = kinesis::shards(&client, stream)
        .await
        .into_iter()
        .find(|s| {
            s.sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_none()
        })
        .expect("an open shard");
    let range = open.hash_key_range().unwrap();
    let (low, high): (u128, u128) = (
        range.starting_hash_key().parse().unwrap(),
        range.ending_hash_key().parse().unwrap(),
    );
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(open.shard_id())
        .new_starting_hash_key(((low + high) / 2 + 1).to_string())
        .send()
        .await
        .expect("SplitShard");
    kinesis::wait_active(&client, stream).await;
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Lease {
    #[diesel(sql_type = Text)]
    shard_id: String,
    #[diesel(sql_type = Bool)]
    finished: bool,
}

fn leases(db: &TestDb, group: &str) -> Vec<Lease> {
    diesel::sql_query(
        "SELECT shard_id, finished FROM procon_kinesis_leases WHERE group_id = $1 ORDER BY shard_id",
    )
    .bind::<Text, _>(group)
    .load(&mut db.conn())
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_shard_is_applied_to_its_end_before_its_children() {
    common::init_logs();
    let db = TestDb::new("kinesis_split");
    common::ledger::create_effects(&mut db.conn());
    let stream = kinesis::unique_stream("kc-split");
    kinesis::create_stream(&kinesis::client(), &stream, 1).await;
    let group = kinesis::unique_stream("kc-split-group");
    // Every key has events in the parent and, after the split, in one of the children: the
    // children are read concurrently with each other, so only waiting for the parent keeps
    // each key in order.
    emit_credits(&mut db.conn(), &stream, 1..=400, 16);
    publish(&db).await;
    split(&stream).await;
    emit_credits(&mut db.conn(), &stream, 401..=800, 16);
    publish(&db).await;

    let runtime = procon::start(consumer_config(&db, &group, &stream)).unwrap();
    common::wait_for("800 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 800).then_some(())
    });
    runtime.shutdown().await.unwrap();
    assert_exactly_once_in_key_order(&mut db.conn(), 800);
    let leases = leases(&db, &group);
    assert_eq!(leases.len(), 3, "{leases:?}");
    assert!(leases[0].finished, "the parent is finished: {leases:?}");
    assert!(!leases[1].finished && !leases[2].finished, "{leases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_member_hands_its_shards_over_at_once() {
    common::init_logs();
    let db = TestDb::new("kinesis_handover");
    common::ledger::create_effects(&mut db.conn());
    let stream = kinesis::unique_stream("kc-handover");
    kinesis::create_stream(&kinesis::client(), &stream, 2).await;
    let group = kinesis::unique_stream("kc-handover-group");
    emit_credits(&mut db.conn(), &stream, 1..=200, 8);
    publish(&db).await;
    // A long lease: a member that left without releasing would block the shards this long.
    let mut config = consumer_config(&db, &group, &stream);
    config.kinesis.lease_ttl = Duration::from_secs(120);
    let first = procon::start(config.clone()).unwrap();
    common::wait_for("200 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 200).then_some(())
    });
    first.shutdown().await.unwrap();
    // A clean shutdown released the leases: the next member starts on them at once.
    emit_credits(&mut db.conn(), &stream, 201..=300, 8);
    publish(&db).await;
    let second = procon::start(config).unwrap();
    common::wait_for("300 effects", Duration::from_secs(60), || {
        (effect_count(&mut db.conn()) >= 300).then_some(())
    });
    second.shutdown().await.unwrap();
    assert_exactly_once_in_key_order(&mut db.conn(), 300);
}

/// Writes `data` to `stream` with partition key `key`, as a producer other than procon would.
async fn put_raw(stream: &str, key: &str, data: Vec<u8>) {
    kinesis::client()
        .put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(aws_sdk_kinesis::primitives::Blob::new(data))
        .send()
        .await
        .expect("PutRecord");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_record_is_applied_and_bytes_that_are_no_event_stall_their_shard() {
    common::init_logs();
    let db = TestDb::new("kinesis_foreign");
    common::ledger::create_effects(&mut db.conn());
    let stream = kinesis::unique_stream("kc-foreign");
    kinesis::create_stream(&kinesis::client(), &stream, 1).await;
    let group = kinesis::unique_stream("kc-foreign-group");
    emit_credits(&mut db.conn(), &stream, 1..=1, 2);
    publish(&db).await;
    // Another producer's record: procon's envelope as the whole data, no header line.
    let written = kinesis::read_all(&kinesis::client(), &stream).await;
    let mut envelope: serde_json::Value =
        serde_json::from_slice(record::decode(&written[0].data).unwrap().payload).unwrap();
    envelope["event_id"] = uuid::Uuid::now_v7().to_string().into();
    envelope["after"]["seq"] = 2.into();
    put_raw(&stream, "1", serde_json::to_vec(&envelope).unwrap()).await;
    put_raw(&stream, "1", b"{ this is not json".to_vec()).await;
    emit_credits(&mut db.conn(), &stream, 3..=3, 2);
    publish(&db).await;

    let runtime = procon::start(consumer_config(&db, &group, &stream)).unwrap();
    let stalled = common::wait_for("the bytes to stall the shard", LONG, || {
        runtime
            .stalled_partitions()
            .into_iter()
            .find(|s| s.attempts >= 2)
    });
    assert!(
        stalled
            .error
            .contains(&format!("{stream}[0]@{}", stalled.coordinates.position)),
        "names stream, shard and position: {}",
        stalled.error
    );
    let seqs: Vec<i64> = effects(&mut db.conn()).iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        [1, 2],
        "the foreign record applied; nothing after the bad one"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttled_reads_and_expired_iterators_lose_no_record() {
    use common::kinesis_faults::FaultProxy;
    common::init_logs();
    let db = TestDb::new("kinesis_faults");
    common::ledger::create_effects(&mut db.conn());
    let stream = kinesis::unique_stream("kc-faults");
    kinesis::create_stream(&kinesis::client(), &stream, 2).await;
    let group = kinesis::unique_stream("kc-faults-group");
    emit_credits(&mut db.conn(), &stream, 1..=600, 12);
    publish(&db).await;
    let upstream = kinesis::endpoint()
        .trim_start_matches("http://")
        .parse()
        .expect("the emulator's host:port");
    // Three throttles in a row: the SDK retries twice by itself, the third reaches procon.
    // Expired iterators are not retried by the SDK.
    let proxy = FaultProxy::start(
        upstream,
        Box::new(|n| match n {
            4..=6 | 15..=17 => Some("ProvisionedThroughputExceededException"),
            9 | 10 | 21 => Some("ExpiredIteratorException"),
            _ => None,
        }),
    )
    .await;
    let mut config = consumer_config(&db, &group, &stream);
    config.kinesis.endpoint_url = Some(proxy.endpoint.clone());
    // 25 records a read: the faults land in the middle of each shard, not after its end.
    config.kinesis.max_records_per_read = 25;
    let runtime = procon::start(config).unwrap();
    common::wait_for("600 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 600).then_some(())
    });
    runtime.shutdown().await.unwrap();
    assert_eq!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst), 9);
    assert_exactly_once_in_key_order(&mut db.conn(), 600);
}
