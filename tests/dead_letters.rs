//! Dead letters through the operator CLI, against real PostgreSQL and the test broker (and the
//! Kinesis emulator, once): events
//! whose handler fails every attempt go to the dead-letter topic (policy `dead_letter`) while
//! their key goes on; `procon dlq list` shows them with their error, `show` one in full; once the
//! handler is fixed, `procon dlq redrive --all` sends them back through the outbox, in order, and
//! each is applied once. The admin page shows the same letters and redrives one from its button.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic};
use common::db::TestDb;
use common::ledger::{effect_count, effects, CreditOut, Entry, FragileOut, Out};
use diesel::Connection;
use procon::OutboxExt;

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "a-dead-letter-admin-token";

/// Accounts whose fix is deployed (each test uses an account of its own).
static FIXED: Mutex<BTreeSet<i64>> = Mutex::new(BTreeSet::new());

/// Fails until the fix is deployed; then records the effect.
struct OnFragile;

impl procon::EventHandler for OnFragile {
    const TOPIC: &'static str = common::ledger::TOPIC;
    const EVENT: &'static str = "fragile.created";
    type Payload = Entry;
    fn handle(
        ctx: &mut procon::HandlerContext<'_>,
        event: procon::Event<Entry>,
    ) -> Result<(), procon::HandlerError> {
        let account = event.after.as_ref().map_or(-1, |e| e.account);
        if !FIXED.lock().unwrap().contains(&account) {
            return Err(procon::HandlerError::msg(
                "fragile: the fix is not deployed",
            ));
        }
        common::ledger::record(ctx, &event)
    }
}
procon::register_handler!(OnFragile);

fn procon(db: &TestDb, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
        .args(args)
        .env("PROCON_DATABASE_URL", &db.url)
        .env("PROCON_BROKERS", brokers())
        .output()
        .expect("run procon")
}

/// The dead-letter topic of the one topic `config` consumes.
fn dlq_name(config: &procon::Config) -> String {
    let topic = config
        .consumer
        .topics
        .values()
        .next()
        .expect("a consumed topic");
    format!("{topic}.dlq")
}

