//! Operating procon, against real PostgreSQL and the test broker: the admin server's
//! `/metrics` counts a known workload (published, applied, lag), `/livez` answers, and
//! `/readyz` turns not-ready while the database is unreachable and ready again once it is back.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic};
use common::db::TestDb;
use common::ledger::{effect_count, emit_credits};

const LONG: Duration = Duration::from_secs(60);

async fn get(bind: SocketAddr, path: &str) -> (u16, String) {
    common::http::get(bind, path, "").await
}

/// The value of `name` with every label of `labels`, from a Prometheus exposition.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

fn admin_on(config: &mut procon::Config) -> SocketAddr {
    common::http::admin_on(config, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_what_was_published_and_applied_and_the_lag_reaches_zero() {
    common::init_logs();
    let db = TestDb::new("ops_metrics");
    common::ledger::create_effects(&mut db.conn());
    let topic = unique_topic("ops-metrics");
    create_topic(&brokers(), &topic, 2).await;
    emit_credits(&mut db.conn(), &topic, 1..=30, 3);
    let mut config = common::consumer_config(&db, &brokers(), &unique_topic("ops-group"), &topic);
    let bind = admin_on(&mut config);
    let runtime = procon::start(config).unwrap();
    common::wait_for("30 effects", LONG, || {
        (effect_count(&mut db.conn()) >= 30).then_some(())
    });
    assert_eq!(get(bind, "/livez").await, (200, "ok\n".to_owned()));
    // Lag is sampled every few seconds: wait until both partitions report 0.
    let topic_name = topic.clone();
    let text = common::wait_for_async("lag 0 on both partitions", LONG, || {
        let topic = topic_name.clone();
        async move {
            let text = get(bind, "/metrics").await.1;
            let lag = |p: &str| {
                metric(
                    &text,
                    "procon_consumer_lag_messages",
                    &[("topic", &topic), ("partition", p)],
                )
            };
            (lag("0") == Some(0.0) && lag("1") == Some(0.0)).then_some(text)
        }
    })
    .await;
    runtime.shutdown().await.unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        metric(&text, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} in:\n{text}"))
    };
    assert_eq!(
        value("procon_relay_published_total", &[("topic", &topic)]),
        30.0
    );
    assert_eq!(
        value(
            "procon_consumer_messages_total",
            &[("topic", &topic), ("outcome", "applied")]
        ),
        30.0
    );
    for partition in ["0", "1"] {
        assert_eq!(
            value(
                "procon_consumer_lag_messages",
                &[("topic", &topic), ("partition", partition)]
            ),
            0.0
        );
    }
    assert!(
        text.contains("# HELP procon_outbox_pending_events"),
        "{text}"
    );
    assert!(text.contains("procon_relay_ack_duration_seconds"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_is_not_ready_while_the_database_is_unreachable_and_ready_once_it_is_back() {
    common::init_logs();
    let db = TestDb::new("ops_ready");
    let (mut proxy, proxied_url) = common::proxy::database_proxy(&db.url).await;
    let mut config = common::runtime_config(&db, &brokers());
    config.database_url = proxied_url;
    let bind = admin_on(&mut config);
    let runtime = procon::start(config).unwrap();
    let ready = |want: u16| async move {
        common::wait_for_async(&format!("/readyz to answer {want}"), LONG, || async move {
            let (status, body) = get(bind, "/readyz").await;
            (status == want).then_some(body)
        })
        .await
    };
    let body = ready(200).await;
    assert!(body.contains(r#""database":"ok""#), "{body}");
    assert!(body.contains(r#""transport":"ok""#), "{body}");
    proxy.cut().await;
    let body = ready(503).await;
    assert!(body.contains(r#""database":{"error""#), "{body}");
    assert!(!body.contains("postgres@"), "no URL in the answer: {body}");
    proxy.restore().await;
    ready(200).await;
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_address_in_use_fails_start_with_the_address() {
    let db = TestDb::new("ops_bind");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = common::runtime_config(&db, &brokers());
    config.admin.enabled = true;
    config.admin.bind = taken.local_addr().unwrap();
    let Err(error) = procon::start(config) else {
        panic!("started on a taken address")
    };
    assert!(
        error
            .to_string()
            .contains(&taken.local_addr().unwrap().to_string()),
        "{error}"
    );
}
