//! Running the two services against one PostgreSQL (a schema each) and one broker.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

/// One service's database: a fresh schema with procon's tables and the service's own.
pub fn prepare_schema(
    base_url: &str,
    schema: &str,
    service_sql: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    PgConnection::establish(base_url)?.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
    ))?;
    let separator = if base_url.contains('?') { '&' } else { '?' };
    let url = format!("{base_url}{separator}options=-csearch_path%3D{schema}");
    let mut conn = PgConnection::establish(&url)?;
    procon::migrate(&mut conn)?;
    conn.batch_execute(service_sql)?;
    Ok(url)
}

/// With `PROCON_TRANSPORT=kinesis`: the Kinesis settings (`PROCON_KINESIS_ENDPOINT_URL`, by
/// default the emulator of `scripts/kinesis.sh start`); `None` on Kafka.
pub fn kinesis_settings() -> Option<procon::KinesisConfig> {
    (std::env::var("PROCON_TRANSPORT").as_deref() == Ok("kinesis")).then(|| procon::KinesisConfig {
        endpoint_url: Some(
            std::env::var("PROCON_KINESIS_ENDPOINT_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:4568".into()),
        ),
        ..procon::KinesisConfig::default()
    })
}

/// A service's settings on the chosen transport: the same code runs on Kafka and Kinesis.
fn on_transport(url: &str, brokers: &str) -> procon::Config {
    match kinesis_settings() {
        Some(kinesis) => procon::Config::new_kinesis(url, kinesis),
        None => procon::Config::new(url, brokers),
    }
}

/// The accounts service publishes `accounts` to `accounts_topic`; it runs no consumer.
pub fn accounts_config(url: &str, brokers: &str, accounts_topic: &str) -> procon::Config {
    let mut config = on_transport(url, brokers).service_name("accounts");
    config.consumer.enabled = false;
    config
        .relay
        .topics
        .insert("accounts".into(), accounts_topic.into());
    config
}

/// Creates `topic` (3 partitions) on `brokers`, as an operator would before deploying.
#[allow(dead_code)] // the example's `main` uses it; tests/two_services.rs shares this file
pub async fn create_topic(
    brokers: &str,
    topic: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(10)));
    for result in admin
        .create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &options,
        )
        .await?
    {
        result.map_err(|(name, code)| format!("creating topic {name}: {code}"))?;
    }
    Ok(())
}

/// The billing service consumes `accounts` (mapped to `accounts_topic`) as group `group`.
pub fn billing_config(
    url: &str,
    brokers: &str,
    group: &str,
    accounts_topic: &str,
) -> procon::Config {
    let mut config = on_transport(url, brokers).service_name(group);
    config
        .consumer
        .topics
        .insert("accounts".into(), accounts_topic.into());
    config
}
