//! The admin page in a real browser (Debian's Chromium driven by playwright-core, both installed
//! by `scripts/browser.sh`), against real PostgreSQL and the test broker: a poison event stops
//! its key, the page shows the stop with its error, the operator signs in with the token and
//! clicks Skip, and the key flows again. Actions without the token, or from another site, are
//! refused. Screenshots of the overview and of the stop are written to the target directory
//! (the README's copies are in docs/img/).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic};
use common::db::TestDb;
use common::ledger::{effects, CreditOut, Entry, Out, PoisonOut};
use diesel::Connection;
use procon::OutboxExt;

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "an-admin-token-for-tests";

struct OnPoison;

impl procon::EventHandler for OnPoison {
    const TOPIC: &'static str = common::ledger::TOPIC;
    const EVENT: &'static str = "poison.created";
    type Payload = Entry;
    fn handle(
        _: &mut procon::HandlerContext<'_>,
        _: procon::Event<Entry>,
    ) -> Result<(), procon::HandlerError> {
        Err(procon::HandlerError::msg(
            "poison pill: this event can never be applied",
        ))
    }
}
procon::register_handler!(OnPoison);

async fn post(bind: SocketAddr, path: &str, headers: &str, body: &str) -> u16 {
    common::http::post_form(bind, path, headers, body).await.0
}

/// The playwright-core package folder, installed (with Chromium) by `scripts/browser.sh`.
fn playwright() -> String {
    let out =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/browser.sh"))
            .arg("install")
            .output()
            .expect("run scripts/browser.sh");
    assert!(out.status.success(), "scripts/browser.sh install: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const SCRIPT: &str = r#"
const [pkg, url, token, out] = process.argv.slice(2);
const { chromium } = require(pkg);
(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(url);
  await page.screenshot({ path: out + '/admin-overview.png', fullPage: true });
  const row = page.locator('#stops tr', { hasText: 'poison' });
  console.log('STOP_ROW ' + JSON.stringify(await row.innerText()));
  console.log('ACTIONS_BEFORE_SIGN_IN ' + await page.locator('#stops button').count());
  await page.fill('input[name=token]', token);
  await page.click('button:has-text("Sign in")');
  await page.waitForSelector('#notice');
  await page.screenshot({ path: out + '/admin-stopped.png', fullPage: true });
  await page.click('#stops tr:has-text("poison") button:has-text("Skip")');
  await page.waitForSelector('#notice');
  console.log('NOTICE ' + JSON.stringify(await page.locator('#notice').innerText()));
  await browser.close();
})().catch((error) => { console.error(error); process.exit(1); });
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_key_is_shown_with_its_error_and_skipped_from_the_page() {
    common::init_logs();
    let package = playwright();
    let db = TestDb::new("admin_page");
    common::ledger::create_effects(&mut db.conn());
    let topic = unique_topic("admin-page");
    create_topic(&brokers(), &topic, 1).await;
    let out = |seq| Out {
        entity_topic: topic.clone(),
        entry: Entry { account: 1, seq },
    };
    db.conn()
        .transaction(|conn| {
            PoisonOut(out(1)).emit_created(conn)?;
            CreditOut(out(2)).emit_created(conn)
        })
        .unwrap();
    let group = unique_topic("admin-page-group");
    let mut config = common::consumer_config(&db, &brokers(), &group, &topic);
    config.consumer.failure.max_attempts = 2;
    config.consumer.failure.exhausted = procon::Exhausted::Stop;
    config.consumer.failure.backoff.initial = Duration::from_millis(50);
    let bind = common::http::admin_on(&mut config, Some(TOKEN));
    let runtime = procon::start(config).unwrap();
    common::wait_for("the poison event to stop its key", LONG, || {
        runtime.stalled_partitions().into_iter().find(|s| s.stopped)
    });

    // Without the token, or from another site with it, nothing is resumed.
    let form = format!("topic={topic}&partition=0&lane=key%3A1&how=skip");
    assert_eq!(post(bind, "/actions/resume", "", &form).await, 403);
    let forged = format!("Origin: https://evil.example\r\nCookie: procon_admin={TOKEN}\r\n");
    assert_eq!(post(bind, "/actions/resume", &forged, &form).await, 403);
    assert_eq!(runtime.stalled_partitions().len(), 1, "still stopped");

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-page");
    std::fs::create_dir_all(&shots).unwrap();
    let script = shots.join("drive.js");
    std::fs::write(&script, SCRIPT).unwrap();
    let (url, dir) = (format!("http://{bind}/"), shots.clone());
    // Blocking: the browser's requests are served by this test's runtime meanwhile.
    let driven = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(&script)
            .args([package.as_str(), url.as_str(), TOKEN])
            .arg(&dir)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&driven.stdout);
    assert!(
        driven.status.success(),
        "the browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&driven.stderr)
    );
    assert!(
        stdout.contains("STOP_ROW")
            && stdout.contains("poison pill: this event can never be applied"),
        "the page shows the stop with its error:\n{stdout}"
    );
    assert!(stdout.contains("ACTIONS_BEFORE_SIGN_IN 0"), "{stdout}");
    assert!(stdout.contains("resumed (skip)"), "{stdout}");
    common::wait_for("the key to flow again", LONG, || {
        let seqs: Vec<i64> = effects(&mut db.conn()).iter().map(|e| e.seq).collect();
        (seqs == [2]).then_some(())
    });
    for shot in ["admin-overview.png", "admin-stopped.png"] {
        let bytes = std::fs::read(shots.join(shot)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{shot} is a PNG");
    }
    runtime.shutdown().await.unwrap();
}
