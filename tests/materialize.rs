//! Materializing a remote entity against real PostgreSQL and the real broker: each rule of
//! `procon::materialize`, hooks, composite master keys, bad events, and a chain A → B → C where
//! B materializes and replies, crashes, and C still ends with one effect per original event.

mod common;
use common::ledger;
#[path = "common/customers.rs"]
mod customers;

use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic};
use common::db::TestDb;
use customers::{Customer, Membership, RemoteAccount, RemoteMembership};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, QueryDsl, RunQueryDsl, SelectableHelper};
use procon::prelude::*;
use procon::{Exhausted, FailurePolicy, Outcome};

const LONG: Duration = Duration::from_secs(60);

fn account(topic: &str, id: i64, email: &str, plan: &str) -> RemoteAccount {
    RemoteAccount {
        topic: topic.to_owned(),
        id,
        name: format!("name-{id}"),
        plan: plan.to_owned(),
        profile: serde_json::json!({ "email": email }),
    }
}

/// Emits one event of the remote service in its own transaction.
fn remote(
    conn: &mut PgConnection,
    event: impl FnOnce(&mut PgConnection) -> Result<uuid::Uuid, procon::EmitError>,
) {
    conn.transaction(event).unwrap();
}

fn customer(conn: &mut PgConnection, id: i64) -> Option<Customer> {
    customers::customers::table
        .find(id)
        .select(Customer::as_select())
        .first(conn)
        .ok()
}

fn hook_log(conn: &mut PgConnection) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Entry {
        #[diesel(sql_type = diesel::sql_types::Text)]
        entry: String,
    }
    diesel::sql_query("SELECT entry FROM hook_log ORDER BY id")
        .load::<Entry>(conn)
        .unwrap()
        .into_iter()
        .map(|e| e.entry)
        .collect()
}

/// One service: a remote service's outbox and the local tables in one schema, a runtime that
/// relays the remote events and materializes them.
struct Service {
    db: TestDb,
    topic: String,
    runtime: procon::Runtime,
}

async fn service(name: &str, failure: Option<FailurePolicy>) -> Service {
    common::init_logs();
    let db = TestDb::new(name);
    db.conn().batch_execute(customers::CREATE_TABLES).unwrap();
    let topic = unique_topic(name);
    let ledger_topic = unique_topic(&format!("{name}-ledger"));
    create_topic(&brokers(), &topic, 2).await;
    create_topic(&brokers(), &ledger_topic, 1).await;
    let mut config = common::consumer_config(&db, &brokers(), &unique_topic(name), &ledger_topic);
    config
        .consumer
        .topics
        .insert(customers::ACCOUNTS_TOPIC.into(), topic.clone());
    if let Some(policy) = failure {
        config.consumer.failure = policy;
    }
    let runtime = procon::start(config).unwrap();
    Service { db, topic, runtime }
}

