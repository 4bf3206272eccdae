//! procon's benchmark binary: `scripts/bench.sh` (or `cargo run --release --bin procon-bench`).
//!
//! Prints, in one run against the same broker and database:
//! 1. raw producer events/s: the same payloads, keys and producer settings as the relay
//!    (idempotent, acks=all), straight to Kafka: the baseline;
//! 2. relay events/s draining a pre-filled outbox of `BENCH_EVENTS` rows (default 100,000),
//!    and its ratio to the baseline;
//! 3. commit → broker latency percentiles at a steady `BENCH_RATE` events/s (default 1,000) for
//!    `BENCH_SECONDS` (default 10): each event is emitted in its own transaction and timed from
//!    just before its commit to its arrival at a consumer.
//!
//! 4. raw consumer events/s reading a topic of `BENCH_CONSUME_EVENTS` (default 20,000) procon
//!    events (the baseline), and the exactly-once consumer's events/s applying the same topic
//!    with a handler that inserts one row per event: one transaction per event, then batched
//!    (100 events of a partition per transaction, the default).
//!
//! 5. the pipeline, IO-bound: `BENCH_IO_EVENTS` (default 10,000) events on one partition over
//!    100 keys, a handler that waits 5 ms, with `concurrency` 1 and 16;
//! 6. the pipeline, database-bound: the topic of 4. applied with the default 8 processors and
//!    units of at most 100 events, against a baseline that does the same INSERTs plus the same
//!    bookkeeping (event ids recorded, the claim checked) in transactions of 100 over 8
//!    connections, without reading Kafka.
//!
//! 7. emitting with one call per event vs `emit_all`, both 1,000 events per transaction; one
//!    relay vs two relays sharing the outbox through 8 shards;
//! 8. the peak RSS of a `procon relay` process (`BENCH_RELAY_BIN`, default
//!    `target/release/procon`) draining `BENCH_RSS_EVENTS` (default 100,000; 0 skips it) events
//!    of 10 KB.
//!
//! 9. the relay and the exactly-once consumer on Kinesis against raw `PutRecords` and raw
//!    `GetRecords` (see `kinesis.rs`; `BENCH_ONLY=kinesis`
//!    runs only it, and the full run ends with it).
//!
//! 10. Avro vs JSON: emit, relay and exactly-once consumer events/s, and message sizes (see
//!     `avro.rs`; `BENCH_ONLY=avro` runs only it).
//!
//! Latencies leave out `BENCH_WARMUP_EVENTS` (default one second's worth) sent first on both
//! paths, so both are measured warm.
//!
//! Settings: `PROCON_BENCH_DATABASE_URL` (default the local `test` database),
//! `PROCON_BENCH_BROKERS` (default 127.0.0.1:9092), `BENCH_ONLY=pipeline` (only 5. and 6.),
//! `BENCH_ONLY=relay` (1. to 3., 7. and 8.).

mod avro;
mod kinesis;
#[allow(dead_code)]
#[path = "../tests/common/registry.rs"]
mod registry;

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use procon::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 8;
const KEYS: i64 = 1000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The benchmarked model: a small account-like row published to a per-run topic.
struct Item {
    topic: String,
    id: i64,
    seq: i64,
}

impl procon::Outbox for Item {
    const ENTITY: &'static str = "item";
    fn topic(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&self.topic)
    }
    fn key(&self) -> String {
        self.id.to_string()
    }
    fn serialize_payload<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut state = serializer.serialize_struct("Item", 3)?;
        state.serialize_field("id", &self.id)?;
        state.serialize_field("seq", &self.seq)?;
        state.serialize_field("name", "benchmark item with a realistic short name")?;
        state.end()
    }
}

/// How long the handler waits before its insert (the IO-bound scenario), in ms.
static HANDLER_WAIT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The benchmark's consumer-side handler: one insert per event (after `HANDLER_WAIT_MS`).
struct ApplyItem;

