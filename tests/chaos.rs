//! Chaos: 20,000 events flow from a writer through `procon relay` processes and the broker
//! into consumer processes while, at seeded random moments, the relay and the consumer are
//! killed with SIGKILL (several times each), the broker is cut off for a few seconds and
//! PostgreSQL is restarted. At the end every event has exactly one effect, in key order.
//!
//! The seed is printed; `PROCON_CHAOS_SEED=<seed>` replays the same fault plan (same moments,
//! same order; the processes' own timing still varies). `PROCON_CHAOS_EVENTS` sets the number of
//! events (default 20,000; the consumers run the pipeline with its default 8 processors).

mod common;

use std::process::Child;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::broker::{create_topic, unique_topic, Collector};
use common::db::TestDb;
use common::ledger::{effects, CreditOut, Entry, Out};
use diesel::{Connection, PgConnection};
use procon::prelude::*;

const KEYS: i64 = 50;
const PER_TRANSACTION: i64 = 100;
/// Faults happen within this window after the start; the writer spreads its events over it.
const FAULT_WINDOW: Duration = Duration::from_secs(24);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// How many events flow (`PROCON_CHAOS_EVENTS`, default 20,000).
fn events() -> i64 {
    std::env::var("PROCON_CHAOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillRelay,
    KillConsumer,
    CutBroker(Duration),
    RestartPostgres,
}

/// The fault plan of `seed`: three relay kills, three consumer kills, one broker cut of 2–4 s
/// and one PostgreSQL restart, at random moments of the fault window, in time order.
fn plan(seed: u64) -> Vec<(Duration, Fault)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut faults = vec![
        Fault::KillRelay,
        Fault::KillRelay,
        Fault::KillRelay,
        Fault::KillConsumer,
        Fault::KillConsumer,
        Fault::KillConsumer,
        Fault::CutBroker(Duration::from_millis(rng.u64(2000..4000))),
        Fault::RestartPostgres,
    ];
    rng.shuffle(&mut faults);
    let mut plan: Vec<(Duration, Fault)> = faults
        .into_iter()
        .map(|fault| {
            let at = rng.u64(1000..FAULT_WINDOW.as_millis() as u64);
            (Duration::from_millis(at), fault)
        })
        .collect();
    plan.sort_by_key(|(at, _)| *at);
    plan
}

fn restart_postgres() {
    // The cluster scripts/postgres.sh manages: `pg_ctlcluster <version> <name> restart`.
    let clusters = std::process::Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .expect("pg_lsclusters (PostgreSQL's Debian tools) must exist to restart PostgreSQL");
    let listing = String::from_utf8_lossy(&clusters.stdout);
    let cluster: Vec<&str> = listing
        .lines()
        .find(|line| line.split_whitespace().nth(2) == Some("5432"))
        .expect("a cluster on port 5432")
        .split_whitespace()
        .collect();
    let status = std::process::Command::new("pg_ctlcluster")
        .args([cluster[0], cluster[1], "restart"])
        .status()
        .expect("run pg_ctlcluster");
    assert!(status.success(), "restarting PostgreSQL failed");
}

struct Services {
    db_url: String,
    brokers: String,
    group: String,
    topic: String,
    relay: Child,
    consumer: Child,
    starts: usize,
}

impl Services {
    fn relay(&mut self) -> Child {
        self.starts += 1;
        let name = format!("chaos_relay_{}", self.starts);
        common::process::spawn_relay(&self.db_url, &self.brokers, &name)
    }

