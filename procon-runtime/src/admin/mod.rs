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
//! - `GET /`: the admin page (`page.rs`): backlog, relay state, partitions, keys retrying,
//!   stops, parked events and (Kafka, policy `dead_letter`) the dead letters of the consumed
//!   topics; signed in (`POST /login` with `admin.token`), the stops can be resumed (retry,
//!   skip, accept a reset: `POST /actions/resume`), parked events retried or dropped
//!   (`POST /actions/parked`) and dead letters redriven (`POST /actions/redrive`). Every action is checked by `guard.rs` (token, same
//!   origin) and logged.
//!
//! Invariants: it binds to `admin.bind` (loopback by default) at start, so a port in use fails
//! `start`; each check is bounded (2 s), so a hung database makes `/readyz` answer 503 late
//! rather than never; actions run the runtime's own functions (`resume_lane`, `retry_parked`...)
//! on a connection of their own, each in its transaction.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

mod guard;
mod page;

use crate::consumer::Status;
use crate::relay::RelayState;
use crate::transport::Publisher;

/// How long reading one dead-letter topic for the page may take.
const DLQ_READ: Duration = Duration::from_secs(3);

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
    /// The service name (the consumer group).
    pub(crate) group: String,
    /// `admin.token`: actions are refused without it.
    pub(crate) token: Option<String>,
    /// The relay's publisher and state, when the relay runs.
    pub(crate) relay: Option<(Arc<dyn Publisher>, Arc<RelayState>)>,
    pub(crate) consumer: Option<Status>,
    /// The runtime's settings (dead-letter topics and how to read them).
    pub(crate) settings: Arc<crate::config::Config>,
}

impl Health {
    /// The topics this process consumes, as the broker names them.
    fn consumed_topics(&self) -> Vec<String> {
        if self.consumer.is_none() {
            return Vec::new();
        }
        let mut topics: Vec<String> = self.settings.consumer.topics.values().cloned().collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// The dead-letter topics (streams) of the topics this process consumes (policy
    /// `dead_letter`).
    fn dead_letter_topics(&self) -> Vec<String> {
        let Some(status) = &self.consumer else {
            return Vec::new();
        };
        let consumer = &self.settings.consumer;
        let mut topics: Vec<String> = status
            .assigned_partitions()
            .into_iter()
            .map(|(topic, _)| topic)
            .filter_map(|physical| {
                let logical = consumer
                    .topics
                    .iter()
                    .find(|(_, p)| **p == physical)
                    .map_or(physical.as_str(), |(l, _)| l.as_str());
                match &consumer.failure_policy(logical).exhausted {
                    crate::config::Exhausted::DeadLetter { topic } => {
                        Some(topic.clone().unwrap_or_else(|| format!("{physical}.dlq")))
                    }
                    _ => None,
                }
            })
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }
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
        .route("/", get(overview_page))
        .route("/login", post(login))
        .route("/actions/resume", post(resume))
        .route("/actions/parked", post(parked))
        .route("/actions/redrive", post(redrive))
        .route("/actions/replay", post(replay))
        .with_state(health);
    tracing::info!(%bind, "admin server listening (/, /metrics, /livez, /readyz)");
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

fn header(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn request(headers: &HeaderMap) -> guard::Request<'_> {
    guard::Request {
        host: header(headers, header::HOST),
        origin: header(headers, header::ORIGIN),
        sec_fetch_site: headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        cookie: header(headers, header::COOKIE),
        authorization: header(headers, header::AUTHORIZATION),
    }
}

/// Back to the page, showing `notice`.
fn back(notice: &str) -> Response {
    let query = serde_urlencoded::to_string([("notice", notice)]).unwrap_or_default();
    Redirect::to(&format!("/?{query}")).into_response()
}

/// Proof that a request may change state (`guard::check` passed); extracted before the
/// handler of every action runs, which otherwise answers 403 with the reason.
struct Authorized;

impl axum::extract::FromRequestParts<Health> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        health: &Health,
    ) -> Result<Self, Response> {
        guard::check(&request(&parts.headers), health.token.as_deref())
            .map(|()| Authorized)
            .map_err(refused)
    }
}

fn refused(refusal: guard::Refusal) -> Response {
    tracing::warn!(reason = refusal.message(), "admin action refused");
    (StatusCode::FORBIDDEN, Html(page::escape(refusal.message()))).into_response()
}

/// Runs `work` on a connection of its own, on a blocking thread.
async fn with_database<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(&mut diesel::PgConnection) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        let mut conn = diesel::PgConnection::establish(&url)
            .map_err(|e| crate::config::redact(&e.to_string()))?;
        work(&mut conn)
    })
    .await
    .map_err(|e| e.to_string())?
}

#[derive(serde::Deserialize)]
struct Notice {
    notice: Option<String>,
}

