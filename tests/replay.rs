//! Replay through the operator CLI, against real PostgreSQL and the test broker: a dry run
//! changes nothing; `procon replay --to earliest --no-publish` makes the group apply each event
//! once more, and what the handler emits while replaying is not written; the replay ends by
//! itself once the group is past where it was.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic};
use common::db::TestDb;
use common::ledger::{effect_count, effects, CreditOut, Entry, Out, ShoutOut};
use diesel::sql_types::{Nullable, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use procon::OutboxExt;

const LONG: Duration = Duration::from_secs(60);

/// Records the effect and emits an echo (a credit on `echoes`) in the same transaction.
struct OnShout;

impl procon::EventHandler for OnShout {
    const TOPIC: &'static str = common::ledger::TOPIC;
    const EVENT: &'static str = "shout.created";
    type Payload = Entry;
    fn handle(
        ctx: &mut procon::HandlerContext<'_>,
        event: procon::Event<Entry>,
    ) -> Result<(), procon::HandlerError> {
        let entry = event.after.clone().expect("an entry");
        common::ledger::record(ctx, &event)?;
        CreditOut(Out {
            entity_topic: "echoes".to_owned(),
            entry,
        })
        .emit_created(ctx.conn())
        .map_err(|e| procon::HandlerError::msg(e.to_string()))?;
        Ok(())
    }
}
procon::register_handler!(OnShout);

fn procon(db: &TestDb, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .args(args)
        .env("PROCON_DATABASE_URL", &db.url)
        .output()
        .expect("run procon")
}

/// `procon replay --group G --topic T --to TO` and more arguments.
fn replay(db: &TestDb, group: &str, topic: &str, to: &str, more: &[&str]) -> std::process::Output {
    let mut args = vec!["replay", "--group", group, "--topic", topic, "--to", to];
    args.extend_from_slice(more);
    procon(db, &args)
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Text)]
    next: String,
    #[diesel(sql_type = Nullable<Text>)]
    until: Option<String>,
}

fn stored(db: &TestDb, group: &str) -> Vec<(String, Option<String>)> {
    diesel::sql_query(
        "SELECT next_offset::text AS next, replay_until::text AS until \
         FROM procon_consumer_offsets WHERE group_id = $1 ORDER BY partition",
    )
    .bind::<Text, _>(group)
    .load::<Stored>(&mut db.conn())
    .unwrap()
    .into_iter()
    .map(|s| (s.next, s.until))
    .collect()
}

/// Waits until every partition of `group` is past its replay (a replay ends by itself).
fn until_replay_ended(db: &TestDb, group: &str) {
    common::wait_for("the replay to end by itself", LONG, || {
        stored(db, group)
            .iter()
            .all(|(_, until)| until.is_none())
            .then_some(())
    });
}

/// Each of the `events` events was applied exactly twice: once, then once in the replay.
fn assert_each_applied_twice(db: &TestDb, events: usize) {
    let mut applied: HashMap<String, usize> = HashMap::new();
    for effect in effects(&mut db.conn()) {
        *applied.entry(effect.event_id).or_default() += 1;
    }
    assert_eq!(applied.len(), events);
    assert!(
        applied.values().all(|n| *n == 2),
        "each event once more: {applied:?}"
    );
}

/// Events 1..=`last` were applied once each, and those from `since` on once more.
fn assert_applied_again_since(db: &TestDb, since: i64, last: i64) {
    let mut applied: HashMap<i64, usize> = HashMap::new();
    for effect in effects(&mut db.conn()) {
        *applied.entry(effect.seq).or_default() += 1;
    }
    let expected: HashMap<i64, usize> = (1..=last)
        .map(|seq| (seq, if seq >= since { 2 } else { 1 }))
        .collect();
    assert_eq!(
        applied, expected,
        "the events written since the time, once more"
    );
}