impl procon::EventHandler for ApplyItem {
    const TOPIC: &'static str = "bench-items";
    const EVENT: &'static str = "item.created";
    type Payload = serde_json::Value;
    fn handle(
        ctx: &mut procon::HandlerContext<'_>,
        event: procon::Event<serde_json::Value>,
    ) -> Result<(), procon::HandlerError> {
        let wait = HANDLER_WAIT_MS.load(std::sync::atomic::Ordering::Relaxed);
        if wait > 0 {
            std::thread::sleep(Duration::from_millis(wait));
        }
        diesel::sql_query("INSERT INTO bench_effects (event_id) VALUES ($1)")
            .bind::<diesel::sql_types::Uuid, _>(event.event_id)
            .execute(ctx.conn())?;
        Ok(())
    }
}
procon::register_handler!(ApplyItem);

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn outbox_len(conn: &mut PgConnection) -> Result<i64, BoxError> {
    Ok(diesel::sql_query("SELECT count(*) AS n FROM procon_outbox")
        .get_result::<Count>(conn)?
        .n)
}

/// True while the outbox holds a row. Each look walks the primary key from `from`, the
/// lowest id seen by the previous look, so it costs the rows deleted since, not the table: a
/// `count(*)` every 10 ms scanned every dead row the drain left (autovacuum is off on this
/// machine) and took a fifth of the two cores from the relay being measured.
fn outbox_holds_rows(conn: &mut PgConnection, from: &mut i64) -> Result<bool, BoxError> {
    #[derive(QueryableByName)]
    struct Lowest {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        id: Option<i64>,
    }
    let lowest = diesel::sql_query(
        "SELECT (SELECT id FROM procon_outbox WHERE id >= $1 ORDER BY id LIMIT 1) AS id",
    )
    .bind::<diesel::sql_types::BigInt, _>(*from)
    .get_result::<Lowest>(conn)?;
    match lowest.id {
        Some(id) => {
            *from = id;
            Ok(true)
        }
        // A row may have been put back below `from`: only a full count says it is empty.
        None => {
            *from = 0;
            Ok(outbox_len(conn)? > 0)
        }
    }
}

/// Waits until the outbox is empty, looking every `every` (see [`outbox_holds_rows`]).
async fn until_drained(conn: &mut PgConnection, every: Duration) -> Result<(), BoxError> {
    let mut from = 0;
    while outbox_holds_rows(conn, &mut from)? {
        tokio::time::sleep(every).await;
    }
    Ok(())
}

async fn create_topic(brokers: &str, topic: &str) -> Result<(), BoxError> {
    create_topic_with(brokers, topic, PARTITIONS).await
}

async fn create_topic_with(brokers: &str, topic: &str, partitions: i32) -> Result<(), BoxError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await?
    {
        result.map_err(|(name, code)| format!("creating {name}: {code}"))?;
    }
    Ok(())
}

/// Emits `count` events in transactions of 1,000 and returns one stored payload (for the
/// baseline to send the same bytes).
fn fill_outbox(conn: &mut PgConnection, topic: &str, count: i64) -> Result<String, BoxError> {
    fill_outbox_keys(conn, topic, count, KEYS)
}

fn fill_outbox_keys(
    conn: &mut PgConnection,
    topic: &str,
    count: i64,
    keys: i64,
) -> Result<String, BoxError> {
    for chunk in 0..(count + 999) / 1000 {
        conn.transaction(|conn| {
            for i in chunk * 1000..((chunk + 1) * 1000).min(count) {
                Item {
                    topic: topic.to_owned(),
                    id: i % keys,
                    seq: i / keys,
                }
                .emit_created(conn)?;
            }
            Ok::<_, procon::EmitError>(())
        })?;
    }
    #[derive(QueryableByName)]
    struct Payload {
        #[diesel(sql_type = diesel::sql_types::Text)]
        payload: String,
    }
    let sample: Payload =
        diesel::sql_query("SELECT payload::text AS payload FROM procon_outbox LIMIT 1")
            .get_result(conn)?;
    Ok(sample.payload)
}

