//! Avro events with a schema registry, against real PostgreSQL, the real broker and the
//! registry of tests/common/registry.rs (written from Confluent's REST API: no registry
//! server installs on these machines). An Avro model's events reach an older consumer; the
//! wire carries the registry's id; a registry outage delays publishing and loses nothing; an
//! incompatible schema is refused by `procon schemas check`, by registration and by the relay;
//! an unknown schema id and a type mismatch follow the failure policy with a clear error.

mod common;

use std::time::Duration;

use common::avro_model::{AccountV1, AvroAccount, AVRO_TOPIC, SEQ_AS_STRING};
use common::broker::{brokers, create_topic, produce_raw, unique_topic, Collector};
use common::db::TestDb;
use common::registry::FakeRegistry;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use procon::avro::{RegistryClient, RegistryError};
use procon::prelude::*;
use procon::runtime::backoff::BackoffConfig;
use procon::{event_handler, Exhausted, FailurePolicy};

const LONG: Duration = Duration::from_secs(60);

/// Records what an older consumer read of each account (its type has no `nickname`).
#[event_handler(topic = "avro-accounts", event = "account.created")]
fn seen_by_v1(ctx: &mut HandlerContext<'_>, event: Event<AccountV1>) -> Result<(), HandlerError> {
    let account = event
        .after
        .as_ref()
        .ok_or_else(|| HandlerError::msg("no after"))?;
    diesel::sql_query("INSERT INTO avro_seen (id, owner_name, seq) VALUES ($1, $2, $3)")
        .bind::<BigInt, _>(account.id)
        .bind::<Text, _>(&account.owner_name)
        .bind::<BigInt, _>(account.seq)
        .execute(ctx.conn())?;
    Ok(())
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Seen {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    owner_name: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

fn seen(db: &TestDb) -> Vec<Seen> {
    diesel::sql_query("SELECT id, owner_name, seq FROM avro_seen ORDER BY id, seq")
        .load(&mut db.conn())
        .unwrap()
}

fn account(id: i64, seq: i64) -> AvroAccount {
    AvroAccount {
        id,
        owner: format!("owner-{id}"),
        seq,
        nickname: Some(format!("nick-{id}-{seq}")),
        secret: "never published".into(),
    }
}

struct Setup {
    db: TestDb,
    topic: String,
    registry: FakeRegistry,
}

async fn setup(name: &str) -> Setup {
    common::init_logs();
    let db = TestDb::new(name);
    db.conn()
        .batch_execute("CREATE TABLE avro_seen (id BIGINT, owner_name TEXT, seq BIGINT, PRIMARY KEY (id, seq))")
        .unwrap();
    let topic = unique_topic(name);
    create_topic(&brokers(), &topic, 2).await;
    Setup {
        db,
        topic,
        registry: FakeRegistry::start(),
    }
}

impl Setup {
    /// Relays `avro-accounts` to this test's topic through this test's registry; consumes it
    /// when `consume`.
    fn config(&self, consume: bool) -> procon::Config {
        let mut config = if consume {
            common::consumer_config(
                &self.db,
                &brokers(),
                &unique_topic("avro-group"),
                &unique_topic("unused-ledger"),
            )
        } else {
            common::runtime_config(&self.db, &brokers())
        };
        config
            .relay
            .topics
            .insert(AVRO_TOPIC.into(), self.topic.clone());
        config
            .consumer
            .topics
            .insert(AVRO_TOPIC.into(), self.topic.clone());
        config.schema_registry.url = Some(self.registry.url.clone());
        config.schema_registry.timeout = Duration::from_secs(2);
        config.relay.backoff = BackoffConfig {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(300),
        };
        config.consumer.failure_by_topic.insert(
            AVRO_TOPIC.into(),
            FailurePolicy {
                max_attempts: 2,
                backoff: BackoffConfig {
                    initial: Duration::from_millis(20),
                    max: Duration::from_millis(100),
                },
                exhausted: Exhausted::DeadLetter { topic: None },
            },
        );
        config
    }

    fn emit(&self, accounts: &[AvroAccount]) {
        let mut conn = self.db.conn();
        conn.transaction(|conn| {
            // One per event and the rest in one statement: both paths write Avro rows.
            let (first, rest) = accounts.split_first().unwrap();
            first.emit_created(conn)?;
            procon::emit_all(conn, rest.iter().map(OutboxEvent::created))?;
            Ok::<_, procon::EmitError>(())
        })
        .unwrap();
    }

    fn subject(&self) -> String {
        format!("{}-value", self.topic)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_avro_model_reaches_an_older_consumer_framed_with_its_registry_id() {
    let setup = setup("avro_round_trip").await;
    let runtime = procon::start(setup.config(true)).unwrap();
    let accounts: Vec<AvroAccount> = (0..6)
        .flat_map(|id| (1..=3).map(move |seq| account(id, seq)))
        .collect();
    setup.emit(&accounts);

    let expected: Vec<Seen> = accounts
        .iter()
        .map(|a| Seen {
            id: a.id,
            owner_name: a.owner.clone(),
            seq: a.seq,
        })
        .collect();
    common::wait_for("the older consumer to apply every Avro event", LONG, || {
        (seen(&setup.db) == expected).then_some(())
    });

    // On the wire: the Confluent framing with the id the registry gave the subject's only
    // version, and Avro's content type.
    let subjects = setup.registry.subjects();
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    let ids = &subjects[&setup.subject()];
    assert_eq!(ids.len(), 1);
    let mut collector = Collector::new(&brokers(), &setup.topic, 2);
    let received = collector.at_least(accounts.len(), LONG);
    for message in received {
        assert_eq!(message.raw_payload[0], 0, "the magic byte");
        let id = u32::from_be_bytes(message.raw_payload[1..5].try_into().unwrap());
        assert_eq!(id, ids[0]);
        assert_eq!(message.header("content-type"), Some("avro/binary"));
        let datum = String::from_utf8_lossy(&message.raw_payload);
        assert!(
            !datum.contains("never published"),
            "a skipped field reached the wire"
        );
    }
    // The outbox row keeps the JSON envelope for operators, beside the datum.
    runtime.shutdown().await.unwrap();
    assert_eq!(setup.db.outbox_len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_outage_delays_publishing_and_loses_nothing() {
    let setup = setup("avro_outage").await;
    setup.registry.set_outage(true);
    let runtime = procon::start(setup.config(false)).unwrap();
    let accounts: Vec<AvroAccount> = (0..3)
        .flat_map(|id| (1..=4).map(move |seq| account(id, seq)))
        .collect();
    setup.emit(&accounts);
    // The relay asked, was refused, and asked again: nothing left the outbox meanwhile.
    common::wait_for("the relay to retry the registry", LONG, || {
        (setup.registry.requests() >= 3).then_some(())
    });
    assert_eq!(setup.db.outbox_len(), accounts.len() as i64);
    assert!(setup.registry.subjects().is_empty());

    setup.registry.set_outage(false);
    common::wait_for(
        "the outbox to drain once the registry is back",
        LONG,
        || (setup.db.outbox_len() == 0).then_some(()),
    );
    let mut collector = Collector::new(&brokers(), &setup.topic, 2);
    let received = collector.at_least(accounts.len(), LONG).to_vec();
    assert_eq!(received.len(), accounts.len(), "each event once");
    // Per key, in order: decode each with the registered schema.
    let client = RegistryClient::new(&setup.registry.url, Duration::from_secs(2));
    let mut seqs: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for message in &received {
        let (id, datum) = procon::avro::unframe(&message.raw_payload).expect("framed");
        let schema = client.schema(id).unwrap();
        let value =
            procon::avro::apache_avro::from_avro_datum(&schema, &mut &datum[..], None).unwrap();
        let json = serde_json::Value::try_from(value).unwrap();
        seqs.entry(message.key.clone())
            .or_default()
            .push(json["after"]["seq"].as_i64().unwrap());
    }
    for (key, seqs) in seqs {
        assert_eq!(seqs, vec![1, 2, 3, 4], "key {key}");
    }
    runtime.shutdown().await.unwrap();
}

fn procon_cli(args: &[&str], registry: &str, topic: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-schemas"))
        .args(["schemas", "--topic", &format!("{AVRO_TOPIC}={topic}")])
        .args(args)
        .env("PROCON_SCHEMA_REGISTRY_URL", registry)
        .env_remove("PROCON_RELAY_TOPICS")
        .output()
        .expect("run procon")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incompatible_schema_is_refused_by_check_by_registration_and_by_the_relay() {
    let setup = setup("avro_incompatible").await;
    let url = setup.registry.url.clone();

    // A compatible subject first: check passes, register gives an id, list shows it.
    let fresh = unique_topic("avro-fresh");
    let check = procon_cli(&["check"], &url, &fresh);
    assert!(check.status.success(), "{check:?}");
    let register = procon_cli(&["register"], &url, &fresh);
    assert!(register.status.success(), "{register:?}");
    let listed = procon_cli(&["--json", "list"], &url, &fresh);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["subject"], format!("{fresh}-value"));
    assert_eq!(listed[0]["record"], "procon.test.AccountEvent");
    let registered = setup.registry.subjects()[&format!("{fresh}-value")][0];
    assert_eq!(listed[0]["id"], registered);

    // An earlier deploy wrote `seq` as a string: the current model breaks BACKWARD.
    let old_id = setup.registry.register(&setup.subject(), SEQ_AS_STRING);
    let check = procon_cli(&["check"], &url, &setup.topic);
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        stdout.contains("INCOMPATIBLE") && stdout.contains("version 1"),
        "{stdout}"
    );
    let register = procon_cli(&["register"], &url, &setup.topic);
    assert_eq!(register.status.code(), Some(1), "{register:?}");
    assert!(
        String::from_utf8_lossy(&register.stdout).contains("error 409"),
        "{register:?}"
    );
    assert_eq!(setup.registry.subjects()[&setup.subject()], vec![old_id]);

    // The relay gets the same refusal: a rejection, so the row is parked with it.
    let mut config = setup.config(false);
    config.relay.park_after_attempts = 2;
    let runtime = procon::start(config).unwrap();
    setup.emit(&[account(1, 1)]);
    let parked = common::wait_for("the relay to park the event", LONG, || {
        let parked = procon::parked_rows(&mut setup.db.conn()).unwrap();
        (!parked.is_empty()).then_some(parked)
    });
    assert!(
        parked[0].error.contains("incompatible"),
        "{}",
        parked[0].error
    );
    assert_eq!(setup.db.outbox_len(), 0);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_schema_id_and_a_type_mismatch_follow_the_failure_policy() {
    let setup = setup("avro_poison").await;
    let config = setup.config(true);
    let dlq_config = config.clone();
    let runtime = procon::start(config).unwrap();
    // Poison 1: an id the registry never gave.
    let unknown_id = procon::avro::frame(999, b"\x02\x00");
    produce_raw(
        &brokers(),
        &setup.topic,
        "1",
        &unknown_id,
        &[
            ("procon-event", "account.created"),
            ("procon-event-id", &uuid::Uuid::now_v7().to_string()),
        ],
    )
    .await;
    // Poison 2: a real schema and datum, whose `seq` is a string the handler's i64 refuses.
    let old = procon::avro::apache_avro::Schema::parse_str(SEQ_AS_STRING).unwrap();
    let old_id = setup.registry.register("someone-else-value", SEQ_AS_STRING);
    use procon::avro::apache_avro::types::Value;
    let payload = Value::Record(vec![
        ("id".into(), Value::Long(1)),
        ("owner_name".into(), Value::String("o".into())),
        ("seq".into(), Value::String("two".into())),
    ]);
    let envelope = Value::Record(vec![
        ("schema_version".into(), Value::Int(1)),
        (
            "event_id".into(),
            Value::String(uuid::Uuid::now_v7().to_string()),
        ),
        ("event".into(), Value::String("account.created".into())),
        ("entity".into(), Value::String("account".into())),
        ("kind".into(), Value::String("created".into())),
        ("key".into(), Value::String("1".into())),
        (
            "occurred_at".into(),
            Value::TimestampMicros(1_700_000_000_000_000),
        ),
        ("before".into(), Value::Union(0, Box::new(Value::Null))),
        ("after".into(), Value::Union(1, Box::new(payload))),
        ("metadata".into(), Value::Map(Default::default())),
        ("traceparent".into(), Value::Union(0, Box::new(Value::Null))),
    ]);
    let datum = procon::avro::apache_avro::to_avro_datum(&old, envelope).unwrap();
    produce_raw(
        &brokers(),
        &setup.topic,
        "1",
        &procon::avro::frame(old_id, &datum),
        &[
            ("procon-event", "account.created"),
            ("procon-event-id", &uuid::Uuid::now_v7().to_string()),
        ],
    )
    .await;
    // Then a good event on the same key: it is applied once the poison is settled.
    setup.emit(&[account(1, 7)]);
    common::wait_for("the good event behind the poison to apply", LONG, || {
        (seen(&setup.db).len() == 1).then_some(())
    });
    let dlq = format!("{}.dlq", setup.topic);
    let letters = common::wait_for("both poison messages to be dead-lettered", LONG, || {
        let letters = procon::dead_letters(&dlq_config, &dlq, Duration::from_secs(5)).ok()?;
        (letters.len() == 2).then_some(letters)
    });
    let errors: Vec<&str> = letters.iter().map(|l| l.error().unwrap_or("")).collect();
    assert!(
        errors[0].contains("schema id 999") && errors[0].contains("40403"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("cannot decode the payload"),
        "{errors:?}"
    );
    runtime.shutdown().await.unwrap();
}

#[test]
fn the_registry_client_says_what_the_registry_answered() {
    let registry = FakeRegistry::start();
    let client = RegistryClient::new(&registry.url, Duration::from_millis(500));
    let unknown = client.schema(42).unwrap_err();
    assert!(
        matches!(unknown, RegistryError::SchemaNotFound { .. }),
        "{unknown}"
    );
    assert!(!unknown.is_outage());
    assert!(client.latest("nobody-value").unwrap().is_none());
    assert!(client.versions("nobody-value").unwrap().is_empty());
    assert_eq!(client.lookup("nobody-value", SEQ_AS_STRING).unwrap(), None);
    let invalid = client
        .register("s-value", "{\"type\": \"nonsense\"}")
        .unwrap_err();
    assert!(
        matches!(invalid, RegistryError::Invalid { code: 42201, .. }),
        "{invalid}"
    );

    let id = client.register("s-value", SEQ_AS_STRING).unwrap();
    assert_eq!(client.lookup("s-value", SEQ_AS_STRING).unwrap(), Some(id));
    let model = AvroAccount::avro_model().unwrap().unwrap();
    let incompatible = client.register("s-value", &model.text).unwrap_err();
    assert!(
        matches!(incompatible, RegistryError::Incompatible { .. }),
        "{incompatible}"
    );
    let report = client.check("s-value", &model.text).unwrap();
    assert!(
        !report.compatible && !report.messages.is_empty(),
        "{report:?}"
    );

    // Once fetched, a schema is not asked again: an outage does not affect it.
    client.schema(id).unwrap();
    registry.set_outage(true);
    client.schema(id).unwrap();
    let outage = client.schema(id + 1).unwrap_err();
    assert!(outage.is_outage(), "{outage}");
    assert!(outage.to_string().contains("503"), "{outage}");
    registry.set_outage(false);

    registry.set_delay(Some(Duration::from_secs(2)));
    let timeout = client.subjects().unwrap_err();
    assert!(timeout.is_outage(), "{timeout}");
    registry.set_delay(None);
    assert_eq!(client.subjects().unwrap(), vec!["s-value".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_waits_out_a_registry_outage_without_counting_failures() {
    let setup = setup("avro_consumer_outage").await;
    // Published while the registry is up, by a relay alone.
    let relay = procon::start(setup.config(false)).unwrap();
    let accounts: Vec<AvroAccount> = (0..4).map(|id| account(id, 1)).collect();
    setup.emit(&accounts);
    common::wait_for("the relay to publish", LONG, || {
        (setup.db.outbox_len() == 0).then_some(())
    });
    relay.shutdown().await.unwrap();

    // The consumer starts during an outage: it cannot fetch the writer's schema. With two
    // attempts before dead-lettering, counting the outage as failures would lose the events
    // to the dead-letter topic.
    setup.registry.set_outage(true);
    let asked = setup.registry.requests();
    let mut config = setup.config(true);
    config.relay.enabled = false;
    let consumer = procon::start(config).unwrap();
    common::wait_for(
        "the consumer to ask the registry again and again",
        LONG,
        || (setup.registry.requests() >= asked + 4).then_some(()),
    );
    assert!(seen(&setup.db).is_empty());
    let failures = common::db::count(&mut setup.db.conn(), "procon_consumer_failures");
    assert_eq!(failures, 0, "an outage is not the event's failure");

    setup.registry.set_outage(false);
    common::wait_for(
        "every event to apply once the registry is back",
        LONG,
        || (seen(&setup.db).len() == accounts.len()).then_some(()),
    );
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_registry_holds_only_the_events_that_need_it() {
    let setup = setup("avro_slow_registry").await;
    let json_topic = unique_topic("avro-slow-json");
    create_topic(&brokers(), &json_topic, 1).await;
    let mut config = setup.config(false);
    config.schema_registry.timeout = Duration::from_secs(10);
    config
        .relay
        .topics
        .insert("accounts".into(), json_topic.clone());
    // Every registry answer takes 3 s.
    setup.registry.set_delay(Some(Duration::from_secs(3)));
    let runtime = procon::start(config).unwrap();
    setup.emit(&[account(1, 1)]);
    let json: Vec<common::model::Account> = (0..20)
        .map(|id| common::model::Account {
            id,
            owner: format!("o{id}"),
            seq: 1,
            secret: String::new(),
        })
        .collect();
    let mut conn = setup.db.conn();
    conn.transaction(|conn| procon::emit_all(conn, json.iter().map(OutboxEvent::created)))
        .unwrap();
    // The JSON events are published while the Avro one still waits for the registry's answer.
    let mut collector = Collector::new(&brokers(), &json_topic, 1);
    collector.at_least(json.len(), LONG);
    assert_eq!(
        setup.db.outbox_len(),
        1,
        "the Avro event waits for its schema id"
    );
    common::wait_for("the Avro event once the registry answered", LONG, || {
        (setup.db.outbox_len() == 0).then_some(())
    });
    runtime.shutdown().await.unwrap();
}

/// An Avro model written by hand whose schema says `id` is a string: its events cannot be
/// encoded.
struct Mismatched(AvroAccount);

impl procon::Outbox for Mismatched {
    const ENTITY: &'static str = "account";
    fn topic(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(AVRO_TOPIC)
    }
    fn key(&self) -> String {
        self.0.id.to_string()
    }
    fn serialize_payload<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
    fn avro_model(
    ) -> Option<Result<&'static procon::avro::AvroModel, procon::avro::AvroSchemaError>> {
        use procon::avro::apache_avro::schema::derive::AvroSchemaComponent;
        Some(procon::avro::AvroModel::of::<Self>(|| {
            procon::avro::payload_record("Mismatched", None, |names, ns| {
                vec![("id", String::get_schema_in_ctxt(names, ns))]
            })
        }))
    }
}

#[test]
fn an_event_its_schema_cannot_encode_is_refused_at_emit_and_writes_nothing() {
    let db = TestDb::new("avro_mismatch");
    let mut conn = db.conn();
    let result =
        conn.transaction(|conn| OutboxEvent::created(&Mismatched(account(1, 1))).emit(conn));
    let error = result.unwrap_err();
    assert!(
        matches!(error, procon::EmitError::AvroEncode { .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("account.created") && text.contains("Avro"),
        "{text}"
    );
    assert_eq!(db.outbox_len(), 0);
    assert_eq!(common::db::count(&mut conn, "procon_schemas"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_auto_registration_events_wait_until_the_schema_is_registered() {
    let setup = setup("avro_no_auto_register").await;
    let mut config = setup.config(false);
    config.schema_registry.auto_register = false;
    // Were an unregistered schema a rejection, the first attempt would park the event.
    config.relay.park_after_attempts = 1;
    let runtime = procon::start(config).unwrap();
    setup.emit(&[account(1, 1), account(1, 2)]);
    common::wait_for("the relay to look the schema up twice", LONG, || {
        (setup.registry.requests() >= 2).then_some(())
    });
    assert_eq!(setup.db.outbox_len(), 2);
    assert!(procon::parked_rows(&mut setup.db.conn())
        .unwrap()
        .is_empty());
    assert!(
        setup.registry.subjects().is_empty(),
        "the relay registered nothing"
    );

    let register = procon_cli(&["register"], &setup.registry.url, &setup.topic);
    assert!(register.status.success(), "{register:?}");
    common::wait_for("the events once their schema is registered", LONG, || {
        (setup.db.outbox_len() == 0).then_some(())
    });
    runtime.shutdown().await.unwrap();
}
