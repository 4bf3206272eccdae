//! Realtime notifications against real PostgreSQL and the real broker: published after commit
//! only, keyed by channel, for deletes too, throttled per channel without losing the latest,
//! emitted by handlers inside the consumption's transaction, and never deleted unpublished.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic, Collector, Received};
use common::db::TestDb;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::{Connection, PgConnection};
use procon::prelude::*;
use procon::runtime::transport::kafka::KafkaPublisher;
use procon::runtime::transport::{Delivery, Publisher, Record, SendError};
use procon::{event_handler, Change, Realtime};
use serde::{Deserialize, Serialize};

const LONG: Duration = Duration::from_secs(60);

/// A model with a realtime builder: one notification on `accounts/<id>` per change.
#[derive(Debug, Clone, Serialize, Deserialize, Outbox)]
#[procon(topic = "rt-accounts", entity = "watched", realtime = account_channel)]
struct Watched {
    id: i64,
    seq: i64,
    session: Option<String>,
}

fn account_channel(change: &Change<'_, Watched>) -> Option<Realtime> {
    let current = change.current();
    let mut message = Realtime::new(format!("accounts/{}", current.id))
        .metadata("kind", change.kind.as_str())
        .metadata("seq", current.seq);
    if let Some(session) = &current.session {
        message = message.session_id(session.clone());
    }
    Some(message)
}

/// Consumer side: after applying `watched.created`, tell the billing UI, in the same
/// transaction.
#[event_handler(topic = "rt-accounts", event = "watched.created")]
fn notify_billing(ctx: &mut HandlerContext<'_>, event: Event<Watched>) -> Result<(), HandlerError> {
    let watched = event
        .after
        .as_ref()
        .ok_or_else(|| HandlerError::msg("created without after"))?;
    Realtime::new(format!("billing/{}", watched.id))
        .metadata("source_event", event.event_id.to_string())
        .emit(ctx.conn())?;
    Ok(())
}

/// A runtime publishing `rt-accounts` and realtime notifications to topics of this test.
struct Setup {
    db: TestDb,
    events_topic: String,
    realtime_topic: String,
}

async fn setup(name: &str, threshold: Duration) -> (Setup, procon::Config) {
    common::init_logs();
    let db = TestDb::new(name);
    let events_topic = unique_topic("rt-accounts");
    let realtime_topic = unique_topic("rt-realtime");
    create_topic(&brokers(), &events_topic, 2).await;
    create_topic(&brokers(), &realtime_topic, 3).await;
    let mut config = common::runtime_config(&db, &brokers());
    config
        .relay
        .topics
        .insert("rt-accounts".into(), events_topic.clone());
    config.relay.realtime_topic = realtime_topic.clone();
    config.relay.realtime_threshold = threshold;
    let setup = Setup {
        db,
        events_topic,
        realtime_topic,
    };
    (setup, config)
}

fn emit(conn: &mut PgConnection, id: i64, seq: i64, kind: EventKind) {
    let model = Watched {
        id,
        seq,
        session: Some(format!("session-{id}")),
    };
    conn.transaction(|conn| match kind {
        EventKind::Created => model.emit_created(conn),
        EventKind::Updated => model.emit_updated(&model, conn),
        EventKind::Deleted => model.emit_deleted(conn),
    })
    .unwrap();
}

fn channel_of(message: &Received) -> &str {
    message.payload["channel"].as_str().unwrap_or("")
}

fn seq_of(message: &Received) -> i64 {
    message.payload["metadata"]["seq"].as_i64().unwrap_or(-1)
}