async fn overview_page(
    State(health): State<Health>,
    headers: HeaderMap,
    Query(query): Query<Notice>,
) -> Html<String> {
    let dlq_topics = health.dead_letter_topics();
    let settings = health.settings.clone();
    let letters = tokio::task::spawn_blocking(move || {
        dlq_topics
            .into_iter()
            .map(|topic| {
                let read = crate::consumer::dead_letters(&settings, &topic, DLQ_READ)
                    .map_err(|e| e.to_string());
                (topic, read)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let group = health.group.clone();
    let gathered = with_database(&health.database_url, move |conn| {
        let backlog = crate::outbox::parked::backlog(conn).map_err(|e| e.to_string())?;
        let parked = crate::outbox::parked::parked_rows(conn).map_err(|e| e.to_string())?;
        let stopped =
            crate::consumer::stopped_partitions(conn, Some(&group)).map_err(|e| e.to_string())?;
        Ok((backlog, parked, stopped))
    })
    .await;
    let mut overview = page::Overview {
        service: health.group.clone(),
        relay: health.relay.as_ref().map(|(_, state)| {
            (
                state.connected.load(Ordering::Relaxed),
                state.shards_held.load(Ordering::Relaxed),
            )
        }),
        partitions: health.consumer.as_ref().map(|status| {
            let lag = status.lag();
            status
                .in_flight()
                .into_iter()
                .map(|(topic, partition, in_flight)| {
                    let lag = lag
                        .iter()
                        .find(|(t, p, _)| *t == topic && *p == partition)
                        .map(|(_, _, l)| *l);
                    (topic, partition, in_flight, lag)
                })
                .collect()
        }),
        stalled: health.consumer.as_ref().map_or_else(Vec::new, |status| {
            status
                .stalls()
                .into_iter()
                .filter(|s| !s.stopped)
                .map(|s| (s.coordinates.to_string(), s.lane, s.attempts, s.error))
                .collect()
        }),
        dead_letters: letters,
        replayable: health.consumed_topics(),
        ..page::Overview::default()
    };
    match gathered {
        Ok((backlog, parked, stopped)) => {
            overview.backlog = Some(backlog);
            overview.parked = parked;
            overview.stopped = stopped;
        }
        Err(error) => overview.database_error = Some(error),
    }
    let signed_in = health
        .token
        .as_deref()
        .is_some_and(|token| guard::signed_in(&request(&headers), token));
    Html(page::render(&overview, query.notice.as_deref(), signed_in))
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

async fn login(
    State(health): State<Health>,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    let bearer = format!("Bearer {}", form.token);
    let attempt = guard::Request {
        authorization: Some(&bearer),
        cookie: None,
        ..request(&headers)
    };
    if let Err(refusal) = guard::check(&attempt, health.token.as_deref()) {
        return refused(refusal);
    }
    tracing::info!("admin page: signed in");
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/",
        guard::COOKIE,
        form.token
    );
    let mut response = back("signed in");
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(serde::Deserialize)]
struct ResumeForm {
    topic: String,
    partition: i32,
    lane: String,
    how: String,
}

async fn resume(
    _: Authorized,
    State(health): State<Health>,
    Form(form): Form<ResumeForm>,
) -> Response {
    let how = match form.how.as_str() {
        "retry" => crate::consumer::Resume::Retry,
        "skip" => crate::consumer::Resume::Skip,
        "reset" => crate::consumer::Resume::Reset,
        other => return back(&format!("unknown way to resume: {other}")),
    };
    let group = health.group.clone();
    let (topic, partition, lane) = (form.topic.clone(), form.partition, form.lane.clone());
    let done = with_database(&health.database_url, move |conn| {
        let resumed = if lane.is_empty() {
            crate::consumer::resume_partition(conn, &group, &topic, partition, how)
        } else {
            crate::consumer::resume_lane(conn, &group, &topic, partition, &lane, how)
        };
        resumed.map(|r| r.len()).map_err(|e| e.to_string())
    })
    .await;
    let what = format!("{}[{}] {}", form.topic, form.partition, form.lane);
    tracing::info!(action = "resume", how = form.how, at = what, outcome = ?done, "admin page action");
    match done {
        Ok(0) => back(&format!("{what} was not stopped (resumed meanwhile?)")),
        Ok(_) => back(&format!("{what}: resumed ({})", form.how)),
        Err(error) => back(&format!("{what}: {error}")),
    }
}

#[derive(serde::Deserialize)]
struct ParkedForm {
    id: i64,
    action: String,
}

async fn parked(
    _: Authorized,
    State(health): State<Health>,
    Form(form): Form<ParkedForm>,
) -> Response {
    let (id, action) = (form.id, form.action.clone());
    let done = with_database(&health.database_url, move |conn| {
        match action.as_str() {
            "retry" => crate::outbox::parked::retry_parked(conn, id),
            "drop" => crate::outbox::parked::drop_parked(conn, id),
            _ => return Err(format!("unknown action {action}")),
        }
        .map_err(|e| e.to_string())
    })
    .await;
    tracing::info!(action = form.action, outbox_id = form.id, outcome = ?done, "admin page action");
    match done {
        Ok(true) => back(&format!("parked event {}: {}", form.id, form.action)),
        Ok(false) => back(&format!("no parked event {}", form.id)),
        Err(error) => back(&error),
    }
}

#[derive(serde::Deserialize)]
struct RedriveForm {
    dlq: String,
    /// `<partition>:<position>`, or `all`.
    letter: String,
}

async fn redrive(
    _: Authorized,
    State(health): State<Health>,
    Form(form): Form<RedriveForm>,
) -> Response {
    if !health.dead_letter_topics().contains(&form.dlq) {
        return back(&format!(
            "{} is not a dead-letter topic of this service",
            form.dlq
        ));
    }
    let (settings, dlq, letter) = (
        health.settings.clone(),
        form.dlq.clone(),
        form.letter.clone(),
    );
    let read = tokio::task::spawn_blocking(move || {
        crate::consumer::dead_letters(&settings, &dlq, DLQ_READ).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|read| read);
    let picked: Vec<crate::consumer::DeadLetter> = match read {
        Ok(letters) if letter == "all" => letters,
        Ok(letters) => letters
            .into_iter()
            .filter(|l| format!("{}:{}", l.partition, l.position) == letter)
            .collect(),
        Err(error) => return back(&format!("cannot read {}: {error}", form.dlq)),
    };
    if picked.is_empty() {
        return back(&format!("{} has no letter {}", form.dlq, form.letter));
    }
    let done = with_database(&health.database_url, move |conn| {
        crate::consumer::redrive(conn, &picked).map_err(|e| e.to_string())
    })
    .await;
    tracing::info!(action = "redrive", dlq = form.dlq, letter = form.letter, outcome = ?done, "admin page action");
    match done {
        Ok(sent) => back(&format!("{sent} dead letters of {} redriven", form.dlq)),
        Err(error) => back(&error),
    }
}

#[derive(serde::Deserialize)]
struct ReplayForm {
    topic: String,
    /// `earliest`, an RFC 3339 time or a position.
    to: String,
    /// A checkbox: present when ticked.
    dry_run: Option<String>,
    /// A checkbox: present when ticked.
    no_publish: Option<String>,
}

/// How long finding a time's positions may take.
const REPLAY_LOOKUP: Duration = Duration::from_secs(10);

async fn replay(
    _: Authorized,
    State(health): State<Health>,
    Form(form): Form<ReplayForm>,
) -> Response {
    if !health.consumed_topics().contains(&form.topic) {
        return back(&format!(
            "{} is not a topic this service consumes",
            form.topic
        ));
    }
    let to = form.to.trim().to_owned();
    let target: crate::consumer::ReplayTarget = match to.parse() {
        Ok(target) => target,
        Err(error) => return back(&format!("replay from {error}")),
    };
    let (settings, topic) = (health.settings.clone(), form.topic.clone());
    let found = tokio::task::spawn_blocking(move || {
        target
            .resolve(|at| {
                crate::consumer::replay_positions_at(&settings, &topic, at, REPLAY_LOOKUP)
            })
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|found| found);
    let from = match found {
        Ok(from) => from,
        Err(error) => {
            return back(&format!(
                "cannot find {}'s positions at {to}: {error}",
                form.topic
            ))
        }
    };
    let dry_run = form.dry_run.is_some();
    let publish = form.no_publish.is_none();
    let (group, topic) = (health.group.clone(), form.topic.clone());
    let done = with_database(&health.database_url, move |conn| {
        crate::consumer::replay(conn, &group, &topic, from, publish, dry_run)
            .map_err(|e| e.to_string())
    })
    .await;
    tracing::info!(action = "replay", topic = form.topic, to, dry_run, publish, outcome = ?done, "admin page action");
    match done {
        Ok(plan) if plan.is_empty() => back(&format!(
            "replay of {}: nothing to replay (every partition is stored before that point)",
            form.topic
        )),
        Ok(plan) => {
            let moves: Vec<String> = plan
                .iter()
                .map(|step| {
                    format!(
                        "[{}] {} → {}",
                        step.partition,
                        step.from,
                        step.to.map_or("oldest".to_owned(), |p| p.to_string())
                    )
                })
                .collect();
            back(&format!(
                "replay of {}: {}{}",
                form.topic,
                moves.join(", "),
                if dry_run {
                    " (dry run: nothing changed)"
                } else {
                    " recorded; the consumers apply the events again"
                }
            ))
        }
        Err(error) => back(&format!("replay of {}: {error}", form.topic)),
    }
}