    fn consumer(&mut self) -> Child {
        self.starts += 1;
        let name = format!("chaos_consumer_{}", self.starts);
        common::process::spawn_consumer(
            &self.db_url,
            &self.brokers,
            &self.group,
            &self.topic,
            &name,
        )
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_every_event_has_exactly_one_effect_in_key_order() {
    common::init_logs();
    let seed = std::env::var("PROCON_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("chaos seed: {seed} (replay with PROCON_CHAOS_SEED={seed})");
    eprintln!("chaos seed: {seed} (replay with PROCON_CHAOS_SEED={seed})");
    let plan = plan(seed);
    println!("chaos plan: {plan:?}");
    let events = events();

    let db = TestDb::new("chaos");
    common::ledger::create_effects(&mut db.conn());
    let mut broker = common::proxy::PrivateBroker::start().await;
    let topic = unique_topic("chaos");
    create_topic(&broker.brokers, &topic, 4).await;
    let group = unique_topic("chaos-billing");
    let mut services = Services {
        db_url: db.url.clone(),
        brokers: broker.brokers.clone(),
        group: group.clone(),
        topic: topic.clone(),
        relay: common::process::spawn_relay(&db.url, &broker.brokers, "chaos_relay_0"),
        consumer: common::process::spawn_consumer(
            &db.url,
            &broker.brokers,
            &group,
            &topic,
            "chaos_consumer_0",
        ),
        starts: 0,
    };

    // The writer: one transaction of 100 events at a time, spread over the fault window. It
    // holds `writing` while a transaction runs, so the PostgreSQL restart never lands inside
    // a COMMIT (whose outcome would then be unknown to the writer).
    let writing = Arc::new(RwLock::new(()));
    let writer = {
        let (url, topic, writing) = (db.url.clone(), topic.clone(), writing.clone());
        std::thread::spawn(move || {
            let transactions = events / PER_TRANSACTION;
            let pause = FAULT_WINDOW / transactions as u32;
            let mut conn: Option<PgConnection> = None;
            let mut next = 0;
            while next < transactions {
                let guard = writing.read().unwrap();
                let connection = match conn.as_mut() {
                    Some(c) => c,
                    None => match PgConnection::establish(&url) {
                        Ok(c) => conn.insert(c),
                        Err(_) => {
                            drop(guard);
                            std::thread::sleep(Duration::from_millis(200));
                            continue;
                        }
                    },
                };
                let written = connection.transaction(|conn| {
                    for seq in next * PER_TRANSACTION + 1..=(next + 1) * PER_TRANSACTION {
                        let entry = Entry {
                            account: seq % KEYS,
                            seq,
                        };
                        let entity_topic = topic.clone();
                        CreditOut(Out {
                            entity_topic,
                            entry,
                        })
                        .emit_created(conn)?;
                    }
                    Ok::<_, procon::EmitError>(())
                });
                drop(guard);
                match written {
                    Ok(()) => next += 1,
                    Err(_) => conn = None, // broken by the restart: reconnect, write it again
                }
                std::thread::sleep(pause);
            }
        })
    };

    let started = Instant::now();
    let mut counts = (0, 0, 0, 0);
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    for (at, fault) in &plan {
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        println!("{:>6.1} s: {fault:?}", started.elapsed().as_secs_f64());
        match fault {
            Fault::KillRelay => {
                kill(&mut services.relay);
                tokio::time::sleep(Duration::from_millis(rng.u64(100..1000))).await;
                services.relay = services.relay();
                counts.0 += 1;
            }
            Fault::KillConsumer => {
                kill(&mut services.consumer);
                tokio::time::sleep(Duration::from_millis(rng.u64(100..1000))).await;
                services.consumer = services.consumer();
                counts.1 += 1;
            }
            Fault::CutBroker(outage) => {
                broker.proxy.cut().await;
                tokio::time::sleep(*outage).await;
                broker.proxy.restore().await;
                counts.2 += 1;
            }
            Fault::RestartPostgres => {
                let writing = writing.clone();
                tokio::task::spawn_blocking(move || {
                    let _quiet = writing.write().unwrap();
                    restart_postgres();
                })
                .await
                .unwrap();
                counts.3 += 1;
            }
        }
    }
    writer.join().expect("the writer finished");

    common::wait_for("every event to have its effect", DRAIN_TIMEOUT, || {
        let mut conn = PgConnection::establish(&db.url).ok()?;
        (effects(&mut conn).len() as i64 >= events).then_some(())
    });
    tokio::time::sleep(Duration::from_secs(2)).await; // room for a wrongly repeated effect
    let effects = effects(&mut db.conn());
    let mut on_broker = Collector::new(&broker.brokers, &topic, 4);
    on_broker.at_least(events as usize, DRAIN_TIMEOUT);
    let published = on_broker.drain_for(Duration::from_secs(2)).len();
    kill(&mut services.relay);
    kill(&mut services.consumer);
    broker.stop().await;

    println!(
        "chaos seed {seed}: {events} events, {} effects, {published} messages on the broker \
         ({} redelivered), {} relay kills, {} consumer kills, {} broker cuts, {} PostgreSQL \
         restarts, {:.1} s",
        effects.len(),
        published as i64 - events,
        counts.0,
        counts.1,
        counts.2,
        counts.3,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        effects.len() as i64,
        events,
        "one effect per event (seed {seed})"
    );
    let mut seqs: Vec<i64> = effects.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    assert!(
        seqs.iter().copied().eq(1..=events),
        "every event's effect, none twice (seed {seed})"
    );
    let mut last_per_key = std::collections::HashMap::new();
    for effect in &effects {
        let last = last_per_key.insert(effect.account, effect.seq);
        assert!(
            last.is_none_or(|last| last < effect.seq),
            "key {} applied seq {} after {:?} (seed {seed})",
            effect.account,
            effect.seq,
            last
        );
    }
}