/// Emits `count` events in transactions of 1,000 with one `emit_all` per transaction.
fn fill_outbox_batched(conn: &mut PgConnection, topic: &str, count: i64) -> Result<(), BoxError> {
    for chunk in 0..(count + 999) / 1000 {
        let items: Vec<Item> = (chunk * 1000..((chunk + 1) * 1000).min(count))
            .map(|i| Item {
                topic: topic.to_owned(),
                id: i % KEYS,
                seq: i / KEYS,
            })
            .collect();
        conn.transaction(|conn| {
            procon::emit_all(conn, items.iter().map(procon::OutboxEvent::created))
        })?;
    }
    Ok(())
}

/// A model with a 10 KB payload, for the relay's memory bound.
struct BigItem {
    topic: String,
    id: i64,
    filler: String,
}

impl procon::Outbox for BigItem {
    const ENTITY: &'static str = "big_item";
    fn topic(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&self.topic)
    }
    fn key(&self) -> String {
        self.id.to_string()
    }
    fn serialize_payload<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut state = serializer.serialize_struct("BigItem", 2)?;
        state.serialize_field("id", &self.id)?;
        state.serialize_field("filler", &self.filler)?;
        state.end()
    }
}

/// Peak RSS of a `procon relay` process draining `count` events of 10 KB: (MB, events/s).
async fn relay_peak_rss(
    url: &str,
    brokers: &str,
    conn: &mut PgConnection,
    topic: &str,
    count: i64,
) -> Result<(f64, f64), BoxError> {
    let filler: String = (0..10_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    for chunk in 0..(count + 999) / 1000 {
        let items: Vec<BigItem> = (chunk * 1000..((chunk + 1) * 1000).min(count))
            .map(|i| BigItem {
                topic: topic.to_owned(),
                id: i % KEYS,
                filler: filler.clone(),
            })
            .collect();
        conn.transaction(|conn| {
            procon::emit_all(conn, items.iter().map(procon::OutboxEvent::created))
        })?;
    }
    let binary = env_or("BENCH_RELAY_BIN", "target/release/procon");
    let mut relay = std::process::Command::new(&binary)
        .arg("relay")
        .env("PROCON_DATABASE_URL", url)
        .env("PROCON_BROKERS", brokers)
        .env("RUST_LOG", "warn")
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {binary} (build it with `cargo build --release -p procon-cli`): {e}"
            )
        })?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut peak_kb = 0u64;
    let mut from = 0;
    while outbox_holds_rows(conn, &mut from)? && Instant::now() < deadline {
        peak_kb = peak_kb.max(vm_hwm_kb(relay.id()).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    peak_kb = peak_kb.max(vm_hwm_kb(relay.id()).unwrap_or(0));
    let _ = relay.kill();
    let _ = relay.wait();
    if outbox_len(conn)? > 0 {
        return Err("the relay did not drain the 10 KB events within 600 s".into());
    }
    Ok((peak_kb as f64 / 1024.0, rate))
}

/// The peak resident set size of process `pid` (Linux `VmHWM`), in KB.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn raw_producer(
    brokers: &str,
    topic: &str,
    payload: &str,
    count: i64,
) -> Result<f64, BoxError> {
    let config = procon::Config::new("postgres://unused@127.0.0.1/unused", brokers);
    let producer: FutureProducer =
        procon::runtime::transport::kafka::producer_config(&config).create()?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(count as usize);
    for i in 0..count {
        let key = (i % KEYS).to_string();
        let mut record = FutureRecord::to(topic).key(&key).payload(payload);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((_, returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

async fn relay_drain(
    url: &str,
    brokers: &str,
    conn: &mut PgConnection,
    count: i64,
) -> Result<f64, BoxError> {
    let runtime = procon::start(relay_only(url, brokers))?;
    let started = Instant::now();
    until_drained(conn, Duration::from_millis(10)).await?;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    runtime.shutdown().await?;
    Ok(rate)
}

/// `relays` relays sharing the outbox through 8 shards drain `count` rows (filled with
/// `emit_all`): events/s from their start to the empty outbox.
async fn sharded_drain(
    url: &str,
    brokers: &str,
    conn: &mut PgConnection,
    topic: &str,
    count: i64,
    relays: usize,
) -> Result<f64, BoxError> {
    fill_outbox_batched(conn, topic, count)?;
    // The outbox's shard count changes with every relay stopped: the relays of this scenario
    // split it into 8, the others use 1.
    conn.batch_execute("DELETE FROM procon_relay_leases; DELETE FROM procon_relay_members")?;
    let started = Instant::now();
    let mut runtimes = Vec::new();
    for relay in 0..relays {
        let mut config = relay_only(url, brokers).service_name(format!("bench-relay-{relay}"));
        config.relay.shards = 8;
        runtimes.push(procon::start(config)?);
    }
    until_drained(conn, Duration::from_millis(10)).await?;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    for runtime in runtimes {
        runtime.shutdown().await?;
    }
    conn.batch_execute("DELETE FROM procon_relay_leases; DELETE FROM procon_relay_members")?;
    Ok(rate)
}

async fn latency(
    url: &str,
    brokers: &str,
    topic: &str,
    rate: u64,
    seconds: u64,
    via_relay: bool,
) -> Result<Vec<Duration>, BoxError> {
    let runtime = if via_relay {
        Some(procon::start(relay_only(url, brokers))?)
    } else {
        None
    };
    let brokers_for_emitter = brokers.to_owned();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "procon-bench-latency")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    // Warm-up events (one second's worth by default) go first and are not measured: a new
    // idempotent producer waits for its producer id, and both paths should be compared warm.
    let warmup: u64 = env_or("BENCH_WARMUP_EVENTS", &rate.to_string()).parse()?;
    let total = rate * seconds + warmup;
    let url = url.to_owned();
    let topic_name = topic.to_owned();
    // The emitter runs on its own thread at a steady pace and records each event's commit time.
    let emitter = std::thread::spawn(move || -> Result<Vec<(String, Instant)>, BoxError> {
        let mut conn = if via_relay {
            Some(PgConnection::establish(&url)?)
        } else {
            None
        };
        let config = procon::Config::new("postgres://unused@127.0.0.1/unused", brokers_for_emitter);
        let producer: rdkafka::producer::ThreadedProducer<
            rdkafka::producer::DefaultProducerContext,
        > = procon::runtime::transport::kafka::producer_config(&config).create()?;
        let period = Duration::from_secs_f64(1.0 / rate as f64);
        let started = Instant::now();
        let mut committed = Vec::with_capacity(total as usize);
        for i in 0..total {
            let due = started + period * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let item = Item {
                topic: topic_name.clone(),
                id: i as i64 % KEYS,
                seq: i as i64,
            };
            let id = match conn.as_mut() {
                Some(conn) => conn
                    .transaction(|conn| item.emit_created(conn))?
                    .to_string(),
                None => {
                    // The baseline: the same message straight to the producer.
                    let id = uuid::Uuid::now_v7().to_string();
                    let payload = serde_json::json!({ "event_id": id }).to_string();
                    let key = item.id.to_string();
                    producer
                        .send(
                            rdkafka::producer::BaseRecord::to(&topic_name)
                                .key(&key)
                                .payload(&payload),
                        )
                        .map_err(|(e, _)| e)?;
                    id
                }
            };
            committed.push((id, Instant::now()));
        }
        // Dropping a producer purges what it has not delivered yet.
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30))?;
        Ok(committed)
    });
    // The measuring consumer blocks in `poll`: it gets a thread of its own, so it never takes
    // a runtime worker from the relay under test.
    let arrivals = tokio::task::spawn_blocking(
        move || -> Result<std::collections::HashMap<String, Instant>, BoxError> {
            let mut arrived = std::collections::HashMap::with_capacity(total as usize);
            let deadline = Instant::now() + Duration::from_secs(seconds + 60);
            while (arrived.len() as u64) < total && Instant::now() < deadline {
                if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                    let message = message?;
                    let envelope: serde_json::Value =
                        serde_json::from_slice(message.payload().unwrap_or_default())?;
                    arrived.insert(
                        envelope["event_id"].as_str().unwrap_or_default().to_owned(),
                        Instant::now(),
                    );
                }
            }
            Ok(arrived)
        },
    );
    let arrived = arrivals.await??;
    let committed = emitter.join().map_err(|_| "emitter thread panicked")??;
    if let Some(runtime) = runtime {
        runtime.shutdown().await?;
    }
    let measured = total - warmup;
    let mut latencies: Vec<Duration> = committed
        .iter()
        .skip(warmup as usize)
        .filter_map(|(id, at)| {
            arrived
                .get(id)
                .map(|seen| seen.saturating_duration_since(*at))
        })
        .collect();
    if latencies.len() as u64 != measured {
        return Err(format!("only {} of {measured} events arrived", latencies.len()).into());
    }
    latencies.sort();
    Ok(latencies)
}

