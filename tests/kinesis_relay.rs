//! The relay on Kinesis, against real PostgreSQL and the Kinesis emulator: outbox events
//! reach their stream in order per key with procon's headers in the record, a record that
//! fails inside a `PutRecords` call never lets a later event of its key through, a record
//! Kinesis cannot take (or for a stream that does not exist) is parked while other keys flow,
//! an unreachable Kinesis delays events
//! without parking, losing or reordering any, and a setting that cannot work is refused with
//! its name.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::db::TestDb;
use common::kinesis::{self, Read};
use common::model::emit_seqs as emit;
use procon::runtime::transport::kinesis::{record, KinesisError, KinesisPublisher};
use procon::runtime::transport::{Delivery, Publisher, Record, SendError, TransportError};

const LONG: Duration = Duration::from_secs(60);

/// A record as the relay wrote it: headers and the envelope.
struct Published {
    key: String,
    headers: Vec<(String, Vec<u8>)>,
    envelope: serde_json::Value,
}

fn decoded(read: &[Read]) -> Vec<Published> {
    read.iter()
        .map(|r| {
            let decoded = record::decode(&r.data).expect("a procon record");
            Published {
                key: r.key.clone(),
                envelope: serde_json::from_slice(decoded.payload).expect("a JSON envelope"),
                headers: decoded.headers,
            }
        })
        .collect()
}

fn seqs_by_key(read: &[Read]) -> BTreeMap<String, Vec<i64>> {
    let mut keys: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for record in decoded(read) {
        keys.entry(record.key)
            .or_default()
            .push(record.envelope["after"]["seq"].as_i64().unwrap());
    }
    keys
}

