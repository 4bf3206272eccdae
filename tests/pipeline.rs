//! The concurrent pipeline against real PostgreSQL and the real broker: per-key order under
//! concurrency, a failing or panicking key that holds nothing else, stops per key that survive
//! a restart, out-of-range positions, dead letters, and status calls from a handler.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use common::broker::{brokers, create_topic, produce_raw, unique_topic};
use common::db::TestDb;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use procon::prelude::*;
use procon::runtime::backoff::BackoffConfig;
use procon::{event_handler, Exhausted, FailurePolicy};
use serde::{Deserialize, Serialize};

const LONG: Duration = Duration::from_secs(90);

/// One step of an account; the handler misbehaves as the step says.
#[derive(Debug, Clone, Serialize, Deserialize, Outbox)]
#[procon(topic = "steps", entity = "step", key = account)]
struct Step {
    account: i64,
    seq: i64,
    /// Handler sleeps this long first (an HTTP call, say).
    delay_ms: u64,
    /// Handler fails (account 7: while `FIXED` is false).
    fails: bool,
    /// Handler panics on its first two attempts.
    panics: bool,
}

/// A step applied by a batch handler.
#[derive(Debug, Clone, Serialize, Deserialize, Outbox)]
#[procon(topic = "steps", entity = "batchstep", key = account)]
struct BatchStep {
    account: i64,
    seq: i64,
    /// The batch handler fails on it, always.
    fails: bool,
}

/// The sizes of the batches the batch handler was called with.
static BATCHES: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// Applies `batchstep.created` events a unit at a time.
struct ApplyBatchSteps;

impl procon::BatchHandler for ApplyBatchSteps {
    const TOPIC: &'static str = "steps";
    const EVENT: &'static str = "batchstep.created";
    type Payload = BatchStep;
    fn handle_batch(
        ctx: &mut HandlerContext<'_>,
        events: Vec<Event<BatchStep>>,
    ) -> Result<(), HandlerError> {
        BATCHES.lock().unwrap().push(events.len());
        for event in &events {
            let step = event
                .after
                .as_ref()
                .ok_or_else(|| HandlerError::msg("no after"))?;
            diesel::sql_query(
                "INSERT INTO steps_done (account, seq, kafka_offset) VALUES ($1, $2, $3)",
            )
            .bind::<BigInt, _>(step.account)
            .bind::<BigInt, _>(step.seq)
            .bind::<BigInt, _>(
                event
                    .coordinates
                    .position
                    .as_offset()
                    .expect("a Kafka offset"),
            )
            .execute(ctx.conn())?;
            if step.fails {
                return Err(HandlerError::msg(format!("batch step {} fails", step.seq)));
            }
        }
        Ok(())
    }
}
procon::register_batch_handler!(ApplyBatchSteps);

/// Flips failing steps to succeeding (a deployed fix).
static FIXED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Attempts at account 7's failing step.
static FAILING_ATTEMPTS: AtomicU32 = AtomicU32::new(0);
/// Attempts at panicking steps.
static PANICS: AtomicU32 = AtomicU32::new(0);
/// When a step panicked last.
static LAST_PANIC: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
/// Handler calls for account 4242 (the fencing test).
static FENCED_CALLS: AtomicU32 = AtomicU32::new(0);
/// The running consumer's status, for the handler that reads it.
static STATUS: OnceLock<procon::Status> = OnceLock::new();