fn echoes(db: &TestDb) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT count(*) AS n FROM procon_outbox WHERE topic = 'echoes'")
        .get_result::<Count>(&mut db.conn())
        .unwrap()
        .n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_applies_each_event_once_more_and_publishes_nothing_with_no_publish() {
    common::init_logs();
    let db = TestDb::new("replay");
    common::ledger::create_effects(&mut db.conn());
    let topic = unique_topic("replay");
    create_topic(&brokers(), &topic, 2).await;
    let group = unique_topic("replay-group");
    shout(&db, &topic, 1..=6);
    // Published by a relay alone; the consumer runs without one, so the echoes stay in the
    // outbox, where they can be counted.
    let relay = procon::start(common::runtime_config(&db, &brokers())).unwrap();
    common::wait_for("the shouts published", LONG, || {
        (common::db::count(&mut db.conn(), "procon_outbox") == 0).then_some(())
    });
    relay.shutdown().await.unwrap();
    let consumer = || {
        let mut config = common::consumer_config(&db, &brokers(), &group, &topic);
        config.relay.enabled = false;
        procon::start(config).unwrap()
    };
    let runtime = consumer();
    common::wait_for("6 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 6).then_some(())
    });
    runtime.shutdown().await.unwrap();
    assert_eq!(echoes(&db), 6);
    let before = stored(&db, &group);

    let dry = replay(&db, &group, &topic, "earliest", &["--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    assert!(String::from_utf8_lossy(&dry.stdout).contains("dry run: nothing changed"));
    assert_eq!(stored(&db, &group), before, "a dry run changes nothing");

    let replayed = replay(&db, &group, &topic, "earliest", &["--no-publish"]);
    assert!(replayed.status.success(), "{replayed:?}");
    let runtime = consumer();
    common::wait_for("12 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 12).then_some(())
    });
    until_replay_ended(&db, &group);
    runtime.shutdown().await.unwrap();
    assert_each_applied_twice(&db, 6);
    assert_eq!(
        echoes(&db),
        6,
        "nothing emitted while replaying with --no-publish"
    );
    let unknown = replay(&db, "nobody", &topic, "earliest", &[]);
    let bad = replay(&db, &group, &topic, "yesterday", &[]);
    assert!(!bad.status.success());
    let error = String::from_utf8_lossy(&bad.stderr);
    assert!(
        error.contains("--to yesterday") && error.contains("earliest"),
        "{error}"
    );
    assert_eq!(stored(&db, &group).len(), 2, "nothing changed");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no stored position"));
}

