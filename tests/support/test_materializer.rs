//! Service B of the materialize chain test, as a process the test can kill: materializes
//! accounts (`tests/common/customers.rs`) and replies through its outbox, which its own relay
//! publishes. Configured from the environment (`PROCON_*`, `ACCOUNTS_TOPIC`, `REPLIES_TOPIC`).

#[path = "../common/customers.rs"]
mod customers;
#[path = "../common/ledger.rs"]
mod ledger;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut config = procon::Config::from_env()?;
    let accounts = std::env::var("ACCOUNTS_TOPIC")?;
    let replies = std::env::var("REPLIES_TOPIC")?;
    let unused = std::env::var("LEDGER_TOPIC")?;
    config
        .consumer
        .topics
        .insert(customers::ACCOUNTS_TOPIC.to_owned(), accounts);
    config
        .consumer
        .topics
        .insert(ledger::TOPIC.to_owned(), unused);
    *customers::REPLY_TOPIC
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(replies);
    procon::start(config)?.run_until_signal().await?;
    Ok(())
}