#[event_handler(topic = "steps", event = "step.created")]
fn apply_step(ctx: &mut HandlerContext<'_>, event: Event<Step>) -> Result<(), HandlerError> {
    let step = event
        .after
        .clone()
        .ok_or_else(|| HandlerError::msg("no after"))?;
    if step.delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(step.delay_ms));
    }
    if step.account == 4242 {
        FENCED_CALLS.fetch_add(1, Ordering::SeqCst);
    }
    let at = ctx.coordinates().clone();
    diesel::sql_query("INSERT INTO steps_done (account, seq, kafka_offset) VALUES ($1, $2, $3)")
        .bind::<BigInt, _>(step.account)
        .bind::<BigInt, _>(step.seq)
        .bind::<BigInt, _>(at.position.as_offset().expect("a Kafka offset"))
        .execute(ctx.conn())?;
    // Account 7 fails until fixed (the stop test); any other failing account always fails.
    if step.fails && (step.account != 7 || !FIXED.load(Ordering::SeqCst)) {
        if step.account == 7 {
            FAILING_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
        }
        return Err(HandlerError::msg(format!(
            "account {} step {} fails",
            step.account, step.seq
        )));
    }
    if step.panics && PANICS.fetch_add(1, Ordering::SeqCst) < 2 {
        LAST_PANIC
            .lock()
            .unwrap()
            .replace(std::time::Instant::now());
        // Leaves the statement above inside the transaction; the panic must roll it back.
        panic!("step {} panics", step.seq);
    }
    Ok(())
}

/// Reads the consumer's status from inside a handler (it used to deadlock).
#[event_handler(topic = "steps", event = "whoami.created")]
fn whoami(ctx: &mut HandlerContext<'_>, _event: Event<Step>) -> Result<(), HandlerError> {
    let owned = STATUS
        .get()
        .map(|s| s.assigned_partitions().len())
        .unwrap_or_default();
    diesel::sql_query("INSERT INTO steps_done (account, seq, kafka_offset) VALUES (-1, $1, -1)")
        .bind::<BigInt, _>(owned as i64)
        .execute(ctx.conn())?;
    Ok(())
}

/// The same step on the dead-letter topic: applied by the same group.
#[event_handler(topic = "steps_dlq", event = "step.created")]
fn apply_dead_step(ctx: &mut HandlerContext<'_>, event: Event<Step>) -> Result<(), HandlerError> {
    let step = event
        .after
        .clone()
        .ok_or_else(|| HandlerError::msg("no after"))?;
    diesel::sql_query("INSERT INTO steps_done (account, seq, kafka_offset) VALUES ($1, $2, -2)")
        .bind::<BigInt, _>(step.account)
        .bind::<BigInt, _>(step.seq)
        .execute(ctx.conn())?;
    Ok(())
}

#[derive(Debug, QueryableByName, Clone, PartialEq, Eq)]
struct Done {
    #[diesel(sql_type = BigInt)]
    account: i64,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = BigInt)]
    kafka_offset: i64,
}

/// Every applied step, in the order the transactions inserted them.
fn done(conn: &mut PgConnection) -> Vec<Done> {
    diesel::sql_query("SELECT account, seq, kafka_offset FROM steps_done ORDER BY id")
        .load(conn)
        .unwrap()
}

struct Setup {
    db: TestDb,
    topic: String,
    group: String,
}

async fn setup(name: &str, partitions: i32) -> Setup {
    common::init_logs();
    let db = TestDb::new(name);
    db.conn()
        .batch_execute(
            "CREATE TABLE steps_done (id BIGSERIAL PRIMARY KEY, account BIGINT, seq BIGINT, \
             kafka_offset BIGINT, applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
        )
        .unwrap();
    let topic = unique_topic(name);
    create_topic(&brokers(), &topic, partitions).await;
    create_topic(&brokers(), &format!("{topic}.dlq"), 1).await;
    Setup {
        db,
        topic,
        group: unique_topic(&format!("{name}-group")),
    }
}

impl Setup {
    /// A runtime relaying and consuming `steps` with `concurrency` processors.
    fn config(&self, concurrency: usize, policy: FailurePolicy) -> procon::Config {
        let ledger = format!("{}-ledger-unused", self.topic);
        let mut config = common::consumer_config(&self.db, &brokers(), &self.group, &ledger);
        config.consumer.topics.remove("ledger");
        for (logical, physical) in [
            ("steps", self.topic.clone()),
            ("steps_dlq", format!("{}.dlq", self.topic)),
        ] {
            config.relay.topics.insert(logical.into(), physical.clone());
            config.consumer.topics.insert(logical.into(), physical);
        }
        config.consumer.concurrency = concurrency;
        config
            .consumer
            .failure_by_topic
            .insert("steps".into(), policy);
        config
    }