fn wait_for_log(conn: &mut PgConnection, entry: &str) {
    common::wait_for(&format!("hook log `{entry}`"), LONG, || {
        hook_log(conn).iter().any(|e| e == entry).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn materialize_rules_create_update_delete_with_hooks() {
    let service = service("materialize_rules", None).await;
    let topic = &service.topic;
    let mut conn = service.db.conn();

    // created → inserted, every mapping applied.
    remote(&mut conn, |c| {
        account(topic, 1, "a@one", "gold").emit_created(c)
    });
    wait_for_log(&mut conn, "after Upserted 1");
    let first = customer(&mut conn, 1).unwrap();
    assert_eq!(first.email, "a@one", "nested path profile.email");
    assert_eq!(first.name, "name-1");
    assert_eq!(first.source_topic, *topic, "from_topic");
    assert_eq!(first.plan, "gold");
    assert_eq!(first.note, None);
    assert!(
        (chrono::Utc::now() - first.synced_at).num_seconds() < 60,
        "from_event_time"
    );

    // A local-only column is never touched by events.
    conn.batch_execute("UPDATE customers SET note = 'vip' WHERE account_id = 1")
        .unwrap();
    // updated → updated; `plan` is skip_on_update.
    remote(&mut conn, |c| {
        let before = account(topic, 1, "a@one", "gold");
        account(topic, 1, "a@two", "silver").emit_updated(&before, c)
    });
    wait_for_log(&mut conn, "processed remote_account.updated");
    let updated = customer(&mut conn, 1).unwrap();
    assert_eq!(updated.email, "a@two");
    assert_eq!(
        updated.plan, "gold",
        "skip_on_update keeps the created value"
    );
    assert_eq!(updated.note.as_deref(), Some("vip"), "skip: never written");

    // created for an existing record → updated like an update.
    remote(&mut conn, |c| {
        account(topic, 1, "a@three", "bronze").emit_created(c)
    });
    common::wait_for("the second creation", LONG, || {
        (customer(&mut conn, 1).unwrap().email == "a@three").then_some(())
    });
    assert_eq!(customer(&mut conn, 1).unwrap().plan, "gold");

    // updated for a missing record → inserted (with every insert column).
    remote(&mut conn, |c| {
        let before = account(topic, 2, "b@old", "free");
        account(topic, 2, "b@new", "free").emit_updated(&before, c)
    });
    common::wait_for("the update-inserted record", LONG, || {
        customer(&mut conn, 2)
    });
    assert_eq!(customer(&mut conn, 2).unwrap().plan, "free");

    // deleted → deleted (key from `before`); deleted of a missing record → nothing deleted.
    remote(&mut conn, |c| {
        account(topic, 2, "b@new", "free").emit_deleted(c)
    });
    remote(&mut conn, |c| {
        account(topic, 3, "c@x", "free").emit_deleted(c)
    });
    // Keys 2 and 3 are applied concurrently: wait for both.
    wait_for_log(&mut conn, "after NothingToDelete 3");
    wait_for_log(&mut conn, "after Deleted 2");
    assert!(customer(&mut conn, 2).is_none());
    let log = hook_log(&mut conn);
    // Per key, in order (keys 2 and 3 are applied concurrently: no order between them).
    let of_key = |key: &str| -> Vec<&String> { log.iter().filter(|e| e.ends_with(key)).collect() };
    let (two, three) = (of_key(" 2"), of_key(" 3"));
    assert!(
        two.ends_with(&[
            &"before deleted 2".to_owned(),
            &"after Deleted 2".to_owned()
        ]) && three.ends_with(&[
            &"before deleted 3".to_owned(),
            &"after NothingToDelete 3".to_owned(),
        ]),
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|e| e.starts_with("processed")).count(),
        6,
        "message_processed once per event: {log:?}"
    );
    common::wait_for("after_commit hooks", LONG, || {
        let committed = customers::COMMITTED.lock().unwrap().clone();
        committed
            .contains(&(3, Outcome::NothingToDelete))
            .then_some(())
    });

    // Composite master key.
    for role in ["member", "admin"] {
        remote(&mut conn, |c| {
            RemoteMembership {
                topic: topic.clone(),
                tenant: 9,
                account: 1,
                role: role.into(),
            }
            .emit_created(c)
        });
    }
    remote(&mut conn, |c| {
        RemoteMembership {
            topic: topic.clone(),
            tenant: 8,
            account: 1,
            role: "member".into(),
        }
        .emit_created(c)
    });
    common::wait_for("two memberships, the first one updated", LONG, || {
        let rows: Vec<Membership> = customers::memberships::table
            .order(customers::memberships::tenant_id)
            .select(Membership::as_select())
            .load(&mut conn)
            .unwrap();
        (rows
            == vec![
                Membership {
                    tenant_id: 8,
                    account_id: 1,
                    role: "member".into(),
                },
                Membership {
                    tenant_id: 9,
                    account_id: 1,
                    role: "admin".into(),
                },
            ])
        .then_some(())
    });
    service.runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_missing_a_mapped_attribute_is_not_applied_and_follows_the_policy() {
    let policy = FailurePolicy {
        max_attempts: 2,
        backoff: procon::runtime::backoff::BackoffConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(50),
        },
        exhausted: Exhausted::Stop,
    };
    let service = service("materialize_bad_event", Some(policy)).await;
    let mut conn = service.db.conn();
    let mut bad = account(&service.topic, 5, "unused", "free");
    bad.profile = serde_json::json!({ "mail": "typo@x" });
    remote(&mut conn, |c| bad.emit_created(c));
    let stopped = common::wait_for("the partition to stop", LONG, || {
        procon::stopped_partitions(&mut conn, None)
            .unwrap()
            .into_iter()
            .next()
    });
    assert!(
        stopped.error.contains("`profile.email`") && stopped.error.contains("`email`"),
        "{}",
        stopped.error
    );
    assert!(customer(&mut conn, 5).is_none());
    service.runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chain_a_b_c_has_one_effect_per_event_when_b_crashes() {
    const EVENTS: i64 = 2000;
    common::init_logs();
    // A: the remote service (outbox + relay in this process).
    let a = TestDb::new("chain_a");
    // B: materializes A's accounts and replies (a process the test kills).
    let b = TestDb::new("chain_b");
    b.conn().batch_execute(customers::CREATE_TABLES).unwrap();
    // C: applies B's replies with the ledger handlers (a process too).
    let c = TestDb::new("chain_c");
    ledger::create_effects(&mut c.conn());
    let accounts = unique_topic("chain-accounts");
    let replies = unique_topic("chain-replies");
    let unused = unique_topic("chain-unused");
    for topic in [&accounts, &replies, &unused] {
        create_topic(&brokers(), topic, 4).await;
    }
    let mut a_conn = a.conn();
    for chunk in 0..EVENTS / 500 {
        a_conn
            .transaction(|conn| {
                for id in chunk * 500 + 1..=(chunk + 1) * 500 {
                    account(&accounts, id, &format!("{id}@a"), "free").emit_created(conn)?;
                }
                Ok::<_, procon::EmitError>(())
            })
            .unwrap();
    }
    let a_relay = procon::start(common::runtime_config(&a, &brokers())).unwrap();

    let b_group = unique_topic("chain-b");
    let spawn_b = |round: usize| {
        let mut command =
            std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-materializer"));
        command
            .env("PROCON_DATABASE_URL", &b.url)
            .env("PROCON_BROKERS", brokers())
            .env("PROCON_SERVICE_NAME", &b_group)
            .env("PROCON_CONSUMER_COMMIT_HINTS", "false")
            // tansu misreports the log end after idempotent batches (tests/broker_blackbox.rs).
            .env("PROCON_CONSUMER_CHECK_POSITION_RANGE", "false")
            .env("PROCON_RELAY_POLL_INTERVAL_MS", "200")
            .env("ACCOUNTS_TOPIC", &accounts)
            .env("REPLIES_TOPIC", &replies)
            .env("LEDGER_TOPIC", &unused)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(
                    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                        .join(format!("chain_b_{round}.log")),
                )
                .unwrap(),
            );
        for (name, value) in common::broker::TEST_CONSUMER_SETTINGS {
            let variable = name.to_uppercase().replace('.', "_");
            command.env(format!("PROCON_CONSUMER_KAFKA_{variable}"), value);
        }
        command.spawn().expect("spawn the test materializer")
    };
    let mut c_process = common::process::spawn_consumer(
        &c.url,
        &brokers(),
        &unique_topic("chain-c"),
        &replies,
        "chain_c",
    );

    let materialized = |db: &TestDb| common::db::count(&mut db.conn(), "customers");
    // Crash B twice while it materializes and replies.
    for (round, target) in [(0, 500), (1, 1200)] {
        let mut b_process = spawn_b(round);
        common::wait_for(&format!("B to materialize {target}"), LONG, || {
            (materialized(&b) >= target).then_some(())
        });
        b_process.kill().unwrap(); // SIGKILL, mid-stream
        b_process.wait().unwrap();
    }
    let done = materialized(&b);
    assert!(
        done < EVENTS,
        "the last crash landed mid-stream ({done} done)"
    );
    let mut b_process = spawn_b(2);
    common::wait_for("C to apply every reply", Duration::from_secs(180), || {
        (common::db::count(&mut c.conn(), "effects") >= EVENTS).then_some(())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let effects = ledger::effects(&mut c.conn());
    b_process.kill().unwrap();
    b_process.wait().unwrap();
    c_process.kill().unwrap();
    c_process.wait().unwrap();
    a_relay.shutdown().await.unwrap();

    println!(
        "chain: {EVENTS} events from A, {} customers in B, {} effects in C",
        materialized(&b),
        effects.len()
    );
    assert_eq!(materialized(&b), EVENTS);
    let mut seqs: Vec<i64> = effects.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert!(
        seqs.iter().copied().eq(1..=EVENTS),
        "C holds exactly one effect per original event ({} effects)",
        effects.len()
    );
}
