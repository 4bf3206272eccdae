//! Events published to a topic the program never declared: the relay warns once per topic (the
//! default), or refuses them (parked with the reason) under `relay.undeclared_topics = refuse`;
//! a relay told to refuse with nothing declared does not start. Against real PostgreSQL and the
//! real broker.

mod common;

use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic, Collector};
use common::db::TestDb;
use common::model::{Account, Routed};
use diesel::{Connection, PgConnection};
use procon::prelude::*;

const LONG: Duration = Duration::from_secs(60);

/// Emits one event of account `id` on the (logical) `topic`.
fn emit(conn: &mut PgConnection, topic: &str, id: i64) {
    conn.transaction(|conn| {
        Routed {
            topic: topic.to_owned(),
            account: Account {
                id,
                owner: "o".to_owned(),
                seq: 1,
                secret: String::new(),
            },
        }
        .emit_created(conn)
    })
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_refuse_an_event_of_an_undeclared_topic_is_parked_and_declared_ones_flow() {
    common::init_logs();
    let db = TestDb::new("undeclared_refuse");
    let physical = unique_topic("declared-accounts");
    create_topic(&brokers(), &physical, 1).await;
    let mut config = common::runtime_config(&db, &brokers());
    config.relay.undeclared_topics = procon::UndeclaredTopics::Refuse;
    config.relay.park_after_attempts = 1;
    // `accounts` is declared by `#[derive(Outbox)] Account`; the map sends it to a test topic.
    config
        .relay
        .topics
        .insert("accounts".into(), physical.clone());
    let mut conn = db.conn();
    emit(&mut conn, "acounts", 2); // the typo
    emit(&mut conn, "accounts", 1);
    let runtime = procon::start(config).unwrap();

    let mut collector = Collector::new(&brokers(), &physical, 1);
    let received = collector.at_least(1, LONG);
    assert_eq!(received[0].key, "1");
    let parked = common::wait_for("the undeclared event to be parked", LONG, || {
        let rows = procon::parked_rows(&mut conn).unwrap();
        (rows.len() == 1).then_some(rows)
    });
    assert_eq!(parked[0].topic, "acounts");
    assert!(
        parked[0].error.contains("topic `acounts` is not declared"),
        "{}",
        parked[0].error
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standalone_relay_warns_once_per_undeclared_topic_and_publishes_it() {
    common::init_logs();
    let db = TestDb::new("undeclared_warn");
    let (declared, undeclared) = (unique_topic("declared"), unique_topic("undeclared"));
    create_topic(&brokers(), &declared, 1).await;
    create_topic(&brokers(), &undeclared, 1).await;
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("relay-undeclared.log");
    let mut relay = std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .args(["relay", "--topic", &format!("accounts={declared}")])
        .env("PROCON_DATABASE_URL", &db.url)
        .env("PROCON_BROKERS", brokers())
        .env("PROCON_RELAY_POLL_INTERVAL_MS", "100")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn `procon relay`");
    let mut conn = db.conn();
    emit(&mut conn, "accounts", 1);
    for id in 1..=3 {
        emit(&mut conn, &undeclared, id);
    }
    Collector::new(&brokers(), &declared, 1).at_least(1, LONG);
    Collector::new(&brokers(), &undeclared, 1).at_least(3, LONG);
    let _ = relay.kill();
    let _ = relay.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("no #[derive(Outbox)] model"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per topic:\n{text}");
    assert!(warnings[0].contains(&undeclared), "{text}");
    assert!(
        warnings[0].contains("PROCON_RELAY_UNDECLARED_TOPICS=refuse"),
        "{text}"
    );
}

#[test]
fn refuse_with_nothing_declared_is_a_configuration_error() {
    let db = TestDb::new("undeclared_nothing");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .arg("relay")
        .env("PROCON_DATABASE_URL", &db.url)
        .env("PROCON_BROKERS", brokers())
        .env("PROCON_RELAY_UNDECLARED_TOPICS", "refuse")
        .output()
        .expect("run `procon relay`");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("relay.undeclared_topics") && stderr.contains("no topic is declared"),
        "{stderr}"
    );
}
