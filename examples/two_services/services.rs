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

/// The accounts service publishes; it runs no consumer.
pub fn accounts_config(url: &str, brokers: &str) -> procon::Config {
    let mut config = procon::Config::new(url, brokers).service_name("accounts");
    config.consumer.enabled = false;
    config
}

/// The billing service consumes `accounts` (mapped to `accounts_topic`) as group `group`.
pub fn billing_config(
    url: &str,
    brokers: &str,
    group: &str,
    accounts_topic: &str,
) -> procon::Config {
    let mut config = procon::Config::new(url, brokers).service_name(group);
    config
        .consumer
        .topics
        .insert("accounts".into(), accounts_topic.into());
    config
}