/// A runtime configuration with only the relay (the benchmark also registers a handler).
fn relay_only(url: &str, brokers: &str) -> procon::Config {
    let mut config = procon::Config::new(url, brokers);
    config.consumer.enabled = false;
    if let Ok(ms) = std::env::var("BENCH_RELAY_POLL_MS") {
        config.relay.poll_interval = Duration::from_millis(ms.parse().unwrap_or(1000));
    }
    config
}

/// Fills `topic` with `count` procon events through the outbox and relay.
async fn fill_topic(
    url: &str,
    brokers: &str,
    conn: &mut PgConnection,
    topic: &str,
    count: i64,
    keys: i64,
) -> Result<(), BoxError> {
    fill_outbox_keys(conn, topic, count, keys)?;
    let runtime = procon::start(relay_only(url, brokers))?;
    until_drained(conn, Duration::from_millis(20)).await?;
    runtime.shutdown().await?;
    Ok(())
}

fn consumer_settings(config: &mut ClientConfig) {
    // tansu delays a new group's first assignment by about half the session timeout.
    config
        .set("session.timeout.ms", "2000")
        .set("heartbeat.interval.ms", "500");
}

/// Reads `count` messages of `topic` as a plain group consumer; events/s from the first message.
/// A consumer of a group of its own, subscribed to `topic` from the beginning.
fn fresh_consumer(
    brokers: &str,
    topic: &str,
    group_prefix: &str,
) -> Result<BaseConsumer, BoxError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("{group_prefix}-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    consumer_settings(&mut config);
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

fn raw_consumer(brokers: &str, topic: &str, count: i64) -> Result<f64, BoxError> {
    let consumer = fresh_consumer(brokers, topic, "bench-raw")?;
    let mut seen = 0;
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen < count && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message?;
            started.get_or_insert_with(Instant::now);
            seen += 1;
        }
    }
    let started = started.ok_or("the raw consumer received nothing")?;
    Ok((seen - 1) as f64 / started.elapsed().as_secs_f64())
}

