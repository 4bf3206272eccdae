//! A black-box check of the test broker itself, so the other tests can trust it: with the
//! idempotent producer and one consumer group, every message arrives exactly once, in order
//! per key, and a new member of the group resumes at the committed offsets.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::broker::{brokers, create_topic, unique_topic, TEST_CONSUMER_SETTINGS};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

const MESSAGES: usize = 20_000;
const KEYS: usize = 50;
const PARTITIONS: i32 = 8;

fn group_consumer(group: &str, topic: &str) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (name, value) in TEST_CONSUMER_SETTINGS {
        config.set(name, value);
    }
    let consumer: BaseConsumer = config.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_delivers_every_message_once_in_order_per_key_to_a_group() {
    let topic = unique_topic("blackbox");
    create_topic(&brokers(), &topic, PARTITIONS).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut deliveries = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let key = format!("key-{}", i % KEYS);
        let payload = format!("{}:{}", i % KEYS, i / KEYS);
        let record = FutureRecord::to(&topic).key(&key).payload(&payload);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
    }

    let group = unique_topic("blackbox-group");
    let consumer = group_consumer(&group, &topic);
    let mut next_seq: BTreeMap<String, usize> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    let mut seen = HashSet::new();
    let started = Instant::now();
    while seen.len() < MESSAGES {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {MESSAGES} arrived",
            seen.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.unwrap();
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let payload = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
        assert!(seen.insert(payload.clone()), "duplicate {payload}");
        let seq: usize = payload.split(':').nth(1).unwrap().parse().unwrap();
        let expected = next_seq.entry(key.clone()).or_insert(0);
        assert_eq!(seq, *expected, "{key} out of order");
        *expected += 1;
        let partition = *partition_of
            .entry(key.clone())
            .or_insert(message.partition());
        assert_eq!(partition, message.partition(), "{key} changed partition");
    }
    assert!(next_seq.values().all(|&n| n == MESSAGES / KEYS));
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    drop(consumer);

    // A new member of the same group resumes at the committed offsets: it receives the one
    // message produced after the commit, and nothing before it.
    // (Not checked with `committed()`: against tansu, an OffsetFetch followed by closing the
    // consumer hangs the close; procon keeps consumer positions in PostgreSQL anyway.)
    let again = group_consumer(&group, &topic);
    let marker = "after-commit";
    producer
        .send(
            FutureRecord::to(&topic).key("key-0").payload(marker),
            Timeout::Never,
        )
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the marker never arrived"
        );
        let Some(message) = again.poll(Duration::from_millis(100)) else {
            continue;
        };
        let payload = message
            .unwrap()
            .payload()
            .map(|p| p.to_vec())
            .unwrap_or_default();
        assert_eq!(
            payload,
            marker.as_bytes(),
            "a message before the committed offset was redelivered"
        );
        break;
    }
}

/// Sends `count` records to partition 0 of `topic` at once (one batch with `linger.ms`) and
/// waits for every acknowledgement.
async fn send_batch(producer: &FutureProducer, topic: &str, count: usize) {
    let payloads: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
    let sends = payloads.iter().map(|payload| {
        producer.send(
            FutureRecord::<str, str>::to(topic)
                .payload(payload)
                .partition(0),
            Duration::from_secs(10),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e).unwrap();
    }
}

fn batching_producer(idempotent: bool) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "50")
        .set("enable.idempotence", idempotent.to_string())
        .create()
        .unwrap()
}

/// The consumer's out-of-range check reads the log's range with ListOffsets: it must report
/// the offset after the last record, whether records came one per batch or many per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_reports_the_log_range_after_batched_and_single_produces() {
    let topic = unique_topic("blackbox-watermarks");
    create_topic(&brokers(), &topic, 1).await;
    let plain = batching_producer(false);
    send_batch(&plain, &topic, 10).await;
    for _ in 0..3 {
        send_batch(&plain, &topic, 1).await;
    }
    let consumer = group_consumer(&unique_topic("blackbox-watermarks-group"), &topic);
    let (low, high) = consumer
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, 13), "the log range of 13 records");

    // The same from an idempotent producer (the relay's).
    let topic = unique_topic("blackbox-watermarks-idempotent");
    create_topic(&brokers(), &topic, 1).await;
    send_batch(&batching_producer(true), &topic, 10).await;
    let (low, high) = consumer
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .unwrap();
    // tansu 0.6.0 quirk, pinned: the log end after an idempotent producer's batch is the
    // batch count, not the offset after its last record. procon's out-of-range check reads
    // this value, so tests against tansu switch it off (`consumer.check_position_range`) except
    // where they write with a plain producer; a real Kafka broker answers 10 here.
    assert_eq!((low, high), (0, 1), "tansu's idempotent-batch log end");
}