/// What both transports show through the CLI: two events of `account` whose handler fails
/// every attempt and a good one after them on `topic`; the good one is applied, the letters are
/// listed with their error and shown; once the fix is deployed, `redrive --all` sends them back
/// and they are applied in order, each once.
async fn letters_listed_shown_and_redriven(
    db: &TestDb,
    topic: &str,
    account: i64,
    mut config: procon::Config,
    procon: impl Fn(&[&str]) -> std::process::Output,
) {
    let dlq = format!("{topic}.dlq");
    let out = |seq| Out {
        entity_topic: topic.to_owned(),
        entry: Entry { account, seq },
    };
    db.conn()
        .transaction(|conn| {
            FragileOut(out(1)).emit_created(conn)?;
            FragileOut(out(2)).emit_created(conn)?;
            CreditOut(out(3)).emit_created(conn)
        })
        .unwrap();
    config.consumer.failure.max_attempts = 2;
    config.consumer.failure.exhausted = procon::Exhausted::DeadLetter { topic: None };
    config.consumer.failure.backoff.initial = Duration::from_millis(50);
    let reading = config.clone();
    let runtime = procon::start(config).unwrap();
    // The key goes on past its dead-lettered events.
    common::wait_for("seq 3 applied", LONG, || {
        (effect_count(&mut db.conn()) >= 1).then_some(())
    });
    let listed = common::wait_for("both letters in the dead-letter topic", LONG, || {
        let out = procon(&["dlq", "--topic", &dlq, "list", "--json"]);
        let letters: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (letters.as_array()?.len() == 2).then_some(letters)
    });
    assert_eq!(listed[0]["headers"]["procon-dlq-topic"], topic);
    assert!(
        listed[0]["headers"]["procon-dlq-error"]
            .as_str()
            .unwrap()
            .contains("the fix is not deployed"),
        "{listed}"
    );
    let text = procon(&["dlq", "--topic", &dlq, "list"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("fragile.created") && text.contains("the fix is not deployed"),
        "{text}"
    );
    let first = format!("0:{}", listed[0]["position"].as_str().unwrap());
    let shown = procon(&["dlq", "--topic", &dlq, "show", &first]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("procon-dlq-attempts: 2") && shown.contains("\"seq\":1"),
        "{shown}"
    );
    let missing = procon(&["dlq", "--topic", &dlq, "show", "0:999"]);
    assert!(!missing.status.success());
    // What the CLI's progress bar is told: every letter read, out of what there is to read.
    let progress = tokio::task::spawn_blocking(move || {
        let mut last = (0, 0);
        procon::dead_letters_with_progress(&reading, &dlq_name(&reading), LONG, &mut |r, t| {
            last = (r, t)
        })
        .unwrap();
        last
    })
    .await
    .unwrap();
    assert_eq!(progress, (2, 2));

    FIXED.lock().unwrap().insert(account);
    let redriven = procon(&["dlq", "--topic", &dlq, "redrive", "--all"]);
    assert!(redriven.status.success(), "{redriven:?}");
    common::wait_for("the redriven events applied", LONG, || {
        (effect_count(&mut db.conn()) >= 3).then_some(())
    });
    runtime.shutdown().await.unwrap();
    let seqs: Vec<i64> = effects(&mut db.conn()).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [3, 1, 2], "redriven in order, each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_with_their_error_and_redriven_in_order_once_fixed() {
    common::init_logs();
    let db = TestDb::new("dead_letters");
    common::ledger::create_effects(&mut db.conn());
    let topic = unique_topic("dlq-cli");
    create_topic(&brokers(), &topic, 1).await;
    create_topic(&brokers(), &format!("{topic}.dlq"), 1).await;
    let config = common::consumer_config(&db, &brokers(), &unique_topic("dlq-cli-group"), &topic);
    letters_listed_shown_and_redriven(&db, &topic, 5, config, |args| procon(&db, args)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_page_lists_dead_letters_and_redrives_one() {
    common::init_logs();
    let db = TestDb::new("dead_letters_page");
    common::ledger::create_effects(&mut db.conn());
    let topic = unique_topic("dlq-page");
    let dlq = format!("{topic}.dlq");
    create_topic(&brokers(), &topic, 1).await;
    create_topic(&brokers(), &dlq, 1).await;
    db.conn()
        .transaction(|conn| {
            FragileOut(Out {
                entity_topic: topic.clone(),
                entry: Entry { account: 6, seq: 1 },
            })
            .emit_created(conn)
        })
        .unwrap();
    let mut config =
        common::consumer_config(&db, &brokers(), &unique_topic("dlq-page-group"), &topic);
    config.consumer.failure.max_attempts = 2;
    config.consumer.failure.exhausted = procon::Exhausted::DeadLetter { topic: None };
    config.consumer.failure.backoff.initial = Duration::from_millis(50);
    let bind = common::http::admin_on(&mut config, Some(TOKEN));
    let runtime = procon::start(config).unwrap();
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let page = common::wait_for_async("the letter on the page", LONG, || {
        let bearer = bearer.clone();
        async move {
            let (_, body) = common::http::get(bind, "/", &bearer).await;
            // In the dead letters' section, not only among the keys retrying.
            let letters = body.split("<h2>Dead letters</h2>").nth(1)?;
            letters
                .contains("the fix is not deployed")
                .then(|| body.clone())
        }
    })
    .await;
    assert!(page.contains(&dlq), "{page}");
    let letter = page
        .split("name=\"letter\" value=\"")
        .nth(2)
        .and_then(|rest| rest.split('"').next())
        .expect("a Redrive button for the letter")
        .to_owned();
    FIXED.lock().unwrap().insert(6);
    let form = format!("dlq={dlq}&letter={}", letter.replace(':', "%3A"));
    let (status, _) = common::http::post_form(bind, "/actions/redrive", &bearer, &form).await;
    assert_eq!(status, 303);
    common::wait_for("the redriven event applied", LONG, || {
        (effect_count(&mut db.conn()) >= 1).then_some(())
    });
    runtime.shutdown().await.unwrap();
    let seqs: Vec<i64> = effects(&mut db.conn()).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_on_kinesis_are_listed_and_redriven_in_order_once_fixed() {
    common::init_logs();
    let db = TestDb::new("dead_letters_kinesis");
    common::ledger::create_effects(&mut db.conn());
    let client = common::kinesis::client();
    let stream = common::kinesis::unique_stream("dlq-kinesis");
    common::kinesis::create_stream(&client, &stream, 1).await;
    common::kinesis::create_stream(&client, &format!("{stream}.dlq"), 1).await;
    let group = unique_topic("dlq-kinesis-group");
    let mut config = common::consumer_config(&db, "unused:9092", &group, &stream);
    config.transport = procon::Transport::Kinesis;
    config.kinesis = common::kinesis::settings();
    config.kinesis.idle_poll_interval = Duration::from_millis(50);
    let procon = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"))
            .args(args)
            .env("PROCON_DATABASE_URL", &db.url)
            .env("PROCON_TRANSPORT", "kinesis")
            .env("PROCON_KINESIS_REGION", "us-east-1")
            .env("PROCON_KINESIS_ENDPOINT_URL", common::kinesis::endpoint())
            .output()
            .expect("run procon")
    };
    // A stream that does not exist: an error naming what failed, nothing read.
    let missing = procon(&["dlq", "--topic", "no-such-stream.dlq", "list"]);
    assert!(!missing.status.success());
    let error = String::from_utf8_lossy(&missing.stderr);
    assert!(
        error.contains("cannot read no-such-stream.dlq") && error.contains("ResourceNotFound"),
        "{error}"
    );
    letters_listed_shown_and_redriven(&db, &stream, 7, config, procon).await;
}