/// Reads `count` events of `topic` and counts the keys whose `seq` went backwards on the
/// broker (each key's events were emitted with increasing `seq`): the relay's order check.
fn order_breaches(brokers: &str, topic: &str, count: i64) -> Result<usize, BoxError> {
    let consumer = fresh_consumer(brokers, topic, "bench-order")?;
    let mut last: std::collections::HashMap<i64, i64> = Default::default();
    let mut breaches = std::collections::HashSet::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen < count && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            let envelope: serde_json::Value =
                serde_json::from_slice(message.payload().unwrap_or_default())?;
            let (id, seq) = (
                envelope["after"]["id"].as_i64().unwrap_or(-1),
                envelope["after"]["seq"].as_i64().unwrap_or(-1),
            );
            if last.get(&id).is_some_and(|&prev| seq < prev) {
                breaches.insert(id);
            }
            last.insert(id, seq);
            seen += 1;
        }
    }
    if seen < count {
        return Err(format!("only {seen} of {count} events found on {topic}").into());
    }
    Ok(breaches.len())
}

/// Applies `count` events of `topic` with the exactly-once consumer; events/s from the first
/// applied event to the last.
async fn exactly_once_consumer(
    url: &str,
    brokers: &str,
    conn: &mut PgConnection,
    topic: &str,
    count: i64,
    batch_size: usize,
    concurrency: usize,
) -> Result<f64, BoxError> {
    let mut config = procon::Config::new(url, brokers);
    config
        .consumer
        .kafka
        .insert("session.timeout.ms".into(), "2000".into());
    config
        .consumer
        .kafka
        .insert("heartbeat.interval.ms".into(), "500".into());
    exactly_once_consumer_with(config, conn, topic, count, batch_size, concurrency).await
}