fn kinesis_config(db: &TestDb) -> procon::Config {
    let mut config = common::runtime_config(db, "");
    config.transport = procon::Transport::Kinesis;
    config.kinesis = kinesis::settings();
    config.relay.batch_size = 50;
    config.relay.park_after_attempts = 2;
    config.relay.backoff.initial = Duration::from_millis(50);
    config.relay.backoff.max = Duration::from_millis(200);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_events_reach_their_stream_in_order_per_key_with_their_headers() {
    common::init_logs();
    let db = TestDb::new("kinesis_relay_order");
    let client = kinesis::client();
    let stream = kinesis::unique_stream("kin-accounts");
    kinesis::create_stream(&client, &stream, 2).await;
    let mut conn = db.conn();
    for id in 1..=10 {
        emit(&mut conn, &stream, id, 1..21, "owner");
    }
    let runtime = procon::start(kinesis_config(&db)).unwrap();
    let read = kinesis::read_until(&client, &stream, LONG, |r| r.len() >= 200).await;

    assert_eq!(read.len(), 200, "each event once");
    let keys = seqs_by_key(&read);
    assert_eq!(keys.len(), 10);
    for (key, seqs) in &keys {
        assert_eq!(seqs, &(1..21).collect::<Vec<_>>(), "key {key} in order");
    }
    for record in decoded(&read) {
        let header = |name: &str| {
            record
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(
            header("procon-event-id").as_deref(),
            record.envelope["event_id"].as_str(),
            "the event id travels in the record"
        );
        assert_eq!(header("procon-event").as_deref(), Some("account.created"));
    }
    common::wait_for("the relay to delete what it published", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });
    runtime.shutdown().await.unwrap();
}

/// The Kinesis publisher, but the third event of each key fails once, after the call, the way
/// a record throttled inside a `PutRecords` call does while the others of the call succeed.
struct ThrottledOnce {
    inner: KinesisPublisher,
    throttled: Mutex<std::collections::HashSet<Vec<u8>>>,
    failures: AtomicUsize,
    /// What the transport claims; a true claim here would be a lie (Kinesis takes a key's
    /// later records whatever happened to its earlier one), which the test must catch.
    claims_fails_successors: bool,
}

impl Publisher for ThrottledOnce {
    fn send(&self, record: Record<'_>) -> Result<Delivery, SendError> {
        let envelope: serde_json::Value =
            serde_json::from_slice(record.payload).unwrap_or_default();
        if envelope["after"]["seq"].as_i64() == Some(3)
            && self.throttled.lock().unwrap().insert(record.key.to_vec())
        {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Ok(Box::pin(async {
                Err(TransportError::Kinesis(KinesisError {
                    operation: "PutRecords",
                    code: Some("ProvisionedThroughputExceededException".to_owned()),
                    message: "Rate exceeded for shard".to_owned(),
                    refused_here: false,
                }))
            }));
        }
        self.inner.send(record)
    }

    fn fails_successors(&self) -> bool {
        self.claims_fails_successors
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_throttled_inside_a_call_never_lets_a_later_event_of_its_key_through() {
    common::init_logs();
    let db = TestDb::new("kinesis_relay_throttled");
    let client = kinesis::client();
    let stream = kinesis::unique_stream("kin-throttled");
    kinesis::create_stream(&client, &stream, 2).await;
    let mut conn = db.conn();
    for id in 1..=5 {
        emit(&mut conn, &stream, id, 1..11, "owner");
    }
    let config = kinesis_config(&db);
    let publisher = Arc::new(ThrottledOnce {
        inner: KinesisPublisher::new(&config).unwrap(),
        throttled: Mutex::default(),
        failures: AtomicUsize::new(0),
        claims_fails_successors: false,
    });
    let runtime = procon::start_relay_with(config, publisher.clone()).unwrap();
    let read = kinesis::read_until(&client, &stream, LONG, |r| r.len() >= 50).await;

    assert_eq!(publisher.failures.load(Ordering::SeqCst), 5);
    for (key, seqs) in seqs_by_key(&read) {
        assert_eq!(seqs, (1..11).collect::<Vec<_>>(), "key {key} in order");
    }
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_kinesis_cannot_take_is_parked_while_other_keys_flow() {
    common::init_logs();
    let db = TestDb::new("kinesis_relay_parked");
    let client = kinesis::client();
    let stream = kinesis::unique_stream("kin-parked");
    kinesis::create_stream(&client, &stream, 2).await;
    let mut conn = db.conn();
    // Kinesis takes at most 1 MiB per record.
    emit(&mut conn, &stream, 1, 1..2, &"x".repeat(1_100_000));
    emit(&mut conn, &stream, 1, 2..6, "small");
    for id in 2..5 {
        emit(&mut conn, &stream, id, 1..6, "small");
    }
    let runtime = procon::start(kinesis_config(&db)).unwrap();
    let read = kinesis::read_until(&client, &stream, LONG, |r| r.len() >= 15).await;
    let parked = common::wait_for("the 1.1 MB event to be parked", LONG, || {
        let rows = procon::parked_rows(&mut conn).unwrap();
        (rows.len() == 1).then_some(rows)
    });
    assert_eq!(parked[0].key, "1");
    assert_eq!(parked[0].waiting_behind, 4);
    assert!(parked[0].error.contains("at most"), "{}", parked[0].error);
    let keys = seqs_by_key(&read);
    assert!(
        !keys.contains_key("1"),
        "key 1 waits behind its parked event"
    );
    for id in 2..5 {
        assert_eq!(keys[&id.to_string()], (1..6).collect::<Vec<_>>());
    }

    // Dropped, the rest of key 1 follows.
    procon::drop_parked(&mut conn, parked[0].id).unwrap();
    let read = kinesis::read_until(&client, &stream, LONG, |r| r.len() >= 19).await;
    assert_eq!(seqs_by_key(&read)["1"], vec![2, 3, 4, 5]);
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_kinesis_setting_that_cannot_work_is_refused_with_its_name() {
    let db = TestDb::new("kinesis_bad_settings");
    let mut config = kinesis_config(&db);
    config.kinesis.endpoint_url = Some("127.0.0.1:4568".to_owned());
    let Err(error) = procon::start(config) else {
        panic!("refused")
    };
    assert!(
        error.to_string().contains("kinesis.endpoint_url"),
        "{error}"
    );
    let mut config = kinesis_config(&db);
    config.kinesis.lease_ttl = Duration::from_millis(10);
    let Err(error) = procon::start(config) else {
        panic!("refused")
    };
    assert!(error.to_string().contains("kinesis.lease_ttl"), "{error}");
}

/// The Kinesis publisher, counting the deliveries that failed and those that were rejections.
struct Counting {
    inner: KinesisPublisher,
    failed: Arc<AtomicUsize>,
    rejected: Arc<AtomicUsize>,
}

impl Publisher for Counting {
    fn send(&self, record: Record<'_>) -> Result<Delivery, SendError> {
        let delivery = self.inner.send(record)?;
        let (failed, rejected) = (self.failed.clone(), self.rejected.clone());
        Ok(Box::pin(async move {
            let result = delivery.await;
            if let Err(error) = &result {
                failed.fetch_add(1, Ordering::SeqCst);
                if error.is_rejection() {
                    rejected.fetch_add(1, Ordering::SeqCst);
                }
            }
            result
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_kinesis_is_unreachable_events_wait_unparked_then_flow_in_order() {
    common::init_logs();
    let db = TestDb::new("kinesis_relay_outage");
    let client = kinesis::client();
    let stream = kinesis::unique_stream("kin-outage");
    kinesis::create_stream(&client, &stream, 2).await;
    let upstream: std::net::SocketAddr = kinesis::endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], common::proxy::free_port()));
    let mut proxy = common::proxy::Proxy::start(listen, upstream).await;
    proxy.cut().await;

    let mut config = kinesis_config(&db);
    config.kinesis.endpoint_url = Some(format!("http://{listen}"));
    let (failed, rejected) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let publisher = Arc::new(Counting {
        inner: KinesisPublisher::new(&config).unwrap(),
        failed: failed.clone(),
        rejected: rejected.clone(),
    });
    let runtime = procon::start_relay_with(config, publisher).unwrap();
    let mut conn = db.conn();
    for id in 1..=2 {
        emit(&mut conn, &stream, id, 1..6, "owner");
    }
    // More failed attempts than `park_after_attempts` (2): an outage is never a rejection.
    common::wait_for("deliveries to fail while Kinesis is away", LONG, || {
        (failed.load(Ordering::SeqCst) >= 6).then_some(())
    });
    assert_eq!(rejected.load(Ordering::SeqCst), 0);
    assert_eq!(db.outbox_len(), 10, "nothing deleted while undelivered");
    assert!(
        procon::parked_rows(&mut conn).unwrap().is_empty(),
        "nothing parked"
    );

    proxy.restore().await;
    let read = kinesis::read_until(&client, &stream, LONG, |r| r.len() >= 10).await;
    for (key, seqs) in seqs_by_key(&read) {
        assert_eq!(seqs, (1..6).collect::<Vec<_>>(), "key {key} in order, once");
    }
    common::wait_for("the outbox to drain", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_for_a_missing_stream_are_parked_with_the_reason_and_flow_once_retried() {
    common::init_logs();
    let db = TestDb::new("kinesis_relay_missing_stream");
    let client = kinesis::client();
    let stream = kinesis::unique_stream("kin-missing");
    let mut conn = db.conn();
    emit(&mut conn, &stream, 1, 1..4, "owner");
    let runtime = procon::start(kinesis_config(&db)).unwrap();
    let parked = common::wait_for("the first event to be parked", LONG, || {
        let rows = procon::parked_rows(&mut conn).unwrap();
        (rows.len() == 1).then_some(rows)
    });
    assert_eq!(parked[0].waiting_behind, 2, "the key's later events wait");
    assert!(
        parked[0].error.contains("ResourceNotFoundException"),
        "{}",
        parked[0].error
    );

    // The stream appears (a deploy in the wrong order); the operator retries the event.
    kinesis::create_stream(&client, &stream, 1).await;
    assert!(procon::retry_parked(&mut conn, parked[0].id).unwrap());
    let read = kinesis::read_until(&client, &stream, LONG, |r| r.len() >= 3).await;
    assert_eq!(seqs_by_key(&read)["1"], vec![1, 2, 3]);
    runtime.shutdown().await.unwrap();
}