    fn emit(&self, steps: impl IntoIterator<Item = Step>) {
        let steps: Vec<Step> = steps.into_iter().collect();
        let mut conn = self.db.conn();
        for chunk in steps.chunks(1000) {
            conn.transaction(|conn| {
                for step in chunk {
                    step.emit_created(conn)?;
                }
                Ok::<_, procon::EmitError>(())
            })
            .unwrap();
        }
    }

    /// Waits for the group's first stop record.
    fn wait_for_stop(&self, what: &str) -> procon::StoppedPartition {
        common::wait_for(what, LONG, || {
            let mut conn = self.db.conn();
            procon::stopped_partitions(&mut conn, Some(&self.group))
                .unwrap()
                .into_iter()
                .next()
        })
    }

    fn wait_for_done(&self, count: usize) -> Vec<Done> {
        common::wait_for(&format!("{count} steps applied"), LONG, || {
            let rows = done(&mut self.db.conn());
            (rows.len() >= count).then_some(rows)
        })
    }
}

fn quick(max_attempts: u32, exhausted: Exhausted) -> FailurePolicy {
    FailurePolicy {
        max_attempts,
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        exhausted,
    }
}

fn step(account: i64, seq: i64) -> Step {
    Step {
        account,
        seq,
        delay_ms: 0,
        fails: false,
        panics: false,
    }
}

