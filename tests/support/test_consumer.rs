//! A consumer service process for tests that kill it: applies `ledger` events with the
//! handlers of `tests/common/ledger.rs`. Configured from the environment (`PROCON_*`).

#[path = "../common/ledger.rs"]
mod ledger;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut config = procon::Config::from_env()?;
    if let Ok(topic) = std::env::var("LEDGER_TOPIC") {
        config
            .consumer
            .topics
            .insert(ledger::TOPIC.to_owned(), topic);
    }
    procon::start(config)?.run_until_signal().await?;
    Ok(())
}
