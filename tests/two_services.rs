//! The two-services example's code against real PostgreSQL and the real broker: billing's
//! `customers` ends up equal to the accounts service's `accounts`, one effect per event.

mod common;

#[path = "../examples/two_services/accounts.rs"]
mod accounts;
#[path = "../examples/two_services/billing.rs"]
mod billing;
#[path = "../examples/two_services/services.rs"]
mod services;

use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic, TEST_CONSUMER_SETTINGS};
use diesel::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn billing_materializes_the_accounts_it_is_told_about() {
    common::init_logs();
    let base = common::db::base_url();
    let accounts_url = services::prepare_schema(&base, "t_two_accounts", accounts::SCHEMA).unwrap();
    let billing_url = services::prepare_schema(&base, "t_two_billing", billing::SCHEMA).unwrap();
    let topic = unique_topic("two-services-accounts");
    create_topic(&brokers(), &topic, 4).await;

    // The derived model publishes to `accounts`; this test's accounts go to a topic of its own.
    let accounts_config = services::accounts_config(&accounts_url, &brokers(), &topic);
    let accounts_service = procon::start(accounts_config).unwrap();
    let mut billing_config =
        services::billing_config(&billing_url, &brokers(), &unique_topic("billing"), &topic);
    for (name, value) in TEST_CONSUMER_SETTINGS {
        billing_config
            .consumer
            .kafka
            .insert(name.into(), value.into());
    }
    let billing_service = procon::start(billing_config).unwrap();

    let mut conn = PgConnection::establish(&accounts_url).unwrap();
    let plans = ["free", "pro", "team"];
    for id in 0..120 {
        accounts::open(&mut conn, id, &format!("user{id}@example.com")).unwrap();
    }
    for id in 0..120 {
        accounts::change_plan(&mut conn, id, plans[(id % 3) as usize]).unwrap();
        if id % 4 == 0 {
            accounts::close(&mut conn, id).unwrap();
        }
    }
    let expected: Vec<(i64, String)> = accounts::accounts::table
        .select((accounts::accounts::id, accounts::accounts::plan))
        .order(accounts::accounts::id)
        .load(&mut conn)
        .unwrap();
    assert_eq!(expected.len(), 90);

    let mut billing_conn = PgConnection::establish(&billing_url).unwrap();
    common::wait_for("billing to converge", Duration::from_secs(90), || {
        let customers = billing::customers(&mut billing_conn).unwrap();
        let got: Vec<(i64, String)> = customers
            .iter()
            .map(|c| (c.account_id, c.plan.clone()))
            .collect();
        (got == expected).then_some(())
    });
    billing_service.shutdown().await.unwrap();
    accounts_service.shutdown().await.unwrap();
}
