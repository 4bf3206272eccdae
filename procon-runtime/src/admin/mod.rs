//! The admin server (crate feature `admin`, switched on by `admin.enabled`): procon's metrics in
//! the Prometheus exposition format and the health endpoints an orchestrator probes.
//!
//! - `GET /metrics`: every metric of [`crate::metrics`], rendered by the Prometheus recorder the
//!   server installs at start. When the application installed a recorder of its own first,
//!   that one receives the metrics and this endpoint answers 404 saying so.
//! - `GET /livez`: 200 while the process serves requests.
//! - `GET /readyz`: 200 when the database answers and, with the relay running, the transport
//!   answers (Kafka: a metadata request); 503 otherwise. The JSON body says what was checked,
//!   the relay's state (connected, shards held: 0 is standby) and the consumer's partitions.
//!
//! Job: serve; it never changes state (the admin page's actions, which will, need
//! `admin.token`). Invariants: it binds to `admin.bind` (loopback by default) at start, so a
//! port in use fails `start`; each check is bounded (2 s), so a hung database makes `/readyz`
//! answer 503 late rather than never.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::consumer::Status;
use crate::relay::RelayState;
use crate::transport::Publisher;

/// How long one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The Prometheus recorder procon installed (`None`: the application has its own).
static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => {
                crate::metrics::describe();
                Some(handle)
            }
            Err(error) => {
                tracing::info!(%error, "a metrics recorder is already installed; /metrics is left to it");
                None
            }
        })
        .as_ref()
}

/// What the server reads to answer.
#[derive(Clone)]
pub(crate) struct Health {
    pub(crate) database_url: String,
    /// The relay's publisher and state, when the relay runs.
    pub(crate) relay: Option<(Arc<dyn Publisher>, Arc<RelayState>)>,
    pub(crate) consumer: Option<Status>,
}

/// Why the admin server did not start.
#[derive(Debug, thiserror::Error)]
#[error("the admin server cannot listen on {bind}: {source}")]
pub struct AdminError {
    /// The address it was to listen on.
    pub bind: std::net::SocketAddr,
    /// What the system said.
    #[source]
    pub source: std::io::Error,
}

/// Binds `bind` now and serves on the current runtime until `shutdown` turns true.
pub(crate) fn spawn(
    handle: &tokio::runtime::Handle,
    bind: std::net::SocketAddr,
    health: Health,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, AdminError> {
    let error = |source| AdminError { bind, source };
    let listener = std::net::TcpListener::bind(bind).map_err(error)?;
    listener.set_nonblocking(true).map_err(error)?;
    let _entered = handle.enter();
    let listener = tokio::net::TcpListener::from_std(listener).map_err(error)?;
    recorder();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    tracing::info!(%bind, "admin server listening (/metrics, /livez, /readyz)");
    Ok(handle.spawn(async move {
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(%error, "the admin server stopped");
        }
    }))
}

async fn metrics() -> impl IntoResponse {
    match recorder() {
        Some(handle) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "the application installed its own metrics recorder: procon's metrics are there\n"
                .to_owned(),
        ),
    }
}

/// One readiness check: `Ok` or what failed.
fn verdict(result: Result<Result<(), String>, tokio::time::error::Elapsed>) -> Result<(), String> {
    match result {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    let url = health.database_url.clone();
    let database = verdict(
        tokio::time::timeout(CHECK_TIMEOUT, async move {
            tokio::task::spawn_blocking(move || crate::store::ping(&url))
                .await
                .map_err(|e| e.to_string())?
        })
        .await,
    );
    let (transport, relay) = match &health.relay {
        Some((publisher, state)) => {
            let publisher = publisher.clone();
            let transport = verdict(
                tokio::time::timeout(CHECK_TIMEOUT, async move {
                    tokio::task::spawn_blocking(move || {
                        publisher.warm_up(CHECK_TIMEOUT).map_err(|e| e.to_string())
                    })
                    .await
                    .map_err(|e| e.to_string())?
                })
                .await,
            );
            let relay = serde_json::json!({
                "connected": state.connected.load(Ordering::Relaxed),
                "shards_held": state.shards_held.load(Ordering::Relaxed),
            });
            (Some(transport), relay)
        }
        None => (None, serde_json::Value::Null),
    };
    let consumer = health.consumer.as_ref().map_or(serde_json::Value::Null, |s| {
        serde_json::json!({ "partitions": s.assigned_partitions().len(), "stalled": s.stalls().len() })
    });
    let ready = database.is_ok() && transport.as_ref().is_none_or(Result::is_ok);
    let shown = |check: &Result<(), String>| match check {
        Ok(()) => serde_json::json!("ok"),
        Err(error) => serde_json::json!({ "error": error }),
    };
    let body = serde_json::json!({
        "ready": ready,
        "database": shown(&database),
        "transport": transport.as_ref().map_or(serde_json::Value::Null, shown),
        "relay": relay,
        "consumer": consumer,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
