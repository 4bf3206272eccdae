//! The operator CLI against real PostgreSQL: `init` writes migrations a fresh schema accepts and
//! a settings template, refusing to overwrite; `--json` output for scripts; errors that say what
//! to do. (The commands that act on the outbox and the consumers are exercised where their
//! features are: `parked` in relay_at_scale.rs, `stopped` and `resume` in failure_policy.rs.)

mod common;

use common::db::TestDb;
use diesel::connection::SimpleConnection;

fn procon(args: &[&str], database_url: Option<&str>) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_procon-test-cli"));
    command
        .args(args)
        .env_remove("PROCON_DATABASE_URL")
        .env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        command.env("PROCON_DATABASE_URL", url);
    }
    command.output().expect("run procon")
}

#[test]
fn init_writes_migrations_a_fresh_schema_accepts_and_never_overwrites() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("procon-init-{}", uuid::Uuid::now_v7().simple()));
    let out = procon(&["init", "--dir", dir.to_str().unwrap()], None);
    assert!(out.status.success(), "{out:?}");
    let sql = std::fs::read_to_string(dir.join("procon-migrations.sql")).unwrap();
    let settings = std::fs::read_to_string(dir.join("procon.env")).unwrap();
    assert!(settings.contains("PROCON_DATABASE_URL="), "{settings}");
    // Applied by hand to an empty schema, the SQL makes procon's tables.
    let db = TestDb::empty("cli_init");
    let mut conn = db.conn();
    conn.batch_execute(&sql).expect("the SQL applies");
    assert_eq!(common::db::count(&mut conn, "procon_outbox"), 0);
    assert_eq!(common::db::count(&mut conn, "procon_kinesis_leases"), 0);
    // A second run refuses to overwrite what the first wrote.
    let again = procon(&["init", "--dir", dir.to_str().unwrap()], None);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}

#[test]
fn json_output_is_one_document_and_a_missing_database_says_what_to_set() {
    let db = TestDb::new("cli_json");
    let out = procon(&["stopped", "--json"], Some(&db.url));
    assert!(out.status.success(), "{out:?}");
    let stopped: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stopped, serde_json::json!([]));
    let out = procon(&["status", "--json"], Some(&db.url));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["outbox"]["waiting"], 0, "{status}");

    let out = procon(&["status"], None);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("PROCON_DATABASE_URL"), "{error}");
    let out = procon(
        &["status"],
        Some("postgres://someone:hunter2@127.0.0.1:1/nowhere"),
    );
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("cannot connect"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}
