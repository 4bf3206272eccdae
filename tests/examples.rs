//! The examples as a new user runs them: against the test broker, twice, in both orders (each
//! reads what it wrote, whatever the topic holds from earlier runs or from the other example).
//! `.ci/run` also runs the quickstart once on librdkafka's mock cluster. On Kinesis (the
//! emulator) the quickstart runs twice and the two services once, with one variable set.

mod common;

use std::process::Command;
use std::sync::Mutex;

/// The examples recreate their schemas: one example process at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The example binaries cargo built next to this test binary.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    profile_dir.join("examples").join(name)
}

fn run(name: &str) {
    let output = Command::new(example(name))
        .env("PROCON_BROKERS", common::broker::brokers())
        .env("PROCON_DATABASE_URL", common::db::base_url())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("run example {name}: {e}"));
    assert!(
        output.status.success(),
        "example {name} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn both_examples_work_on_the_test_broker_twice_in_both_orders() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for name in ["quickstart", "two_services", "two_services", "quickstart"] {
        run(name);
    }
}

#[test]
fn the_two_services_run_on_kinesis_with_one_variable_set() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let output = Command::new(example("two_services"))
        .env("PROCON_TRANSPORT", "kinesis")
        .env("PROCON_KINESIS_ENDPOINT_URL", common::kinesis::endpoint())
        .env("PROCON_DATABASE_URL", common::db::base_url())
        .output()
        .expect("run two_services");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "two_services on Kinesis failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Billing applied the account events it read from the stream exactly as on Kafka.
    assert!(stdout.contains("ada@example.com"), "{stdout}");
    assert!(stdout.contains("team"), "{stdout}");
    assert!(
        !stdout.contains("grace@example.com"),
        "account 2 was closed: {stdout}"
    );
}

#[test]
fn the_quickstart_runs_on_kinesis_with_one_variable_set_twice() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..2 {
        let output = Command::new(example("quickstart"))
            .env("PROCON_TRANSPORT", "kinesis")
            .env("PROCON_KINESIS_ENDPOINT_URL", common::kinesis::endpoint())
            .env("PROCON_DATABASE_URL", common::db::base_url())
            .env_remove("PROCON_BROKERS")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the quickstart");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stdout.matches("procon-event-id: ").count(), 3, "{stdout}");
        assert!(stdout.contains("account.deleted"), "{stdout}");
    }
}
