//! Two services, one PostgreSQL, one broker: `accounts` publishes account events through its
//! outbox; `billing` applies them exactly once to its own `customers` table.
//!
//! ```sh
//! cargo run --example two_services
//! ```
//!
//! Uses `PROCON_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`; schemas
//! `demo_accounts` and `demo_billing`) and `PROCON_BROKERS` (default: an in-process mock
//! cluster). With `PROCON_TRANSPORT=kinesis` the same services run on Kinesis: a stream of the
//! run's own at `PROCON_KINESIS_ENDPOINT_URL` (default: the emulator of
//! `scripts/kinesis.sh start`).

mod accounts;
mod billing;
mod services;

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    // Each run publishes to a topic of its own, so billing (which starts from the beginning of
    // it) never meets an earlier run's events, nor the quickstart's `accounts`.
    let topic = format!("demo.accounts.{}", uuid::Uuid::now_v7().simple());
    let mock;
    let brokers = match std::env::var("PROCON_BROKERS") {
        _ if services::kinesis_settings().is_some() => {
            let settings = services::kinesis_settings().unwrap_or_default();
            let client = procon::runtime::transport::kinesis::client(&settings)?;
            procon::runtime::transport::kinesis::ensure_stream(
                &client,
                &topic,
                2,
                Duration::from_secs(10),
            )
            .await
            .map_err(|error| {
                format!("Kinesis: {error} (the emulator: scripts/kinesis.sh start)")
            })?;
            String::new()
        }
        Ok(brokers) => {
            services::create_topic(&brokers, &topic).await?;
            brokers
        }
        Err(_) => {
            mock = MockCluster::new(1)?;
            mock.create_topic(&topic, 3, 1)?;
            println!("no PROCON_BROKERS set: using librdkafka's in-process mock cluster");
            mock.bootstrap_servers()
        }
    };
    let base = std::env::var("PROCON_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let accounts_url = services::prepare_schema(&base, "demo_accounts", accounts::SCHEMA)?;
    let billing_url = services::prepare_schema(&base, "demo_billing", billing::SCHEMA)?;

    let accounts_service =
        procon::start(services::accounts_config(&accounts_url, &brokers, &topic))?;
    let billing_service = procon::start(services::billing_config(
        &billing_url,
        &brokers,
        "billing",
        &topic,
    ))?;

    let mut conn = diesel::Connection::establish(&accounts_url)?;
    accounts::open(&mut conn, 1, "ada@example.com")?;
    accounts::open(&mut conn, 2, "grace@example.com")?;
    accounts::change_plan(&mut conn, 1, "pro")?;
    accounts::open(&mut conn, 3, "alan@example.com")?;
    accounts::change_plan(&mut conn, 3, "team")?;
    accounts::close(&mut conn, 2)?;
    println!("accounts: opened 1, 2, 3; 1 → pro, 3 → team; closed 2");

    let mut billing_conn = diesel::Connection::establish(&billing_url)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let customers = loop {
        let customers = billing::customers(&mut billing_conn)?;
        let settled = customers
            .iter()
            .map(|c| (c.account_id, c.plan.as_str()))
            .collect::<Vec<_>>()
            == [(1, "pro"), (3, "team")];
        if settled || Instant::now() > deadline {
            break customers;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("billing.customers:");
    for customer in &customers {
        println!(
            "  {:>2}  {:<20} {:<5} {:>6.2} €/month",
            customer.account_id,
            customer.email,
            customer.plan,
            customer.monthly_fee_cents as f64 / 100.0
        );
    }
    billing_service.shutdown().await?;
    accounts_service.shutdown().await?;
    if customers.len() != 2 {
        return Err("billing did not converge within 60 s".into());
    }
    Ok(())
}
