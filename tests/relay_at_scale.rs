//! The pipelined relay against real PostgreSQL and the real broker: a row the broker rejects is
//! parked while other keys flow, a failed delivery never lets a later event of its key through,
//! a late commit below the read cursor keeps its key's order, and the database connection is
//! secured, patient and discreet.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic, Collector, Received};
use common::db::TestDb;
use common::model::{Account, Routed};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use procon::prelude::*;
use procon::runtime::transport::kafka::KafkaPublisher;
use procon::runtime::transport::{Delivery, Publisher, Record, SendError, TransportError};

const LONG: Duration = Duration::from_secs(60);

fn account(id: i64, seq: i64, owner: String) -> Account {
    Account {
        id,
        owner,
        seq,
        secret: String::new(),
    }
}

/// Emits, in one transaction, `seqs` events of account `id` on `topic` (owner `owner`).
fn emit(conn: &mut PgConnection, topic: &str, id: i64, seqs: std::ops::Range<i64>, owner: &str) {
    conn.transaction(|conn| {
        for seq in seqs {
            Routed {
                topic: topic.to_owned(),
                account: account(id, seq, owner.to_owned()),
            }
            .emit_created(conn)?;
        }
        Ok::<_, procon::EmitError>(())
    })
    .unwrap();
}

fn seqs_of(received: &[Received], key: &str) -> Vec<i64> {
    received
        .iter()
        .filter(|m| m.key == key)
        .map(|m| m.payload["after"]["seq"].as_i64().unwrap())
        .collect()
}

fn relay_config(db: &TestDb) -> procon::Config {
    let mut config = common::runtime_config(db, &brokers());
    config.relay.batch_size = 10;
    config.relay.park_after_attempts = 2;
    config.relay.backoff.initial = Duration::from_millis(50);
    config.relay.backoff.max = Duration::from_millis(200);
    config
}