fn pending_notifications(db: &TestDb) -> i64 {
    common::db::count(&mut db.conn(), "procon_realtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn realtime_is_published_after_commit_only_and_for_deletes() {
    let (setup, config) = setup("realtime_commit", Duration::from_millis(10)).await;
    let mut conn = setup.db.conn();
    let runtime = procon::start(config).unwrap();

    emit(&mut conn, 1, 1, EventKind::Created);
    // Rolled back: neither the event nor its notification may ever appear.
    let rolled_back = conn.transaction(|conn| {
        Watched {
            id: 2,
            seq: 1,
            session: None,
        }
        .emit_created(conn)?;
        Err::<(), _>(diesel::result::Error::RollbackTransaction)
    });
    assert!(rolled_back.is_err());
    emit(&mut conn, 3, 1, EventKind::Deleted);

    let mut collector = Collector::new(&brokers(), &setup.realtime_topic, 3);
    collector.until(LONG, |received| {
        let channels: Vec<&str> = received.iter().map(channel_of).collect();
        channels.contains(&"accounts/1") && channels.contains(&"accounts/3")
    });
    let received = collector.drain_for(Duration::from_secs(1)).to_vec();
    assert!(
        !received.iter().any(|m| channel_of(m) == "accounts/2"),
        "a rolled-back change sent a notification"
    );
    let deleted = received
        .iter()
        .find(|m| channel_of(m) == "accounts/3")
        .unwrap();
    assert_eq!(deleted.key, "accounts/3", "keyed by channel");
    assert_eq!(deleted.payload["event"], "watched.deleted");
    assert_eq!(deleted.payload["metadata"]["kind"], "deleted");
    assert_eq!(deleted.payload["session_id"], "session-3");
    assert_eq!(deleted.headers["procon-event"], "procon.realtime");
    assert_eq!(
        deleted.headers["procon-event-id"],
        deleted.payload["id"].as_str().unwrap()
    );
    common::wait_for("published notifications to be deleted", LONG, || {
        (pending_notifications(&setup.db) == 0).then_some(())
    });

    // The events themselves went to the entity's topic, not the realtime one.
    let mut events = Collector::new(&brokers(), &setup.events_topic, 2);
    let events = events.at_least(2, LONG).to_vec();
    assert!(events
        .iter()
        .all(|m| m.headers["procon-event"] != "procon.realtime"));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn realtime_throttle_coalesces_a_burst_and_delivers_the_latest_at_the_window_end() {
    let window = Duration::from_millis(1000);
    let (setup, config) = setup("realtime_throttle", window).await;
    let mut conn = setup.db.conn();
    let runtime = procon::start(config).unwrap();
    let mut collector = Collector::new(&brokers(), &setup.realtime_topic, 3);

    // A quiet channel publishes at once.
    emit(&mut conn, 7, 0, EventKind::Created);
    collector.until(LONG, |r| r.iter().any(|m| seq_of(m) == 0));
    // A burst inside the window: held, coalesced, and only the latest published at its end.
    for seq in 1..=10 {
        emit(&mut conn, 7, seq, EventKind::Updated);
    }
    // Another channel is not held by channel 7's window.
    emit(&mut conn, 8, 1, EventKind::Created);
    collector.until(LONG, |r| {
        r.iter()
            .any(|m| channel_of(m) == "accounts/7" && seq_of(m) == 10)
    });
    let received = collector.drain_for(Duration::from_millis(1500)).to_vec();

    let seven: Vec<&Received> = received
        .iter()
        .filter(|m| channel_of(m) == "accounts/7")
        .collect();
    let seqs: Vec<i64> = seven.iter().map(|m| seq_of(m)).collect();
    assert_eq!(seqs.first(), Some(&0));
    assert_eq!(seqs.last(), Some(&10), "the latest is never dropped");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "per-channel order: {seqs:?}"
    );
    assert!(
        seqs.len() <= 3,
        "a burst of 10 inside one window is coalesced: {seqs:?}"
    );
    for pair in seven.windows(2) {
        let gap = pair[1].timestamp_ms.unwrap() - pair[0].timestamp_ms.unwrap();
        assert!(
            gap >= window.as_millis() as i64 - 5,
            "one notification per channel per window; two were {gap} ms apart"
        );
    }
    let eight = received
        .iter()
        .find(|m| channel_of(m) == "accounts/8")
        .expect("channel 8 published");
    let ten = seven.last().unwrap();
    assert!(
        eight.timestamp_ms <= ten.timestamp_ms,
        "channel 8 did not wait for channel 7's window"
    );
    common::wait_for("coalesced notifications to be deleted", LONG, || {
        (pending_notifications(&setup.db) == 0).then_some(())
    });
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_channel_never_waits_behind_more_held_channels_than_a_read_takes() {
    let (setup, mut config) = setup("realtime_starvation", Duration::from_secs(5)).await;
    // A read takes 5 channels; channels accounts/1..5 sort before accounts/9.
    config.relay.batch_size = 5;
    let mut conn = setup.db.conn();
    let runtime = procon::start(config).unwrap();
    let mut collector = Collector::new(&brokers(), &setup.realtime_topic, 3);
    for id in 1..=5 {
        emit(&mut conn, id, 0, EventKind::Created);
    }
    collector.until(LONG, |r| r.len() >= 5);
    // Each of the five now holds a notification for the rest of its 5 s window.
    for id in 1..=5 {
        emit(&mut conn, id, 1, EventKind::Updated);
    }
    emit(&mut conn, 9, 0, EventKind::Created);
    let received = collector.until(LONG, |r| r.iter().any(|m| channel_of(m) == "accounts/9"));
    assert!(
        received.iter().all(|m| seq_of(m) == 0),
        "accounts/9 came out only after the held channels' windows ended"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handler_emits_realtime_in_the_consumption_transaction() {
    let (setup, mut config) = setup("realtime_handler", Duration::from_millis(10)).await;
    setup
        .db
        .conn()
        .batch_execute(common::ledger::CREATE_EFFECTS)
        .unwrap();
    let ledger_topic = unique_topic("rt-ledger");
    create_topic(&brokers(), &ledger_topic, 1).await;
    config = config.service_name(unique_topic("rt-billing"));
    config.consumer.enabled = true;
    config
        .consumer
        .topics
        .insert("rt-accounts".into(), setup.events_topic.clone());
    config
        .consumer
        .topics
        .insert(common::ledger::TOPIC.into(), ledger_topic);
    for (name, value) in common::broker::TEST_CONSUMER_SETTINGS {
        config.consumer.kafka.insert(name.into(), value.into());
    }
    let runtime = procon::start(config).unwrap();
    let mut conn = setup.db.conn();
    for id in 1..=3 {
        emit(&mut conn, id, 1, EventKind::Created);
    }
    let mut collector = Collector::new(&brokers(), &setup.realtime_topic, 3);
    collector.until(LONG, |received| {
        (1..=3).all(|id| {
            received
                .iter()
                .any(|m| channel_of(m) == format!("billing/{id}"))
        })
    });
    let billing = collector
        .received
        .iter()
        .find(|m| channel_of(m) == "billing/2")
        .unwrap();
    assert!(billing.payload["metadata"]["source_event"].is_string());
    runtime.shutdown().await.unwrap();

    // Outside a transaction it is refused and nothing is written.
    let refused = Realtime::new("billing/9").emit(&mut conn);
    assert!(matches!(
        refused,
        Err(procon::RealtimeError::NotInTransaction { .. })
    ));
    assert_eq!(pending_notifications(&setup.db), 0);
}

/// The Kafka publisher, but a record whose key is `held` waits for the gate to open, and says
/// when it arrived.
struct GatedPublisher {
    inner: KafkaPublisher,
    held: &'static str,
    arrived: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Publisher for GatedPublisher {
    fn send(&self, record: Record<'_>) -> Result<Delivery, SendError> {
        let held = record.key == self.held.as_bytes();
        let delivery = self.inner.send(record)?;
        if !held {
            return Ok(delivery);
        }
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.clone();
        Ok(Box::pin(async move {
            let _open = gate.acquire().await;
            delivery.await
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_committed_during_a_publish_is_not_deleted_unpublished() {
    let (setup, config) = setup("realtime_race", Duration::from_millis(10)).await;
    let arrived = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let publisher = Arc::new(GatedPublisher {
        inner: KafkaPublisher::new(&config).unwrap(),
        held: "accounts/5",
        arrived: arrived.clone(),
        gate: gate.clone(),
    });
    let runtime = procon::start_relay_with(config, publisher).unwrap();
    let mut collector = Collector::new(&brokers(), &setup.realtime_topic, 3);

    // Seq 1 draws the lower id and commits late...
    let mut slow = setup.db.conn();
    AnsiTransactionManager::begin_transaction(&mut slow).unwrap();
    // (A bare notification: an outbox event would hold its key's lock until commit.)
    Realtime::new("accounts/5")
        .metadata("seq", 1)
        .emit(&mut slow)
        .unwrap();
    // ...after the relay read seq 2 (the channel's newest then) and is publishing it.
    emit(&mut setup.db.conn(), 5, 2, EventKind::Updated);
    common::wait_for("the relay to publish seq 2", LONG, || {
        (arrived.load(Ordering::SeqCst) >= 1).then_some(())
    });
    AnsiTransactionManager::commit_transaction(&mut slow).unwrap();
    gate.add_permits(1_000);

    // Deleting "the channel's rows up to the published id" would take seq 1 with it unseen.
    collector.until(LONG, |r| r.iter().any(|m| seq_of(m) == 1));
    common::wait_for("every notification to be deleted", LONG, || {
        (pending_notifications(&setup.db) == 0).then_some(())
    });
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_lets_the_realtime_round_in_progress_delete_what_it_published() {
    let (setup, config) = setup("realtime_shutdown", Duration::from_millis(10)).await;
    let arrived = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let publisher = Arc::new(GatedPublisher {
        inner: KafkaPublisher::new(&config).unwrap(),
        held: "accounts/6",
        arrived: arrived.clone(),
        gate: gate.clone(),
    });
    let runtime = procon::start_relay_with(config, publisher).unwrap();
    setup
        .db
        .conn()
        .transaction(|conn| {
            Realtime::new("accounts/6").emit(conn).unwrap();
            Ok::<_, diesel::result::Error>(())
        })
        .unwrap();
    common::wait_for("the relay to publish the notification", LONG, || {
        (arrived.load(Ordering::SeqCst) >= 1).then_some(())
    });
    // Shutdown while the broker has not answered: the relay hands its shards back...
    let stopping = tokio::spawn(runtime.shutdown());
    common::wait_for("the relay to hand its shards back", LONG, || {
        (common::db::count_where(
            &mut setup.db.conn(),
            "procon_relay_leases",
            "owner IS NOT NULL",
        ) == 0)
            .then_some(())
    });
    // ...and the realtime round still takes the answer in and deletes what it published.
    gate.add_permits(1_000);
    stopping.await.unwrap().unwrap();
    assert_eq!(
        pending_notifications(&setup.db),
        0,
        "published, so deleted, not left to be published again"
    );
}
