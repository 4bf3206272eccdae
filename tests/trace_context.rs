//! W3C trace context across the broker: the trace of the emitting span is carried in the
//! `traceparent` header and the envelope, and becomes the parent of the handler's span.
//!
//! A binary of its own: it installs a global `tracing` subscriber with the OpenTelemetry layer
//! (no exporter is needed for span contexts to exist).

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::broker::{brokers, create_topic, unique_topic, Collector};
use common::db::TestDb;
use diesel::connection::SimpleConnection;
use diesel::Connection;
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use procon::event_handler;
use procon::prelude::*;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

const LONG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize, Outbox)]
#[procon(topic = "traced", entity = "traced")]
struct Traced {
    id: i64,
}

/// The trace id the handler's span belonged to, per handled id.
static SEEN: Mutex<Vec<(i64, TraceId)>> = Mutex::new(Vec::new());

#[event_handler(topic = "traced", event = "traced.created")]
fn on_traced(_ctx: &mut HandlerContext<'_>, event: Event<Traced>) -> Result<(), HandlerError> {
    let trace_id = tracing::Span::current()
        .context()
        .span()
        .span_context()
        .trace_id();
    let id = event.after.as_ref().map_or(-1, |t| t.id);
    SEEN.lock().unwrap().push((id, trace_id));
    Ok(())
}

fn current_trace_id() -> TraceId {
    tracing::Span::current()
        .context()
        .span()
        .span_context()
        .trace_id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_continues_from_the_emitting_span_to_the_handler_span() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("procon-tests")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let db = TestDb::new("trace_context");
    db.conn()
        .batch_execute(common::ledger::CREATE_EFFECTS)
        .unwrap();
    let topic = unique_topic("traced");
    let ledger_topic = unique_topic("traced-ledger");
    create_topic(&brokers(), &topic, 2).await;
    create_topic(&brokers(), &ledger_topic, 1).await;
    let mut config = common::consumer_config(
        &db,
        &brokers(),
        &unique_topic("traced-group"),
        &ledger_topic,
    );
    config.relay.topics.insert("traced".into(), topic.clone());
    config
        .consumer
        .topics
        .insert("traced".into(), topic.clone());
    let runtime = procon::start(config).unwrap();

    // Two requests, each its own trace; a third event emitted outside any span.
    let mut conn = db.conn();
    let mut expected = Vec::new();
    for id in [1, 2] {
        let span = tracing::info_span!("request", id);
        let _entered = span.enter();
        expected.push((id, current_trace_id()));
        conn.transaction(|conn| Traced { id }.emit_created(conn))
            .unwrap();
    }
    conn.transaction(|conn| Traced { id: 3 }.emit_created(conn))
        .unwrap();
    assert_ne!(expected[0].1, expected[1].1);
    assert_ne!(expected[0].1, TraceId::INVALID);

    common::wait_for("the three events to be handled", LONG, || {
        (SEEN.lock().unwrap().len() >= 3).then_some(())
    });
    let seen = SEEN.lock().unwrap().clone();
    for (id, trace_id) in &expected {
        let handled = seen.iter().find(|(i, _)| i == id).unwrap();
        assert_eq!(
            &handled.1, trace_id,
            "event {id}: the handler span continues the trace"
        );
    }
    let untraced = seen.iter().find(|(i, _)| *i == 3).unwrap();
    assert!(
        expected.iter().all(|(_, t)| *t != untraced.1),
        "an event emitted outside a trace starts a trace of its own"
    );

    // On the wire: the header and the envelope field, with the emitter's trace id.
    let mut collector = Collector::new(&brokers(), &topic, 2);
    let received = collector.at_least(3, LONG).to_vec();
    for (id, trace_id) in &expected {
        let message = received
            .iter()
            .find(|m| m.payload["after"]["id"] == *id)
            .unwrap();
        let header = &message.headers["traceparent"];
        assert!(header.starts_with(&format!("00-{trace_id}-")), "{header}");
        assert_eq!(message.payload["traceparent"], header.as_str());
    }
    let plain = received
        .iter()
        .find(|m| m.payload["after"]["id"] == 3)
        .unwrap();
    assert!(!plain.headers.contains_key("traceparent"));
    assert!(plain.payload.get("traceparent").is_none());
    runtime.shutdown().await.unwrap();
}