/// The exactly-once consumer of `config`'s transport applying `count` events of `topic` with
/// [`ApplyItem`]; events/s from the first applied event on.
async fn exactly_once_consumer_with(
    mut config: procon::Config,
    conn: &mut PgConnection,
    topic: &str,
    count: i64,
    batch_size: usize,
    concurrency: usize,
) -> Result<f64, BoxError> {
    conn.batch_execute(
        "DROP TABLE IF EXISTS bench_effects; CREATE TABLE bench_effects (event_id UUID NOT NULL)",
    )?;
    config.service_name = format!("bench-eo-{}", uuid::Uuid::now_v7().simple());
    config.relay.enabled = false;
    config.consumer.batch_size = batch_size;
    config.consumer.concurrency = concurrency;
    if let Ok(max) = std::env::var("BENCH_MAX_IN_FLIGHT") {
        config.consumer.max_in_flight = max.parse()?;
    }
    config
        .consumer
        .topics
        .insert(ApplyItem::TOPIC_NAME.to_owned(), topic.to_owned());
    let runtime = procon::start(config)?;
    let applied = |conn: &mut PgConnection| -> Result<i64, BoxError> {
        Ok(diesel::sql_query("SELECT count(*) AS n FROM bench_effects")
            .get_result::<Count>(conn)?
            .n)
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<(Instant, i64)> = None;
    let mut done = 0;
    while done < count && Instant::now() < deadline {
        done = applied(conn)?;
        if first.is_none() && done > 0 {
            first = Some((Instant::now(), done));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    runtime.shutdown().await?;
    let (started, at_start) = first.ok_or("the exactly-once consumer applied nothing")?;
    if done < count {
        return Err(format!("only {done} of {count} events applied").into());
    }
    Ok((done - at_start) as f64 / started.elapsed().as_secs_f64())
}

impl ApplyItem {
    const TOPIC_NAME: &'static str = <ApplyItem as procon::EventHandler>::TOPIC;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let base = env_or(
        "PROCON_BENCH_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let brokers = env_or("PROCON_BENCH_BROKERS", "127.0.0.1:9092");
    let events: i64 = env_or("BENCH_EVENTS", "100000").parse()?;
    let rate: u64 = env_or("BENCH_RATE", "1000").parse()?;
    let seconds: u64 = env_or("BENCH_SECONDS", "10").parse()?;
    let consume_events: i64 = env_or("BENCH_CONSUME_EVENTS", "20000").parse()?;

    PgConnection::establish(&base)?
        .batch_execute("DROP SCHEMA IF EXISTS procon_bench CASCADE; CREATE SCHEMA procon_bench;")?;
    let url = format!(
        "{base}{}options=-csearch_path%3Dprocon_bench",
        if base.contains('?') { '&' } else { '?' }
    );
    let mut conn = PgConnection::establish(&url)?;
    procon::migrate(&mut conn)?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let (raw_topic, relay_topic, latency_topic, consume_topic) = (
        format!("bench-raw-{run}"),
        format!("bench-relay-{run}"),
        format!("bench-latency-{run}"),
        format!("bench-consume-{run}"),
    );
    let raw_latency_topic = format!("bench-raw-latency-{run}");
    for topic in [
        &raw_topic,
        &relay_topic,
        &latency_topic,
        &consume_topic,
        &raw_latency_topic,
    ] {
        create_topic(&brokers, topic).await?;
    }

    println!(
        "procon-bench: {events} events, {KEYS} keys, {PARTITIONS} partitions, broker {brokers}"
    );
    if std::env::var("BENCH_ONLY").as_deref() == Ok("kinesis") {
        return kinesis::scenario(&url, &mut conn, &run).await;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("avro") {
        return avro::scenario(&url, &brokers, &mut conn, &run).await;
    }
    fill_topic(
        &url,
        &brokers,
        &mut conn,
        &consume_topic,
        consume_events,
        KEYS,
    )
    .await?;
    if std::env::var("BENCH_ONLY").as_deref() == Ok("pipeline") {
        return pipeline(
            &url,
            &brokers,
            &mut conn,
            &consume_topic,
            consume_events,
            &run,
        )
        .await;
    }
    let fill_started = Instant::now();
    let payload = fill_outbox(&mut conn, &relay_topic, events)?;
    let per_event = events as f64 / fill_started.elapsed().as_secs_f64();
    println!(
        "emit, one call per event (1,000 per tx): {per_event:>7.0} events/s   ({} B envelope)",
        payload.len()
    );
    conn.batch_execute("TRUNCATE procon_outbox")?;
    let fill_started = Instant::now();
    fill_outbox_batched(&mut conn, &relay_topic, events)?;
    let batched = events as f64 / fill_started.elapsed().as_secs_f64();
    println!(
        "emit_all, 1,000 events per tx:           {batched:>7.0} events/s   ({:.1}x one call per event)",
        batched / per_event
    );
    let raw = raw_producer(&brokers, &raw_topic, &payload, events).await?;
    println!("raw producer (baseline):              {raw:>9.0} events/s");
    let relay = relay_drain(&url, &brokers, &mut conn, events).await?;
    println!(
        "relay draining the outbox:            {relay:>9.0} events/s   ({:.2}x the raw producer)",
        relay / raw
    );
    let breaches = order_breaches(&brokers, &relay_topic, events)?;
    println!("keys whose events the broker holds out of order: {breaches}");
    let sharded_topic = format!("bench-sharded-{run}");
    create_topic(&brokers, &sharded_topic).await?;
    let one = sharded_drain(&url, &brokers, &mut conn, &sharded_topic, events, 1).await?;
    let two = sharded_drain(&url, &brokers, &mut conn, &sharded_topic, events, 2).await?;
    println!(
        "8 shards, one relay: {one:>9.0} events/s; two relays: {two:>9.0} events/s ({:.2}x)",
        two / one
    );
    for (via_relay, label, topic) in [
        (false, "send -> consumer, raw producer", &raw_latency_topic),
        (true, "commit -> consumer, via the relay", &latency_topic),
    ] {
        let latencies = latency(&url, &brokers, topic, rate, seconds, via_relay).await?;
        println!(
            "{label:<34} at {rate}/s for {seconds} s: p50 {:>6.1} ms, p99 {:>6.1} ms, max {:>6.1} ms",
            percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        );
    }
    let rss_events: i64 = env_or("BENCH_RSS_EVENTS", "100000").parse()?;
    if rss_events > 0 {
        let rss_topic = format!("bench-rss-{run}");
        create_topic(&brokers, &rss_topic).await?;
        let (peak_mb, rate) =
            relay_peak_rss(&url, &brokers, &mut conn, &rss_topic, rss_events).await?;
        println!(
            "relay process draining {rss_events} events of 10 KB: peak RSS {peak_mb:.1} MB, {rate:.0} events/s"
        );
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("relay") {
        return Ok(());
    }
    let raw_consume = raw_consumer(&brokers, &consume_topic, consume_events)?;
    println!("raw consumer (baseline):              {raw_consume:>9.0} events/s   ({consume_events} events)");
    for (batch_size, label) in [(1, "1 tx/event"), (100, "batches of 100")] {
        let exactly_once = exactly_once_consumer(
            &url,
            &brokers,
            &mut conn,
            &consume_topic,
            consume_events,
            batch_size,
            8,
        )
        .await?;
        println!(
            "exactly-once consumer ({label:<14}) {exactly_once:>9.0} events/s   ({:.3}x the raw consumer)",
            exactly_once / raw_consume
        );
    }
    pipeline(
        &url,
        &brokers,
        &mut conn,
        &consume_topic,
        consume_events,
        &run,
    )
    .await?;
    avro::scenario(&url, &brokers, &mut conn, &run).await?;
    kinesis::scenario(&url, &mut conn, &run).await
}

/// Scenarios 5 and 6: the pipeline, IO-bound and database-bound.
async fn pipeline(
    url: &str,
    brokers: &str,
    conn: &mut PgConnection,
    consume_topic: &str,
    consume_events: i64,
    run: &str,
) -> Result<(), BoxError> {
    let io_events: i64 = env_or("BENCH_IO_EVENTS", "10000").parse()?;
    let io_topic = format!("bench-io-{run}");
    create_topic_with(brokers, &io_topic, 1).await?;
    fill_topic(url, brokers, conn, &io_topic, io_events, 100).await?;
    HANDLER_WAIT_MS.store(5, std::sync::atomic::Ordering::Relaxed);
    let mut rates = Vec::new();
    for concurrency in [1, 16] {
        let rate =
            exactly_once_consumer(url, brokers, conn, &io_topic, io_events, 100, concurrency)
                .await?;
        println!(
            "pipeline, 5 ms handler, 1 partition, 100 keys, concurrency {concurrency:>2}: {rate:>7.0} events/s"
        );
        rates.push(rate);
    }
    println!(
        "pipeline IO-bound speed-up (16 vs 1):  {:>8.1}x",
        rates[1] / rates[0]
    );
    HANDLER_WAIT_MS.store(0, std::sync::atomic::Ordering::Relaxed);

    let exactly_once =
        exactly_once_consumer(url, brokers, conn, consume_topic, consume_events, 100, 8).await?;
    let baseline = plain_transactions(url, consume_events, 100, 8)?;
    println!("plain INSERTs + bookkeeping, tx of 100, 8 connections (baseline): {baseline:>7.0} events/s");
    println!(
        "pipeline, 1 INSERT per event, 8 processors, units <= 100:          {exactly_once:>7.0} events/s   ({:.2}x the baseline)",
        exactly_once / baseline
    );
    Ok(())
}

/// The database-bound baseline: `count` events applied by `connections` threads in
/// transactions of `size`, each doing what the pipeline's unit does in the database (record the
/// event ids, one INSERT per event, check the claim) and nothing else.
fn plain_transactions(
    url: &str,
    count: i64,
    size: usize,
    connections: usize,
) -> Result<f64, BoxError> {
    let mut setup = PgConnection::establish(url)?;
    setup.batch_execute(
        "DROP TABLE IF EXISTS bench_plain; CREATE TABLE bench_plain (event_id UUID NOT NULL); \
         INSERT INTO procon_consumer_offsets (group_id, topic, partition, next_offset, epoch) \
         VALUES ('bench-plain', 't', 0, 0, 1) ON CONFLICT DO NOTHING;",
    )?;
    let per_thread = count / connections as i64;
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let url = url.to_owned();
            std::thread::spawn(move || -> Result<(), String> {
                let mut conn = PgConnection::establish(&url).map_err(|e| e.to_string())?;
                let mut left = per_thread;
                while left > 0 {
                    let n = (size as i64).min(left);
                    let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::now_v7()).collect();
                    conn.transaction(|conn| {
                        diesel::sql_query(
                            "INSERT INTO procon_consumed_events (group_id, event_id) \
                             SELECT 'bench-plain', unnest($1) ON CONFLICT DO NOTHING RETURNING event_id",
                        )
                        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&ids)
                        .execute(conn)?;
                        for id in &ids {
                            diesel::sql_query("INSERT INTO bench_plain (event_id) VALUES ($1)")
                                .bind::<diesel::sql_types::Uuid, _>(id)
                                .execute(conn)?;
                        }
                        diesel::sql_query(
                            "SELECT 1 FROM procon_consumer_offsets WHERE group_id = 'bench-plain' \
                             AND topic = 't' AND partition = 0 AND epoch = 1 FOR SHARE",
                        )
                        .execute(conn)?;
                        Ok::<_, diesel::result::Error>(())
                    })
                    .map_err(|e| e.to_string())?;
                    left -= n;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a baseline thread panicked")??;
    }
    Ok((per_thread * connections as i64) as f64 / started.elapsed().as_secs_f64())
}