fn cli(db: &TestDb, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .args(args)
        .env("PROCON_DATABASE_URL", &db.url)
        .output()
        .expect("run procon")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_event_is_parked_its_key_waits_and_other_keys_flow_until_it_is_dropped() {
    common::init_logs();
    let db = TestDb::new("parked_drop");
    let topic = unique_topic("parked");
    create_topic(&brokers(), &topic, 4).await;
    let mut conn = db.conn();
    // 12 events of 2 MB on key 1 (librdkafka refuses records over 1 MB), then 30 small ones
    // on key 1, and 200 small events on 10 other keys behind them.
    let huge = "x".repeat(2_000_000);
    emit(&mut conn, &topic, 1, 1..13, &huge);
    emit(&mut conn, &topic, 1, 13..43, "small");
    for id in 2..12 {
        emit(&mut conn, &topic, id, 1..21, "small");
    }
    let runtime = procon::start(relay_config(&db)).unwrap();

    let mut collector = Collector::new(&brokers(), &topic, 4);
    collector.at_least(200, LONG);
    let parked = common::wait_for("the first 2 MB event to be parked", LONG, || {
        let rows = procon::parked_rows(&mut conn).unwrap();
        (rows.len() == 1).then_some(rows)
    });
    assert_eq!(parked[0].key, "1");
    assert_eq!(parked[0].attempts, 2);
    assert_eq!(
        parked[0].waiting_behind, 41,
        "11 large and 30 small events wait behind it"
    );
    assert!(parked[0].error.contains("too large"), "{}", parked[0].error);
    let received = collector.drain_for(Duration::from_millis(500));
    assert!(
        seqs_of(received, "1").is_empty(),
        "nothing of key 1 may pass its parked event"
    );
    for id in 2..12 {
        assert_eq!(
            seqs_of(received, &id.to_string()),
            (1..21).collect::<Vec<_>>()
        );
    }

    // The operator sees it, and drops the 2 MB events one by one through the CLI.
    let status = cli(&db, &["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("1 events parked"), "{status}");
    let listed = String::from_utf8_lossy(&cli(&db, &["parked", "list"]).stdout).into_owned();
    assert!(listed.contains(&parked[0].event_id.to_string()), "{listed}");
    // The same for scripts.
    let status: serde_json::Value =
        serde_json::from_slice(&cli(&db, &["status", "--json"]).stdout).expect("status as JSON");
    assert_eq!(status["outbox"]["parked"], 1, "{status}");
    assert_eq!(
        status["parked"][0]["event_id"],
        parked[0].event_id.to_string(),
        "{status}"
    );
    for _ in 0..12 {
        let row = common::wait_for("a parked event", LONG, || {
            procon::parked_rows(&mut conn).unwrap().into_iter().next()
        });
        let dropped = cli(&db, &["parked", "drop", &row.id.to_string()]);
        assert!(dropped.status.success(), "{dropped:?}");
    }
    let received = collector.until(LONG, |r| seqs_of(r, "1").len() >= 30);
    assert_eq!(seqs_of(received, "1"), (13..43).collect::<Vec<_>>());
    assert!(procon::parked_rows(&mut conn).unwrap().is_empty());
    let missing = cli(&db, &["parked", "drop", "999999"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no parked event 999999"));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_parked_event_is_published_before_the_later_events_of_its_key() {
    common::init_logs();
    let db = TestDb::new("parked_retry");
    let topic = unique_topic("parked-retry");
    create_topic(&brokers(), &topic, 2).await;
    let mut conn = db.conn();
    emit(&mut conn, &topic, 1, 1..2, &"y".repeat(1_500_000));
    emit(&mut conn, &topic, 1, 2..12, "small");
    let runtime = procon::start(relay_config(&db)).unwrap();
    let parked = common::wait_for("the large event to be parked", LONG, || {
        procon::parked_rows(&mut conn).unwrap().into_iter().next()
    });
    runtime.shutdown().await.unwrap();

    // The cause is fixed (the producer now takes records up to 3 MB), then the event retried.
    let mut config = relay_config(&db);
    config
        .kafka
        .insert("message.max.bytes".into(), "3000000".into());
    let runtime = procon::start(config).unwrap();
    let retried = cli(&db, &["parked", "retry", &parked.id.to_string()]);
    assert!(retried.status.success(), "{retried:?}");
    let mut collector = Collector::new(&brokers(), &topic, 2);
    let received = collector.until(LONG, |r| seqs_of(r, "1").len() >= 11);
    assert_eq!(seqs_of(received, "1"), (1..12).collect::<Vec<_>>());
    assert_eq!(received[0].event_id(), parked.event_id.to_string());
    common::wait_for("the outbox to empty", LONG, || {
        (db.outbox_len() == 0).then_some(())
    });
    runtime.shutdown().await.unwrap();
}

/// The Kafka publisher, but the first attempt of every event with `seq` 3 fails
/// asynchronously, as a broker's rejection would. With `gapless` (the contract of a publisher
/// that `fails_successors`, like Kafka's with `enable.gapless.guarantee`) the failure is
/// reported only once a later event of its key was handed over, and those later ones fail too:
/// a failure in the middle of a key's records in flight. Without it the failure is reported at
/// once and later records would go through, which is why the relay must not send them first.
struct FailingPublisher {
    inner: KafkaPublisher,
    gapless: bool,
    failed_once: Mutex<std::collections::HashSet<Vec<u8>>>,
    /// Keys whose seq-3 event failed, until it is sent again; each with what the pending
    /// failure waits for (a later record of the key handed over).
    poisoned: Mutex<std::collections::HashMap<Vec<u8>, Arc<tokio::sync::Notify>>>,
    failures: AtomicBool,
    /// Records handed over behind a pending failure of their key.
    behind_failures: std::sync::atomic::AtomicUsize,
}

fn fail_async() -> Delivery {
    Box::pin(async { Err(TransportError::Cancelled) })
}

impl Publisher for FailingPublisher {
    fn send(&self, record: Record<'_>) -> Result<Delivery, SendError> {
        let envelope: serde_json::Value =
            serde_json::from_slice(record.payload).unwrap_or_default();
        let seq = envelope["after"]["seq"].as_i64().unwrap_or(0);
        let key = record.key.to_vec();
        if seq == 3 && self.failed_once.lock().unwrap().insert(key.clone()) {
            self.failures.store(true, Ordering::SeqCst);
            let successor_sent = Arc::new(tokio::sync::Notify::new());
            self.poisoned
                .lock()
                .unwrap()
                .insert(key, successor_sent.clone());
            if !self.gapless {
                return Ok(fail_async());
            }
            return Ok(Box::pin(async move {
                successor_sent.notified().await;
                Err(TransportError::Cancelled)
            }));
        }
        if seq == 3 {
            self.poisoned.lock().unwrap().remove(&key);
        }
        if let Some(successor_sent) = self.poisoned.lock().unwrap().get(&key) {
            self.behind_failures.fetch_add(1, Ordering::SeqCst);
            if self.gapless {
                successor_sent.notify_one();
                return Ok(fail_async());
            }
        }
        self.inner.send(record)
    }

    fn fails_successors(&self) -> bool {
        self.gapless
    }
}

async fn failed_delivery_keeps_key_order(name: &str, gapless: bool) {
    common::init_logs();
    let db = TestDb::new(name);
    let topic = unique_topic(name);
    create_topic(&brokers(), &topic, 4).await;
    let mut conn = db.conn();
    for id in 1..=5 {
        emit(&mut conn, &topic, id, 1..11, "small");
    }
    let config = relay_config(&db);
    let publisher = Arc::new(FailingPublisher {
        inner: KafkaPublisher::new(&config).unwrap(),
        gapless,
        failed_once: Mutex::default(),
        poisoned: Mutex::default(),
        failures: AtomicBool::new(false),
        behind_failures: std::sync::atomic::AtomicUsize::new(0),
    });
    let runtime = procon::start_relay_with(config, publisher.clone()).unwrap();
    let mut collector = Collector::new(&brokers(), &topic, 4);
    let received = collector.until(LONG, |r| {
        (1..=5).all(|id| seqs_of(r, &id.to_string()).last() == Some(&10))
    });
    assert!(publisher.failures.load(Ordering::SeqCst));
    let behind = publisher.behind_failures.load(Ordering::SeqCst);
    if gapless {
        assert!(
            behind > 0,
            "later records were in flight when the failure came"
        );
    } else {
        assert_eq!(
            behind, 0,
            "with one record per key in flight nothing went out behind it"
        );
    }
    for id in 1..=5 {
        let seqs = seqs_of(received, &id.to_string());
        assert_eq!(
            seqs,
            (1..11).collect::<Vec<_>>(),
            "key {id}: the failed event 3 first, then 4..10, each once"
        );
    }
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_delivery_never_lets_a_later_event_of_its_key_through() {
    failed_delivery_keeps_key_order("failed_mid_round", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_delivery_with_several_in_flight_per_key_keeps_key_order() {
    failed_delivery_keeps_key_order("failed_mid_window", true).await;
}

/// The Kafka publisher, but records of key `held` wait for the gate to open: the relay always
/// has something in flight, so it never falls back on an idle re-read from the head.
struct GatedPublisher {
    inner: Arc<KafkaPublisher>,
    held: &'static str,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Publisher for GatedPublisher {
    fn send(&self, record: Record<'_>) -> Result<Delivery, SendError> {
        if record.key != self.held.as_bytes() {
            return self.inner.send(record);
        }
        let (inner, gate) = (self.inner.clone(), self.gate.clone());
        let topic = record.topic.to_owned();
        let (key, payload) = (record.key.to_vec(), record.payload.to_vec());
        let headers: Vec<(String, Vec<u8>)> = record
            .headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
            .collect();
        Ok(Box::pin(async move {
            let _open = gate.acquire().await;
            let headers: Vec<(&str, &[u8])> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            let delivery = inner.send(Record {
                topic: &topic,
                key: &key,
                payload: &payload,
                headers: &headers,
            });
            match delivery {
                Ok(delivery) => delivery.await,
                Err(_) => Err(TransportError::Cancelled),
            }
        }))
    }

    fn fails_successors(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_commit_below_the_read_cursor_keeps_its_key_in_order() {
    common::init_logs();
    let db = TestDb::new("late_below_cursor");
    let topic = unique_topic("late-cursor");
    create_topic(&brokers(), &topic, 2).await;
    let config = relay_config(&db);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let publisher = Arc::new(GatedPublisher {
        inner: Arc::new(KafkaPublisher::new(&config).unwrap()),
        held: "99",
        gate: gate.clone(),
    });
    let runtime = procon::start_relay_with(config, publisher).unwrap();
    let mut collector = Collector::new(&brokers(), &topic, 2);
    emit(&mut db.conn(), &topic, 99, 1..2, "held in flight");

    // Key 1's first event draws a low id and commits late...
    let mut slow = db.conn();
    AnsiTransactionManager::begin_transaction(&mut slow).unwrap();
    Routed {
        topic: topic.clone(),
        account: account(1, 1, "late".into()),
    }
    .emit_created(&mut slow)
    .unwrap();
    // ...while other keys move the relay's read cursor past it.
    emit(&mut db.conn(), &topic, 2, 1..6, "other");
    collector.at_least(5, LONG);
    // (Key 99's row stays; the uncommitted row is invisible to this connection.)
    common::wait_for("the relay to delete what it published", LONG, || {
        (db.outbox_len() == 1).then_some(())
    });
    AnsiTransactionManager::commit_transaction(&mut slow).unwrap();
    // Key 1's second event commits after the first, with an id above the cursor.
    emit(&mut db.conn(), &topic, 1, 2..3, "later");
    let received = collector.until(LONG, |r| !seqs_of(r, "1").is_empty());
    assert_eq!(seqs_of(received, "1")[0], 1, "the late event goes first");
    let received = collector.until(LONG, |r| seqs_of(r, "1").len() >= 2);
    assert_eq!(seqs_of(received, "1"), vec![1, 2]);
    gate.add_permits(1);
    collector.until(LONG, |r| !seqs_of(r, "99").is_empty());
    runtime.shutdown().await.unwrap();
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    flag: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_connects_with_tls_when_the_url_says_sslmode_require() {
    common::init_logs();
    let db = TestDb::new("relay_tls");
    let topic = unique_topic("tls");
    create_topic(&brokers(), &topic, 1).await;
    let mut config = relay_config(&db);
    config.database_url = format!("{}&sslmode=require&application_name=relay-tls-test", db.url);
    let runtime = procon::start(config).unwrap();
    emit(&mut db.conn(), &topic, 1, 1..4, "tls");
    let mut collector = Collector::new(&brokers(), &topic, 1);
    collector.at_least(3, LONG);
    let tls: Flag = diesel::sql_query(
        "SELECT bool_and(s.ssl) AND count(*) >= 3 AS flag FROM pg_stat_ssl s \
         JOIN pg_stat_activity a ON a.pid = s.pid \
         WHERE a.application_name = 'relay-tls-test' AND a.datname = current_database()",
    )
    .get_result(&mut db.conn())
    .unwrap();
    assert!(
        tls.flag,
        "every session of the relay (reads, deletes, realtime) is encrypted"
    );
    runtime.shutdown().await.unwrap();

    // verify-full checks the certificate against sslrootcert and the host name: Debian's
    // snakeoil certificate names the machine, not 127.0.0.1, so the relay must refuse it.
    let url = format!(
        "{}&sslmode=verify-full&sslrootcert=/etc/ssl/certs/ssl-cert-snakeoil.pem",
        db.url
    );
    let (mut relay, log) = spawn_logged_relay(&url, "relay-verify-full");
    emit(&mut db.conn(), &topic, 2, 1..2, "never");
    common::wait_for("the relay to refuse the certificate twice", LONG, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.matches("relay database unavailable").count() >= 2).then_some(())
    });
    let _ = relay.kill();
    let _ = relay.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.to_ascii_lowercase().contains("certificate"),
        "the error names the certificate:\n{text}"
    );
    assert_eq!(db.outbox_len(), 1, "no plaintext or unverified fallback");
}

/// `procon relay` on `url`, logging to a file of the target directory; returns the log's path.
fn spawn_logged_relay(url: &str, name: &str) -> (std::process::Child, std::path::PathBuf) {
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.log"));
    let relay = std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .arg("relay")
        .env("PROCON_DATABASE_URL", url)
        .env("PROCON_BROKERS", brokers())
        .env("PROCON_RELAY_POLL_INTERVAL_MS", "100")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn `procon relay`");
    (relay, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_started_before_its_schema_exists_waits_then_publishes() {
    common::init_logs();
    let schema = "t_schema_later";
    let mut admin = PgConnection::establish(&common::db::base_url()).unwrap();
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
    let url = common::db::with_search_path(&common::db::base_url(), schema);
    let topic = unique_topic("schema-later");
    create_topic(&brokers(), &topic, 1).await;
    let (mut relay, log) = spawn_logged_relay(&url, "relay-schema-later");
    common::wait_for("the relay to report the missing table", LONG, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("does not exist in the connection's search_path")
            .then_some(())
    });

    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let mut conn = PgConnection::establish(&url).unwrap();
    procon::migrate(&mut conn).unwrap();
    emit(&mut conn, &topic, 1, 1..3, "late schema");
    let mut collector = Collector::new(&brokers(), &topic, 1);
    collector.at_least(2, LONG);
    let _ = relay.kill();
    let _ = relay.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("panicked"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_relay_leads_per_outbox_table_whatever_the_search_path() {
    common::init_logs();
    let db = TestDb::new("shared_outbox");
    let mut admin = db.conn();
    admin
        .batch_execute(
            "DROP SCHEMA IF EXISTS t_front_a CASCADE; CREATE SCHEMA t_front_a; \
             DROP SCHEMA IF EXISTS t_front_b CASCADE; CREATE SCHEMA t_front_b;",
        )
        .unwrap();
    // Two services whose first schema differs but whose outbox is the same table.
    let base = common::db::base_url();
    let start = |front: &str| {
        let url = format!(
            "{base}{}options=-csearch_path%3D{front}%2C{}&application_name=relay-shared-outbox",
            if base.contains('?') { '&' } else { '?' },
            db.schema
        );
        let mut config = procon::Config::new(url, brokers());
        config.consumer.enabled = false;
        config.relay.poll_interval = Duration::from_millis(100);
        config.relay.lease_ttl = Duration::from_millis(1500);
        procon::start(config).unwrap()
    };
    let first = start("t_front_a");
    let second = start("t_front_b");
    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        owners: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        members: i64,
    }
    // Both relays coordinate through the shared schema's lease table: two members, one owner
    // of the one shard.
    let counts = || -> Counts {
        diesel::sql_query(
            "SELECT (SELECT count(DISTINCT owner) FROM procon_relay_leases \
                     WHERE expires_at > now()) AS owners, \
                    (SELECT count(*) FROM procon_relay_members) AS members",
        )
        .get_result::<Counts>(&mut db.conn())
        .unwrap()
    };
    common::wait_for("both relays to join", LONG, || {
        let c = counts();
        (c.members == 2 && c.owners == 1).then_some(())
    });
    for front in ["t_front_a", "t_front_b"] {
        let tables: i64 = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM information_schema.tables \
             WHERE table_schema = '{front}' AND table_name LIKE 'procon_%'"
        ))
        .get_result::<common::db::CountRow>(&mut admin)
        .unwrap()
        .n;
        assert_eq!(tables, 0, "nothing was created in {front}");
    }
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

#[test]
fn the_relay_logs_no_password_of_a_key_value_connection_string() {
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("relay-secrets.log");
    let mut relay = std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .arg("relay")
        .env(
            "PROCON_DATABASE_URL",
            "host=127.0.0.1 user=postgres password=hunter2-db dbname=procon_no_such_db",
        )
        .env("PROCON_BROKERS", brokers())
        .env("PROCON_KAFKA_SASL_USERNAME", "svc")
        .env("PROCON_KAFKA_SASL_PASSWORD", "hunter2-kafka")
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    common::wait_for("the relay to log its database errors", LONG, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.matches("relay database unavailable").count() >= 3).then_some(())
    });
    let _ = relay.kill();
    let _ = relay.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("procon_no_such_db"),
        "the log names the database"
    );
    for secret in ["hunter2-db", "hunter2-kafka"] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the log:\n{text}"
        );
    }
}