/// Emits shouts `seqs` on `topic` in one transaction.
fn shout(db: &TestDb, topic: &str, seqs: std::ops::RangeInclusive<i64>) {
    db.conn()
        .transaction(|conn| {
            for seq in seqs {
                ShoutOut(Out {
                    entity_topic: topic.to_owned(),
                    entry: Entry {
                        account: seq % 3,
                        seq,
                    },
                })
                .emit_created(conn)?;
            }
            Ok::<_, procon::EmitError>(())
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_to_a_time_applies_again_only_the_events_written_since() {
    common::init_logs();
    let db = TestDb::new("replay_time");
    common::ledger::create_effects(&mut db.conn());
    let topic = unique_topic("replay-time");
    create_topic(&brokers(), &topic, 2).await;
    let group = unique_topic("replay-time-group");
    let mut config = common::consumer_config(&db, &brokers(), &group, &topic);
    config.relay.enabled = true;
    let runtime = procon::start(config.clone()).unwrap();
    shout(&db, &topic, 1..=6);
    common::wait_for("6 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 6).then_some(())
    });
    // Every event so far is on the broker and applied: what follows is written after `since`.
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    shout(&db, &topic, 7..=10);
    common::wait_for("10 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 10).then_some(())
    });
    runtime.shutdown().await.unwrap();
    let bootstrap = brokers();
    let with_brokers = |args: &[&str]| {
        let mut all = vec!["replay", "--group", &group, "--topic", &topic];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--brokers", &bootstrap]);
        procon(&db, &all)
    };
    let before = stored(&db, &group);

    // A time after the newest event: nothing to replay (a broker answering such a lookup with
    // the partition's start must not make the whole partition replay).
    let later = (chrono::Utc::now() + chrono::Duration::minutes(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let none = with_brokers(&["--to", &later]);
    assert!(none.status.success(), "{none:?}");
    assert!(
        String::from_utf8_lossy(&none.stdout).contains("nothing to replay"),
        "{none:?}"
    );
    assert_eq!(stored(&db, &group), before, "nothing moved");

    let replayed = with_brokers(&["--to", &since, "--json"]);
    assert!(replayed.status.success(), "{replayed:?}");
    let plan: serde_json::Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert!(
        plan.as_array().is_some_and(|p| !p.is_empty()),
        "partitions move back: {plan}"
    );
    let runtime = procon::start(common::consumer_config(&db, &brokers(), &group, &topic)).unwrap();
    common::wait_for("14 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 14).then_some(())
    });
    until_replay_ended(&db, &group);
    runtime.shutdown().await.unwrap();
    assert_applied_again_since(&db, 7, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_page_replays_a_topic_while_its_consumers_run() {
    const TOKEN: &str = "a-replay-admin-token";
    common::init_logs();
    let db = TestDb::new("replay_admin");
    common::ledger::create_effects(&mut db.conn());
    let topic = unique_topic("replay-admin");
    create_topic(&brokers(), &topic, 2).await;
    let group = unique_topic("replay-admin-group");
    let mut config = common::consumer_config(&db, &brokers(), &group, &topic);
    let bind = common::http::admin_on(&mut config, Some(TOKEN));
    let runtime = procon::start(config).unwrap();
    shout(&db, &topic, 1..=6);
    common::wait_for("6 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 6).then_some(())
    });
    // The positions are stored shortly after the effects: wait until they say all 6.
    let before = common::wait_for("the positions stored", LONG, || {
        let now = stored(&db, &group);
        let total: i64 = now
            .iter()
            .map(|(next, _)| next.parse::<i64>().unwrap().max(0))
            .sum();
        (total == 6).then_some(now)
    });
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let form = |extra: &str| format!("topic={topic}&to=earliest{extra}");

    let page = common::http::get(bind, "/", &bearer).await.1;
    assert!(page.contains("action=\"/actions/replay\""), "{page}");
    let (status, _) = common::http::post_form(bind, "/actions/replay", "", &form("")).await;
    assert_eq!(status, 403, "a replay without the token is refused");
    let (status, _) =
        common::http::post_form(bind, "/actions/replay", &bearer, &form("&dry_run=on")).await;
    assert_eq!(status, 303);
    assert_eq!(stored(&db, &group), before, "a dry run changes nothing");
    // What names no start, or a topic the service does not consume, is refused with a notice
    // saying why, and changes nothing.
    let replay_notice = |body: String| {
        let bearer = bearer.clone();
        async move { common::http::action_notice(bind, "/actions/replay", &bearer, &body).await }
    };
    let bad_start = replay_notice(format!("topic={topic}&to=yesterday")).await;
    assert!(
        bad_start.contains("yesterday: expected `earliest`"),
        "{bad_start}"
    );
    let elsewhere = replay_notice("topic=elsewhere&to=earliest".to_owned()).await;
    assert!(
        elsewhere.contains("elsewhere is not a topic this service consumes"),
        "{elsewhere}"
    );
    assert_eq!(
        stored(&db, &group),
        before,
        "refused replays change nothing"
    );
    let dry = replay_notice(format!("topic={topic}&to=earliest&dry_run=on")).await;
    assert!(dry.contains("dry run: nothing changed"), "{dry}");

    // The consumers keep running, idle: they follow the replay without a restart.
    let (status, _) = common::http::post_form(bind, "/actions/replay", &bearer, &form("")).await;
    assert_eq!(status, 303);
    common::wait_for("12 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 12).then_some(())
    });
    until_replay_ended(&db, &group);
    runtime.shutdown().await.unwrap();
    assert_each_applied_twice(&db, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_to_a_time_on_kinesis_applies_again_only_the_events_written_since() {
    common::init_logs();
    let db = TestDb::new("replay_time_kinesis");
    common::ledger::create_effects(&mut db.conn());
    let client = common::kinesis::client();
    let stream = common::kinesis::unique_stream("replay-time");
    common::kinesis::create_stream(&client, &stream, 2).await;
    // What the handler emits goes to `echoes`: a stream must exist for it on Kinesis.
    common::kinesis::create_stream(&client, "echoes", 1).await;
    let group = unique_topic("replay-time-kinesis-group");
    let config = || {
        let mut config = common::consumer_config(&db, "unused:9092", &group, &stream);
        config.transport = procon::Transport::Kinesis;
        config.kinesis = common::kinesis::settings();
        config.kinesis.idle_poll_interval = Duration::from_millis(50);
        config
    };
    let runtime = procon::start(config()).unwrap();
    shout(&db, &stream, 1..=6);
    common::wait_for("6 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 6).then_some(())
    });
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    shout(&db, &stream, 7..=10);
    common::wait_for("10 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 10).then_some(())
    });
    runtime.shutdown().await.unwrap();

    let replayed = std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .args([
            "replay", "--group", &group, "--topic", &stream, "--to", &since,
        ])
        .env("PROCON_DATABASE_URL", &db.url)
        .env("PROCON_TRANSPORT", "kinesis")
        .env("PROCON_KINESIS_REGION", "us-east-1")
        .env("PROCON_KINESIS_ENDPOINT_URL", common::kinesis::endpoint())
        .output()
        .unwrap();
    assert!(replayed.status.success(), "{replayed:?}");
    let runtime = procon::start(config()).unwrap();
    common::wait_for("14 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 14).then_some(())
    });
    until_replay_ended(&db, &group);
    runtime.shutdown().await.unwrap();
    assert_applied_again_since(&db, 7, 10);
}