/// Per account, the applied seqs in the order they were applied.
fn per_account(rows: &[Done]) -> BTreeMap<i64, Vec<i64>> {
    let mut map: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for row in rows {
        map.entry(row.account).or_default().push(row.seq);
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_key_applies_in_order_with_concurrency_8_and_random_handler_delays() {
    let setup = setup("pipeline_order", 2).await;
    let steps: Vec<Step> = (1..=2_000)
        .map(|seq| Step {
            delay_ms: fastrand::u64(0..=3),
            ..step(seq % 100, seq)
        })
        .collect();
    setup.emit(steps);
    let runtime = procon::start(setup.config(8, quick(3, Exhausted::Stop))).unwrap();
    let rows = setup.wait_for_done(2_000);
    runtime.shutdown().await.unwrap();
    assert_eq!(rows.len(), 2_000, "each step applied once");
    for (account, seqs) in per_account(&rows) {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "account {account} applied out of order");
        assert_eq!(seqs.len(), 20, "account {account}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_key_holds_only_itself_and_its_stop_survives_a_restart_until_resumed() {
    let setup = setup("pipeline_key_stop", 1).await;
    // Account 7's fifth step fails until fixed; 20 accounts × 10 steps on one partition.
    setup.emit((1..=200).map(|seq| {
        let account = seq % 20;
        Step {
            fails: account == 7 && seq == 87,
            ..step(account, seq)
        }
    }));
    let runtime = procon::start(setup.config(4, quick(3, Exhausted::Stop))).unwrap();
    let stop = setup.wait_for_stop("account 7 to stop");
    assert_eq!(stop.lane, "key:7", "only the key stops, not the partition");
    assert_eq!(stop.attempts, 3);
    assert!(
        stop.error.contains("account 7 step 87 fails"),
        "{}",
        stop.error
    );
    // Every other account is applied in full; account 7 up to its failing step.
    let rows = setup.wait_for_done(200 - 6);
    let accounts = per_account(&rows);
    for (account, seqs) in &accounts {
        let expected = if *account == 7 { 4 } else { 10 };
        assert_eq!(seqs.len(), expected, "account {account}: {seqs:?}");
    }
    common::wait_for("the runtime to report the stopped key", LONG, || {
        runtime
            .stalled_partitions()
            .iter()
            .any(|s| s.stopped && s.lane == "key:7")
            .then_some(())
    });
    runtime.shutdown().await.unwrap();
    // (More handler calls than counted failures: a unit of several messages that fails is
    // rolled back and its messages applied one at a time before failures count.)
    let attempts = FAILING_ATTEMPTS.load(Ordering::SeqCst);

    // A restart does not even retry the stopped key; resuming it (after a fix) does.
    let runtime = procon::start(setup.config(4, quick(3, Exhausted::Stop))).unwrap();
    common::wait_for("the restarted consumer to own the partition", LONG, || {
        (!runtime.assigned_partitions().is_empty()).then_some(())
    });
    common::wait_for("the restarted runtime to report the stop", LONG, || {
        runtime
            .stalled_partitions()
            .iter()
            .any(|s| s.stopped)
            .then_some(())
    });
    assert_eq!(FAILING_ATTEMPTS.load(Ordering::SeqCst), attempts);
    FIXED.store(true, Ordering::SeqCst);
    let resumed = procon::resume_lane(
        &mut setup.db.conn(),
        &setup.group,
        &setup.topic,
        0,
        "key:7",
        procon::Resume::Retry,
    )
    .unwrap();
    assert_eq!(resumed.len(), 1);
    let rows = setup.wait_for_done(200);
    runtime.shutdown().await.unwrap();
    let seven = &per_account(&rows)[&7];
    assert_eq!(seven, &(0..10).map(|i| 7 + 20 * i).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_handler_is_rolled_back_retried_and_leaves_no_session_idle_in_transaction() {
    let setup = setup("pipeline_panic", 1).await;
    setup.emit((1..=50).map(|seq| Step {
        panics: seq == 10,
        ..step(seq % 5, seq)
    }));
    let runtime = procon::start(setup.config(4, quick(5, Exhausted::Stop))).unwrap();
    let rows = setup.wait_for_done(50);
    assert!(
        PANICS.load(Ordering::SeqCst) >= 3,
        "panicked twice, then applied"
    );
    assert_eq!(
        rows.iter().filter(|d| d.seq == 10).count(),
        1,
        "the panicking attempts' writes were rolled back"
    );
    #[derive(QueryableByName)]
    struct Idle {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    // Other tests' sessions sit idle in a transaction for a moment between statements; a
    // session a panic left behind stays so for good. Once the last panic is over a second old,
    // count the sessions idle for over a second until none is left (a leaked one never leaves,
    // and the wait fails).
    let mut conn = setup.db.conn();
    common::wait_for("no session left idle in transaction", LONG, || {
        let last_panic = LAST_PANIC.lock().unwrap().expect("the step panicked");
        if last_panic.elapsed() < Duration::from_millis(1500) {
            return None;
        }
        let idle: Idle = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE state LIKE 'idle in transaction%' AND query LIKE '%INSERT INTO steps_done%' \
               AND state_change < now() - interval '1 second'",
        )
        .get_result(&mut conn)
        .unwrap();
        (idle.n == 0).then_some(())
    });
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stored_position_beyond_the_log_end_stops_the_partition_until_reset() {
    let setup = setup("pipeline_out_of_range", 1).await;
    // Written by a plain producer: tansu reports the log end right for those.
    for seq in 1..=5 {
        produce_step(&setup.topic, 1, seq).await;
    }
    diesel::sql_query(
        "INSERT INTO procon_consumer_offsets (group_id, topic, partition, next_offset) \
         VALUES ($1, $2, 0, 1000)",
    )
    .bind::<Text, _>(&setup.group)
    .bind::<Text, _>(&setup.topic)
    .execute(&mut setup.db.conn())
    .unwrap();
    let mut config = setup.config(2, quick(3, Exhausted::Stop));
    config.consumer.check_position_range = true;
    let runtime = procon::start(config).unwrap();
    let stop = setup.wait_for_stop("the partition to stop");
    assert_eq!(stop.lane, "", "the whole partition");
    assert_eq!(stop.position.as_offset(), Some(1000));
    assert_eq!(stop.reset_to.and_then(|p| p.as_offset()), Some(5));
    assert!(
        stop.error.contains("beyond the log end 5"),
        "{}",
        stop.error
    );
    assert!(done(&mut setup.db.conn()).is_empty());

    // Skipping is refused (there is no event to skip) and changes nothing.
    let refused = procon::resume_partition(
        &mut setup.db.conn(),
        &setup.group,
        &setup.topic,
        0,
        procon::Resume::Skip,
    )
    .unwrap_err();
    assert!(refused.to_string().contains("--reset"), "{refused}");
    assert_eq!(
        procon::stopped_partitions(&mut setup.db.conn(), Some(&setup.group)).unwrap(),
        vec![stop.clone()]
    );
    // The operator accepts the reset: events written from now on are applied.
    procon::resume_partition(
        &mut setup.db.conn(),
        &setup.group,
        &setup.topic,
        0,
        procon::Resume::Reset,
    )
    .unwrap();
    for seq in 6..=7 {
        produce_step(&setup.topic, 1, seq).await;
    }
    let rows = setup.wait_for_done(2);
    runtime.shutdown().await.unwrap();
    assert_eq!(per_account(&rows)[&1], vec![6, 7]);
}

/// Produces a step's envelope with a plain (not idempotent) producer.
async fn produce_step(topic: &str, account: i64, seq: i64) {
    produce_step_as(topic, "step.created", account, seq).await;
}

/// Produces a step's envelope as event `event`.
async fn produce_step_as(topic: &str, event: &str, account: i64, seq: i64) {
    let event_id = uuid::Uuid::now_v7().to_string();
    let envelope = serde_json::json!({
        "schema_version": 1, "event_id": event_id, "event": event, "entity": "step",
        "kind": "created", "key": account.to_string(), "occurred_at": "2026-12-01T00:00:00Z",
        "before": null, "metadata": {},
        "after": {"account": account, "seq": seq, "delay_ms": 0, "fails": false, "panics": false}
    });
    produce_raw(
        &brokers(),
        topic,
        &account.to_string(),
        envelope.to_string().as_bytes(),
        &[("procon-event", event), ("procon-event-id", &event_id)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_is_a_new_event_for_same_group_handlers_and_keeps_a_binary_key() {
    let setup = setup("pipeline_dead_letter", 1).await;
    let event_id = uuid::Uuid::now_v7().to_string();
    let envelope = serde_json::json!({
        "schema_version": 1, "event_id": event_id, "event": "step.created", "entity": "step",
        "kind": "created", "key": "k", "occurred_at": "2026-12-01T00:00:00Z", "before": null,
        "after": {"account": 99, "seq": 1, "delay_ms": 0, "fails": true, "panics": false},
        "metadata": {}
    });
    let key: &[u8] = &[0xff, 0x00, 0x80];
    produce_raw(
        &brokers(),
        &setup.topic,
        key,
        envelope.to_string().as_bytes(),
        &[
            ("procon-event-id", &event_id),
            ("procon-event", "step.created"),
        ],
    )
    .await;
    let runtime =
        procon::start(setup.config(2, quick(2, Exhausted::DeadLetter { topic: None }))).unwrap();
    // The dead letter reaches the same group's handler of the dead-letter topic.
    let rows = common::wait_for("the dead letter to be applied", LONG, || {
        let rows = done(&mut setup.db.conn());
        rows.iter().any(|d| d.kafka_offset == -2).then_some(rows)
    });
    assert_eq!(rows.iter().filter(|d| d.kafka_offset == -2).count(), 1);
    runtime.shutdown().await.unwrap();
    let mut collector =
        common::broker::Collector::new(&brokers(), &format!("{}.dlq", setup.topic), 1);
    let received = collector.at_least(1, LONG).to_vec();
    assert_eq!(received[0].raw_key, key, "the key keeps its bytes");
    assert_ne!(
        received[0].event_id(),
        event_id,
        "a dead letter has its own event id"
    );
    assert_eq!(
        received[0].header("procon-dlq-event-id"),
        Some(event_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handler_can_read_the_consumer_status() {
    let setup = setup("pipeline_status", 2).await;
    let runtime = procon::start(setup.config(2, quick(3, Exhausted::Stop))).unwrap();
    let _ = STATUS.set(runtime.consumer_status());
    // Two partitions of the topic and one of its dead-letter topic.
    common::wait_for("partitions to be assigned", LONG, || {
        (runtime.assigned_partitions().len() == 3).then_some(())
    });
    produce_step_as(&setup.topic, "whoami.created", 1, 1).await;
    let rows = setup.wait_for_done(1);
    runtime.shutdown().await.unwrap();
    assert_eq!(rows[0].seq, 3, "the handler saw the three owned partitions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counted_failures_survive_a_restart() {
    let setup = setup("pipeline_failure_count", 1).await;
    // Account 5's only step fails until fixed; 4 attempts allowed, slow retries.
    setup.emit([Step {
        fails: true,
        ..step(5, 1)
    }]);
    let policy = FailurePolicy {
        max_attempts: 4,
        backoff: BackoffConfig {
            initial: Duration::from_millis(300),
            max: Duration::from_millis(300),
        },
        exhausted: Exhausted::Stop,
    };
    let runtime = procon::start(setup.config(2, policy.clone())).unwrap();
    common::wait_for("two failed attempts", LONG, || {
        runtime
            .stalled_partitions()
            .iter()
            .any(|s| s.attempts >= 2)
            .then_some(())
    });
    runtime.shutdown().await.unwrap();
    let before = counted(&mut setup.db.conn());
    assert!(before >= 2);
    let runtime = procon::start(setup.config(2, policy)).unwrap();
    let stop = setup.wait_for_stop("the key to stop");
    runtime.shutdown().await.unwrap();
    assert_eq!(stop.attempts, 4, "the count went on from the earlier run");
}

fn counted(conn: &mut PgConnection) -> i32 {
    #[derive(QueryableByName)]
    struct Attempts {
        #[diesel(sql_type = Integer)]
        attempts: i32,
    }
    diesel::sql_query("SELECT attempts FROM procon_consumer_failures")
        .load::<Attempts>(conn)
        .unwrap()
        .into_iter()
        .map(|a| a.attempts)
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_partition_is_paused_so_pending_messages_stay_bounded() {
    let setup = setup("pipeline_backpressure", 1).await;
    setup.emit((1..=600).map(|seq| Step {
        delay_ms: 2,
        ..step(seq % 10, seq)
    }));
    let mut config = setup.config(2, quick(3, Exhausted::Stop));
    config.consumer.max_in_flight = 20;
    config.consumer.batch_size = 5;
    let runtime = procon::start(config).unwrap();
    let status = runtime.consumer_status();
    let mut most = 0;
    let rows = common::wait_for("600 steps applied", LONG, || {
        most = status
            .in_flight()
            .iter()
            .filter(|(topic, _, _)| *topic == setup.topic)
            .map(|(_, _, n)| *n)
            .fold(most, usize::max);
        let rows = done(&mut setup.db.conn());
        (rows.len() >= 600).then_some(rows)
    });
    runtime.shutdown().await.unwrap();
    assert!(most > 0, "pending messages were observed");
    // 20 waiting, plus one poll's worth (itself at most max_in_flight), plus what the two
    // processors apply (2 × 5).
    assert!(most <= 50, "at most 50 messages pending, saw {most}");
    assert_eq!(rows.len(), 600, "every step once");
    for (account, seqs) in per_account(&rows) {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "account {account} in order across pauses");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_whose_partition_was_claimed_by_another_applies_nothing_more() {
    let setup = setup("pipeline_fence", 1).await;
    setup.emit((1..=10).map(|seq| step(1, seq)));
    let runtime = procon::start(setup.config(2, quick(3, Exhausted::Stop))).unwrap();
    setup.wait_for_done(10);
    common::wait_for("the watermark to be stored", LONG, || {
        (stored_watermark(&setup) == 10).then_some(())
    });
    // Another member claims the partition (what a claim does: increment the epoch).
    diesel::sql_query("UPDATE procon_consumer_offsets SET epoch = epoch + 1 WHERE group_id = $1")
        .bind::<Text, _>(&setup.group)
        .execute(&mut setup.db.conn())
        .unwrap();
    setup.emit((11..=15).map(|seq| step(4242, seq)));
    common::wait_for("the fenced member to try the new events", LONG, || {
        (FENCED_CALLS.load(Ordering::SeqCst) >= 1).then_some(())
    });
    runtime.shutdown().await.unwrap();
    let rows = done(&mut setup.db.conn());
    assert!(
        rows.iter().all(|d| d.account != 4242),
        "the fenced member committed effects: {rows:?}"
    );
    assert_eq!(stored_watermark(&setup), 10, "nor moved the watermark");
}

fn stored_watermark(setup: &Setup) -> i64 {
    #[derive(QueryableByName)]
    struct Next {
        #[diesel(sql_type = BigInt)]
        next_offset: i64,
    }
    diesel::sql_query(
        "SELECT next_offset::bigint AS next_offset FROM procon_consumer_offsets WHERE group_id = $1 AND topic = $2",
    )
    .bind::<Text, _>(&setup.group)
    .bind::<Text, _>(&setup.topic)
    .get_result::<Next>(&mut setup.db.conn())
    .map(|n| n.next_offset)
    .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_handler_gets_a_units_events_at_once_and_a_failing_one_is_found_alone() {
    let setup = setup("pipeline_batch", 1).await;
    let mut conn = setup.db.conn();
    conn.transaction(|conn| {
        for seq in 1..=300 {
            BatchStep {
                account: seq % 5,
                seq,
                fails: seq == 123,
            }
            .emit_created(conn)?;
        }
        Ok::<_, procon::EmitError>(())
    })
    .unwrap();
    let mut config = setup.config(2, quick(2, Exhausted::Stop));
    config.consumer.batch_size = 50;
    config.consumer.batch_timeout = Duration::from_millis(300);
    let runtime = procon::start(config).unwrap();
    let stop = setup.wait_for_stop("the failing batch step's key to stop");
    assert_eq!(stop.lane, "key:3", "{stop:?}");
    assert!(
        stop.error.contains("batch step 123 fails"),
        "{}",
        stop.error
    );
    // Everything but account 3 from its failing step on (seq 123, 128, ..., 298: 36 steps).
    let rows = setup.wait_for_done(300 - 36);
    runtime.shutdown().await.unwrap();
    let accounts = per_account(&rows);
    for (account, seqs) in &accounts {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, &sorted, "account {account} in order");
        let expected = if *account == 3 { 24 } else { 60 };
        assert_eq!(seqs.len(), expected, "account {account}");
    }
    let batches = BATCHES.lock().unwrap().clone();
    assert!(
        batches.iter().any(|n| *n > 1),
        "events were handed over in batches: {batches:?}"
    );
    assert!(
        batches.iter().all(|n| *n <= 50),
        "at most batch_size: {batches:?}"
    );
    assert!(
        batches.len() < 300,
        "fewer calls than events: {} calls",
        batches.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_settles_although_the_next_offset_is_a_transaction_marker() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let setup = setup("pipeline_txn_gap", 1).await;
    // A transactional producer: each commit writes a control record, so the offset after the
    // poison message holds no message the consumer will see.
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("transactional.id", unique_topic("pipeline-txn"))
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(30)).unwrap();
    for (account, fails) in [(99, true), (1, false)] {
        let event_id = uuid::Uuid::now_v7().to_string();
        let envelope = serde_json::json!({
            "schema_version": 1, "event_id": event_id, "event": "step.created",
            "entity": "step", "kind": "created", "key": account.to_string(),
            "occurred_at": "2026-12-01T00:00:00Z", "before": null, "metadata": {},
            "after": {"account": account, "seq": 1, "delay_ms": 0, "fails": fails, "panics": false}
        })
        .to_string();
        let key = account.to_string();
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header {
                key: "procon-event-id",
                value: Some(&event_id),
            })
            .insert(rdkafka::message::Header {
                key: "procon-event",
                value: Some("step.created"),
            });
        producer.begin_transaction().unwrap();
        producer
            .send(
                BaseRecord::to(&setup.topic)
                    .key(&key)
                    .payload(&envelope)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer
            .commit_transaction(Duration::from_secs(30))
            .unwrap();
    }
    let runtime =
        procon::start(setup.config(2, quick(2, Exhausted::DeadLetter { topic: None }))).unwrap();
    let rows = common::wait_for("the step after the dead letter", LONG, || {
        let rows = done(&mut setup.db.conn());
        rows.iter().any(|d| d.account == 1).then_some(rows)
    });
    runtime.shutdown().await.unwrap();
    assert_eq!(rows.iter().filter(|d| d.account == 1).count(), 1);
    let offset = rows.iter().find(|d| d.account == 1).unwrap().kafka_offset;
    assert!(
        offset >= 2,
        "the second message sits after a control record ({offset})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_spreads_the_work_over_its_intervals() {
    let setup = setup("pipeline_rate_limit", 2).await;
    setup.emit((1..=200).map(|seq| step(seq % 20, seq)));
    let mut config = setup.config(4, quick(3, Exhausted::Stop));
    config.consumer.rate_limit = Some(procon::RateLimit {
        allowed_messages: 50,
        interval: Duration::from_millis(500),
    });
    let runtime = procon::start(config).unwrap();
    setup.wait_for_done(200);
    runtime.shutdown().await.unwrap();
    #[derive(QueryableByName)]
    struct Busiest {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    // The most steps applied within any 500 ms: at most one window's 50 plus the next one's
    // (windows are not aligned with this sliding look); without the limit all 200 land at once.
    let busiest: Busiest = diesel::sql_query(
        "SELECT max(n) AS n FROM (SELECT count(*) OVER (ORDER BY applied_at \
           RANGE BETWEEN CURRENT ROW AND interval '499 milliseconds' FOLLOWING) AS n \
         FROM steps_done) windows",
    )
    .get_result(&mut setup.db.conn())
    .unwrap();
    assert!(busiest.n <= 100, "{} steps within 500 ms", busiest.n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebalance_with_units_in_flight_applies_each_event_once_in_key_order() {
    let setup = setup("pipeline_rebalance", 4).await;
    // 20 ms per step: when the second member joins, the first is in the middle of units.
    setup.emit((1..=800).map(|seq| Step {
        delay_ms: 20,
        ..step(seq % 40, seq)
    }));
    let mut first_config = setup.config(8, quick(3, Exhausted::Stop));
    first_config.consumer.batch_size = 10;
    let first = procon::start(first_config).unwrap();
    setup.wait_for_done(100);
    let mut second_config = setup.config(8, quick(3, Exhausted::Stop));
    second_config.relay.enabled = false;
    second_config.consumer.batch_size = 10;
    let second = procon::start(second_config).unwrap();
    common::wait_for("the second member to own partitions", LONG, || {
        (!second.assigned_partitions().is_empty()).then_some(())
    });
    let rows = setup.wait_for_done(800);
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    let rows_after = done(&mut setup.db.conn());
    assert_eq!(
        rows_after.len(),
        800,
        "each step once: {}",
        rows_after.len()
    );
    for (account, seqs) in per_account(&rows) {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(
            seqs, sorted,
            "account {account} in order across the rebalance"
        );
        assert_eq!(seqs.len(), 20, "account {account}");
    }
}
