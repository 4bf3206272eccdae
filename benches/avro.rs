//! Scenario 10: Avro vs JSON in the same run: the relay draining `BENCH_AVRO_EVENTS` (default
//! 20,000) events of the benchmark's item model in each format, the exactly-once consumer
//! applying each topic (batches of 100, 8 processors, one insert per event), and each format's
//! message size. `BENCH_ONLY=avro` runs only it.
//!
//! The schema registry is the test suite's (tests/common/registry.rs, Confluent's REST API):
//! no registry server installs on these machines. It is asked once per schema by the relay and
//! once per schema id by the consumer; every event after that is encoded and decoded with the
//! cached schema, so what is measured is procon's Avro path, not the registry.

use std::time::Instant;

use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use procon::avro::apache_avro::schema::derive::AvroSchemaComponent;
use procon::avro::{payload_record, AvroModel, AvroSchemaError};

use super::registry::FakeRegistry;
use super::{create_topic, env_or, exactly_once_consumer_with, until_drained, BoxError, KEYS};

/// The benchmark's item (`super::Item`), published as Avro.
struct AvroItem(super::Item);

impl procon::Outbox for AvroItem {
    const ENTITY: &'static str = "item";
    fn topic(&self) -> std::borrow::Cow<'_, str> {
        self.0.topic()
    }
    fn key(&self) -> String {
        self.0.key()
    }
    fn serialize_payload<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
    fn avro_model() -> Option<Result<&'static AvroModel, AvroSchemaError>> {
        Some(AvroModel::of::<Self>(|| {
            payload_record("Item", Some("procon.bench"), |names, ns| {
                vec![
                    ("id", i64::get_schema_in_ctxt(names, ns)),
                    ("seq", i64::get_schema_in_ctxt(names, ns)),
                    ("name", String::get_schema_in_ctxt(names, ns)),
                ]
            })
        }))
    }
}

/// Emits `count` items to `topic` in transactions of 1,000 (`emit_all`), as Avro or JSON;
/// events/s.
fn fill(conn: &mut PgConnection, topic: &str, count: i64, avro: bool) -> Result<f64, BoxError> {
    use diesel::Connection;
    let started = Instant::now();
    for chunk in 0..(count + 999) / 1000 {
        let items = (chunk * 1000..((chunk + 1) * 1000).min(count)).map(|i| super::Item {
            topic: topic.to_owned(),
            id: i % KEYS,
            seq: i / KEYS,
        });
        conn.transaction(|conn| -> Result<(), procon::EmitError> {
            if avro {
                let items: Vec<AvroItem> = items.map(AvroItem).collect();
                procon::emit_all(conn, items.iter().map(procon::OutboxEvent::created))?;
            } else {
                let items: Vec<super::Item> = items.collect();
                procon::emit_all(conn, items.iter().map(procon::OutboxEvent::created))?;
            }
            Ok(())
        })?;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The bytes one event takes on the wire: the JSON envelope, or 5 framing bytes and the datum.
fn message_size(conn: &mut PgConnection) -> Result<i64, BoxError> {
    #[derive(QueryableByName)]
    struct Size {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    Ok(diesel::sql_query(
        "SELECT (CASE WHEN avro_schema IS NULL THEN octet_length(payload::text) \
                ELSE 5 + octet_length(raw_payload) END)::bigint AS n \
         FROM procon_outbox ORDER BY id LIMIT 1",
    )
    .get_result::<Size>(conn)?
    .n)
}

/// Drains the outbox with a relay of `config`: events/s.
async fn drain(
    config: procon::Config,
    conn: &mut PgConnection,
    count: i64,
) -> Result<f64, BoxError> {
    let runtime = procon::start(config)?;
    let started = Instant::now();
    until_drained(conn, std::time::Duration::from_millis(10)).await?;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    runtime.shutdown().await?;
    Ok(rate)
}

pub async fn scenario(
    url: &str,
    brokers: &str,
    conn: &mut PgConnection,
    run: &str,
) -> Result<(), BoxError> {
    let count: i64 = env_or("BENCH_AVRO_EVENTS", "20000").parse()?;
    let registry = FakeRegistry::start();
    let mut config = super::relay_only(url, brokers);
    config.schema_registry.url = Some(registry.url.clone());
    println!("Avro vs JSON: {count} events of the item model, {KEYS} keys, emit_all by 1,000");
    let mut results = Vec::new();
    for (format, avro) in [("JSON", false), ("Avro", true)] {
        let topic = format!("bench-{}-{run}", format.to_lowercase());
        create_topic(brokers, &topic).await?;
        let emitted = fill(conn, &topic, count, avro)?;
        let size = message_size(conn)?;
        let relayed = drain(config.clone(), conn, count).await?;
        let mut consumer = config.clone();
        consumer.consumer.enabled = true;
        let applied = exactly_once_consumer_with(consumer, conn, &topic, count, 100, 8).await?;
        println!(
            "{format:<5} emit {emitted:>7.0}/s   relay {relayed:>7.0}/s   exactly-once consumer {applied:>7.0}/s   {size} bytes per message"
        );
        results.push((emitted, relayed, applied, size));
    }
    let (json, avro) = (results[0], results[1]);
    println!(
        "Avro / JSON:  emit {:.2}x   relay {:.2}x   consumer {:.2}x   size {:.2}x",
        avro.0 / json.0,
        avro.1 / json.1,
        avro.2 / json.2,
        avro.3 as f64 / json.3 as f64
    );
    Ok(())
}
