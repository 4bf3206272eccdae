//! The producer side against real PostgreSQL and the real broker: an event exists if and only
//! if the emitting transaction commits.

mod common;

use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic, Collector};
use common::db::TestDb;
use common::model::{upsert_and_emit, Account, Routed};
use diesel::connection::SimpleConnection;
use diesel::{Connection, QueryableByName, RunQueryDsl};
use procon::prelude::*;
use procon::EmitError;

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    message_key: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    payload: String,
}

fn stored(db: &TestDb) -> Vec<(String, String, serde_json::Value)> {
    diesel::sql_query(
        "SELECT event_name, message_key, payload::text AS payload FROM procon_outbox ORDER BY id",
    )
    .load::<Stored>(&mut db.conn())
    .unwrap()
    .into_iter()
    .map(|s| {
        (
            s.event_name,
            s.message_key,
            serde_json::from_str(&s.payload).unwrap(),
        )
    })
    .collect()
}

fn account(id: i64) -> Account {
    Account {
        id,
        owner: format!("owner-{id}"),
        seq: 1,
        secret: "hidden".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_event_reaches_broker_with_headers_and_envelope() {
    common::init_logs();
    let db = TestDb::new("committed_event");
    let topic = unique_topic("committed");
    create_topic(&brokers(), &topic, 3).await;
    let runtime = procon::start(common::runtime_config(&db, &brokers())).unwrap();

    let mut conn = db.conn();
    let emitted = upsert_and_emit(&mut conn, &topic, 7);
    let mut collector = Collector::new(&brokers(), &topic, 3);
    let received = collector.at_least(1, Duration::from_secs(30))[0].clone();

    assert_eq!(received.key, "7");
    assert_eq!(received.headers["procon-event"], "account.created");
    assert_eq!(received.headers["procon-entity"], "account");
    assert_eq!(received.headers["content-type"], "application/json");
    let envelope: procon::Envelope<serde_json::Value> =
        serde_json::from_value(received.payload.clone()).unwrap();
    assert_eq!(envelope.event_id.to_string(), received.event_id());
    assert_eq!(
        envelope.event_id.get_version_num(),
        7,
        "event ids are UUID v7"
    );
    assert_eq!(envelope.event, "account.created");
    assert_eq!(envelope.kind, procon::EventKind::Created);
    assert_eq!(envelope.key, "7");
    assert_eq!(envelope.schema_version, 1);
    assert_eq!(envelope.before, None);
    assert_eq!(
        envelope.after,
        Some(serde_json::json!({"id": 7, "owner_name": emitted.owner, "seq": 1})),
        "renamed field under its new name, skipped field absent"
    );
    common::wait_for("the outbox to drain", Duration::from_secs(10), || {
        (db.outbox_len() == 0).then_some(())
    });
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_published_envelope_is_byte_for_byte_the_documented_form() {
    common::init_logs();
    let db = TestDb::new("envelope_bytes");
    let topic = unique_topic("envelope-bytes");
    create_topic(&brokers(), &topic, 1).await;
    let runtime = procon::start(common::runtime_config(&db, &brokers())).unwrap();
    let mut conn = db.conn();
    let (before, after) = (
        account(3),
        Account {
            seq: 2,
            ..account(3)
        },
    );
    conn.transaction(|conn| {
        OutboxEvent::updated(
            &Routed {
                topic: topic.clone(),
                account: before,
            },
            &Routed {
                topic: topic.clone(),
                account: after.clone(),
            },
        )
        .metadata("request_id", "r-1")
        .emit(conn)
    })
    .unwrap();
    let mut collector = Collector::new(&brokers(), &topic, 1);
    let received = collector.at_least(1, Duration::from_secs(30))[0].clone();
    let text = String::from_utf8(received.raw_payload.clone()).unwrap();

    // docs/ENVELOPE.md: fields in this order, `occurred_at` with six fractional digits.
    let envelope: procon::Envelope<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let expected = format!(
        "{{\"schema_version\":1,\"event_id\":\"{id}\",\"event\":\"account.updated\",\
         \"entity\":\"account\",\"kind\":\"updated\",\"key\":\"3\",\"occurred_at\":\"{at}\",\
         \"before\":{{\"id\":3,\"owner_name\":\"{owner}\",\"seq\":1}},\
         \"after\":{{\"id\":3,\"owner_name\":\"{owner}\",\"seq\":2}},\
         \"metadata\":{{\"request_id\":\"r-1\"}}}}",
        id = envelope.event_id,
        at = envelope
            .occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        owner = after.owner,
    );
    assert_eq!(text, expected);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolled_back_transaction_leaves_no_event() {
    common::init_logs();
    let db = TestDb::new("rolled_back");
    let topic = unique_topic("rollback");
    create_topic(&brokers(), &topic, 1).await;
    let runtime = procon::start(common::runtime_config(&db, &brokers())).unwrap();
    let mut conn = db.conn();

    let result = conn.transaction(|conn| {
        Routed {
            topic: topic.clone(),
            account: account(1),
        }
        .emit_created(conn)?;
        Err::<(), _>(diesel::result::Error::RollbackTransaction)
    });
    assert!(result.is_err());
    assert_eq!(db.outbox_len(), 0, "the rolled-back event left a row");

    // A committed event after the rolled-back one, on the same single partition: when it
    // arrives, anything published before it would have arrived too.
    upsert_and_emit(&mut conn, &topic, 2);
    let mut collector = Collector::new(&brokers(), &topic, 1);
    collector.at_least(1, Duration::from_secs(30));
    let received = collector.drain_for(Duration::from_millis(500));
    assert_eq!(
        received.len(),
        1,
        "only the committed event is on the broker: {received:?}"
    );
    assert_eq!(received[0].key, "2");
    runtime.shutdown().await.unwrap();
}

#[test]
fn emit_outside_a_transaction_is_refused_and_writes_nothing() {
    let db = TestDb::new("outside_tx");
    let mut conn = db.conn();
    let err = account(1).emit_created(&mut conn).unwrap_err();
    assert!(matches!(err, EmitError::NotInTransaction { ref event } if event == "account.created"));
    assert!(err.to_string().contains("inside a transaction"), "{err}");
    assert_eq!(db.outbox_len(), 0);

    // The same call inside a transaction writes the row.
    conn.transaction(|conn| account(1).emit_created(conn))
        .unwrap();
    assert_eq!(db.outbox_len(), 1);
}

#[test]
fn emit_without_migrations_names_the_missing_table() {
    let db = TestDb::new("no_tables");
    let mut conn = db.conn();
    conn.batch_execute("DROP TABLE procon_outbox").unwrap();
    let err = conn
        .transaction(|conn| account(1).emit_created(conn))
        .unwrap_err();
    assert!(matches!(err, EmitError::OutboxMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("procon::migrate"), "{err}");
}

#[test]
fn envelope_carries_before_after_and_metadata_for_each_kind() {
    let db = TestDb::new("envelope_kinds");
    let mut conn = db.conn();
    let before = account(5);
    let after = Account {
        seq: 2,
        ..account(5)
    };
    conn.transaction(|conn| {
        procon::OutboxEvent::created(&before)
            .metadata("request_id", "r-1")
            .metadata("user_id", 42)
            .emit(conn)?;
        after.emit_updated(&before, conn)?;
        after.emit_deleted(conn)?;
        Ok::<_, EmitError>(())
    })
    .unwrap();

    let rows = stored(&db);
    let names: Vec<_> = rows
        .iter()
        .map(|(n, k, _)| (n.as_str(), k.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("account.created", "5"),
            ("account.updated", "5"),
            ("account.deleted", "5")
        ]
    );
    let (created, updated, deleted) = (&rows[0].2, &rows[1].2, &rows[2].2);
    assert_eq!(created["before"], serde_json::Value::Null);
    assert_eq!(
        created["metadata"],
        serde_json::json!({"request_id": "r-1", "user_id": 42})
    );
    assert_eq!(updated["before"]["seq"], 1);
    assert_eq!(updated["after"]["seq"], 2);
    assert_eq!(updated["kind"], "updated");
    assert_eq!(deleted["after"], serde_json::Value::Null);
    assert_eq!(deleted["before"]["seq"], 2);
    assert_eq!(deleted["metadata"], serde_json::json!({}));
    for (_, _, payload) in &rows {
        assert!(
            payload["after"].get("secret").is_none() && payload["before"].get("secret").is_none()
        );
    }
}

#[test]
fn migrations_are_idempotent() {
    let db = TestDb::new("migrate_twice");
    let applied = procon::migrate(&mut db.conn()).unwrap();
    assert!(applied.is_empty(), "second run applied {applied:?}");
}

#[test]
fn emits_for_one_key_wait_for_the_earlier_transaction_to_commit() {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let db = TestDb::new("key_lock");
    let mut first = db.conn();
    AnsiTransactionManager::begin_transaction(&mut first).unwrap();
    let first_id = account(1).emit_created(&mut first).unwrap();

    // A second transaction emitting for the same key, with no row lock of its own.
    let url = db.url.clone();
    let (done, finished) = std::sync::mpsc::channel();
    let second = std::thread::spawn(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        let id = conn
            .transaction(|conn| account(1).emit_created(conn))
            .unwrap();
        done.send(()).unwrap();
        id
    });
    // Another key is not blocked.
    db.conn()
        .transaction(|conn| account(2).emit_created(conn))
        .unwrap();
    assert!(
        finished.recv_timeout(Duration::from_millis(500)).is_err(),
        "the second emit for key 1 did not wait for the first transaction"
    );
    AnsiTransactionManager::commit_transaction(&mut first).unwrap();
    let second_id = second.join().unwrap();

    let order: Vec<String> = stored(&db)
        .into_iter()
        .filter(|(_, key, _)| key == "1")
        .map(|(_, _, payload)| payload["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        [first_id.to_string(), second_id.to_string()],
        "ids follow commit order per key"
    );
}

#[test]
fn emit_all_writes_a_batch_in_order_in_the_callers_transaction() {
    let db = TestDb::new("emit_all");
    let mut conn = db.conn();
    let accounts: Vec<Account> = [1, 2, 1, 3, 1].into_iter().map(account).collect();
    let ids = conn
        .transaction(|conn| procon::emit_all(conn, accounts.iter().map(OutboxEvent::created)))
        .unwrap();
    let stored = stored(&db);
    let stored_ids: Vec<String> = stored
        .iter()
        .map(|(_, _, payload)| payload["event_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(
        stored_ids, expected,
        "outbox ids follow the order events were added"
    );
    assert_eq!(stored[3].1, "3");

    // Rolled back with the caller's transaction; refused outside one; mixed models in a batch.
    let rolled_back: Result<(), EmitError> = conn.transaction(|conn| {
        let mut batch = procon::OutboxBatch::new();
        batch.push(OutboxEvent::created(&account(9)))?;
        batch.push(OutboxEvent::deleted(&Routed {
            topic: "elsewhere".into(),
            account: account(9),
        }))?;
        assert_eq!(batch.len(), 2);
        batch.emit(conn)?;
        Err(EmitError::Transaction(
            diesel::result::Error::RollbackTransaction,
        ))
    });
    assert!(rolled_back.is_err());
    assert_eq!(db.outbox_len(), 5);
    let outside = procon::emit_all(&mut conn, [OutboxEvent::created(&account(4))]);
    assert!(
        matches!(outside, Err(EmitError::NotInTransaction { .. })),
        "{outside:?}"
    );
    assert_eq!(db.outbox_len(), 5);
    let empty = conn
        .transaction(|conn| procon::OutboxBatch::new().emit(conn))
        .unwrap();
    assert!(empty.is_empty());
}

#[test]
fn emit_all_waits_for_an_earlier_transaction_on_one_of_its_keys() {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let db = TestDb::new("emit_all_lock");
    let mut first = db.conn();
    AnsiTransactionManager::begin_transaction(&mut first).unwrap();
    let first_id = account(1).emit_created(&mut first).unwrap();
    let url = db.url.clone();
    let (done, finished) = std::sync::mpsc::channel();
    let batch = std::thread::spawn(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        let accounts = [account(2), account(1)];
        let ids = conn
            .transaction(|conn| procon::emit_all(conn, accounts.iter().map(OutboxEvent::created)))
            .unwrap();
        done.send(()).unwrap();
        ids
    });
    assert!(
        finished.recv_timeout(Duration::from_millis(500)).is_err(),
        "the batch did not wait for the transaction holding key 1"
    );
    AnsiTransactionManager::commit_transaction(&mut first).unwrap();
    let batch_ids = batch.join().unwrap();
    let order: Vec<String> = stored(&db)
        .into_iter()
        .filter(|(_, key, _)| key == "1")
        .map(|(_, _, payload)| payload["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, [first_id.to_string(), batch_ids[1].to_string()]);
}
