//! A schema registry for the tests, written from Confluent's published REST API (as franz-go's
//! `srfake` is): no Confluent, Karapace or Apicurio server installs on these machines (Java
//! builds from Maven, container images; Karapace is not on PyPI).
//!
//! What it does like the real one: subjects with numbered versions; one global id per distinct
//! schema (the same schema under two subjects keeps its id); registering a schema a subject
//! already holds returns its id; compatibility levels (global and per subject, `BACKWARD`
//! by default, transitive or not) checked with Avro's schema resolution rules before a
//! version is added; lookups; Confluent's error codes (40401 subject, 40402 version, 40403
//! schema not found, 409 incompatible, 42201 invalid schema, 50001 internal). What it adds:
//! switches to answer 503 (an outage) or to answer late (a timeout), and a request count.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use procon::avro::apache_avro::schema_compatibility::SchemaCompatibility;
use procon::avro::apache_avro::Schema;
use serde_json::{json, Value};

#[derive(Default)]
struct Registry {
    /// Schema texts by id − 1.
    schemas: Vec<String>,
    /// Per subject, the id of each version (version = index + 1).
    subjects: BTreeMap<String, Vec<u32>>,
    global: Option<String>,
    per_subject: BTreeMap<String, String>,
    outage: bool,
    delay: Option<Duration>,
    requests: usize,
}

/// A running fake registry; it serves until the test process ends.
#[derive(Clone)]
pub struct FakeRegistry {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<Registry>>,
}

impl FakeRegistry {
    /// Starts one on a free port, on a thread of its own (so it serves blocking tests too).
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(Registry::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the registry");
        listener.set_nonblocking(true).unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let app = router(state.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        FakeRegistry {
            url: format!("http://{addr}"),
            state,
        }
    }

    /// From now on every request is answered `503` (`false`: normally again).
    pub fn set_outage(&self, outage: bool) {
        self.state.lock().unwrap().outage = outage;
    }

    /// Every answer waits `delay` first.
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Requests answered (or refused) so far.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    /// Registers `schema` under `subject` directly (an earlier deploy's schema), returning
    /// its id; panics when the registry refuses it.
    pub fn register(&self, subject: &str, schema: &str) -> u32 {
        let mut registry = self.state.lock().unwrap();
        match registry.add(subject, schema) {
            Ok(id) => id,
            Err(e) => panic!("registering under {subject}: {:?}", e.1),
        }
    }

    /// The subjects and their versions' ids.
    pub fn subjects(&self) -> BTreeMap<String, Vec<u32>> {
        self.state.lock().unwrap().subjects.clone()
    }
}

type Shared = Arc<Mutex<Registry>>;
type Refusal = (StatusCode, Value);

fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Refusal {
    (
        status,
        json!({"error_code": code, "message": message.into()}),
    )
}

fn parse(text: &str) -> Result<Schema, Refusal> {
    // apache-avro panics on some invalid names; the fake must answer 422 instead.
    std::panic::catch_unwind(|| Schema::parse_str(text))
        .map_err(|_| error(StatusCode::UNPROCESSABLE_ENTITY, 42201, "Invalid schema"))?
        .map_err(|e| {
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                42201,
                format!("Invalid schema: {e}"),
            )
        })
}

fn same(a: &str, b: &str) -> bool {
    serde_json::from_str::<Value>(a).ok() == serde_json::from_str::<Value>(b).ok()
}

impl Registry {
    fn level(&self, subject: &str) -> String {
        self.per_subject
            .get(subject)
            .or(self.global.as_ref())
            .cloned()
            .unwrap_or_else(|| "BACKWARD".to_owned())
    }

    /// Why `text` may not join `subject` at its level (empty: it may).
    fn incompatibilities(&self, subject: &str, text: &str) -> Result<Vec<String>, Refusal> {
        let new = parse(text)?;
        let level = self.level(subject);
        let ids = self.subjects.get(subject).cloned().unwrap_or_default();
        let against: Vec<u32> = if level.ends_with("_TRANSITIVE") {
            ids
        } else {
            ids.last().copied().into_iter().collect()
        };
        let mut messages = Vec::new();
        for id in against {
            let old = parse(&self.schemas[id as usize - 1])?;
            let backward = level.starts_with("BACKWARD") || level.starts_with("FULL");
            let forward = level.starts_with("FORWARD") || level.starts_with("FULL");
            if backward {
                if let Err(e) = SchemaCompatibility::can_read(&old, &new) {
                    messages.push(format!(
                        "{level}: the new schema cannot read version with id {id}: {e}"
                    ));
                }
            }
            if forward {
                if let Err(e) = SchemaCompatibility::can_read(&new, &old) {
                    messages.push(format!(
                        "{level}: version with id {id} cannot read the new schema: {e}"
                    ));
                }
            }
        }
        Ok(messages)
    }

    fn add(&mut self, subject: &str, text: &str) -> Result<u32, Refusal> {
        if let Some(ids) = self.subjects.get(subject) {
            if let Some(id) = ids
                .iter()
                .find(|id| same(&self.schemas[**id as usize - 1], text))
            {
                return Ok(*id);
            }
        }
        let messages = self.incompatibilities(subject, text)?;
        if !messages.is_empty() {
            return Err(error(
                StatusCode::CONFLICT,
                409,
                format!(
                    "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: {}",
                    messages.join("; ")
                ),
            ));
        }
        let id = match self.schemas.iter().position(|s| same(s, text)) {
            Some(index) => index as u32 + 1,
            None => {
                self.schemas.push(text.to_owned());
                self.schemas.len() as u32
            }
        };
        self.subjects
            .entry(subject.to_owned())
            .or_default()
            .push(id);
        Ok(id)
    }

    fn version(&self, subject: &str, version: &str) -> Result<Value, Refusal> {
        let ids = self
            .subjects
            .get(subject)
            .ok_or_else(|| error(StatusCode::NOT_FOUND, 40401, "Subject not found."))?;
        let index = match version {
            "latest" | "-1" => ids.len() - 1,
            n => match n.parse::<usize>() {
                Ok(n) if (1..=ids.len()).contains(&n) => n - 1,
                _ => return Err(error(StatusCode::NOT_FOUND, 40402, "Version not found.")),
            },
        };
        let id = ids[index];
        Ok(json!({
            "subject": subject,
            "version": index + 1,
            "id": id,
            "schema": self.schemas[id as usize - 1],
        }))
    }
}

fn schema_of(body: &Value) -> Result<String, Refusal> {
    if let Some(kind) = body["schemaType"].as_str() {
        if kind != "AVRO" {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                42201,
                format!("Invalid schema type {kind}"),
            ));
        }
    }
    body["schema"].as_str().map(str::to_owned).ok_or_else(|| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "Invalid schema: no `schema` field",
        )
    })
}

/// Runs `answer` on the registry unless an outage or a delay is switched on.
async fn serve(
    state: Shared,
    answer: impl FnOnce(&mut Registry) -> Result<Value, Refusal>,
) -> Response {
    let delay = {
        let mut registry = state.lock().unwrap();
        registry.requests += 1;
        if registry.outage {
            let (status, body) = error(
                StatusCode::SERVICE_UNAVAILABLE,
                50003,
                "Error while forwarding the request to the leader",
            );
            return (status, Json(body)).into_response();
        }
        registry.delay
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let result = answer(&mut state.lock().unwrap());
    match result {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err((status, body)) => (status, Json(body)).into_response(),
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route(
            "/subjects",
            get(|State(s): State<Shared>| async move {
                serve(s, |r| Ok(json!(r.subjects.keys().collect::<Vec<_>>()))).await
            }),
        )
        .route(
            "/subjects/{subject}",
            post(|State(s): State<Shared>, Path(subject): Path<String>, Json(body): Json<Value>| async move {
                serve(s, |r| {
                    let text = schema_of(&body)?;
                    parse(&text)?;
                    let ids = r
                        .subjects
                        .get(&subject)
                        .ok_or_else(|| error(StatusCode::NOT_FOUND, 40401, "Subject not found."))?;
                    let version = ids
                        .iter()
                        .position(|id| same(&r.schemas[*id as usize - 1], &text))
                        .ok_or_else(|| error(StatusCode::NOT_FOUND, 40403, "Schema not found"))?;
                    r.version(&subject, &(version + 1).to_string())
                })
                .await
            }),
        )
        .route(
            "/subjects/{subject}/versions",
            get(|State(s): State<Shared>, Path(subject): Path<String>| async move {
                serve(s, |r| {
                    let ids = r
                        .subjects
                        .get(&subject)
                        .ok_or_else(|| error(StatusCode::NOT_FOUND, 40401, "Subject not found."))?;
                    Ok(json!((1..=ids.len()).collect::<Vec<_>>()))
                })
                .await
            })
            .post(|State(s): State<Shared>, Path(subject): Path<String>, Json(body): Json<Value>| async move {
                serve(s, |r| {
                    let text = schema_of(&body)?;
                    r.add(&subject, &text).map(|id| json!({"id": id}))
                })
                .await
            }),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(|State(s): State<Shared>, Path((subject, version)): Path<(String, String)>| async move {
                serve(s, |r| r.version(&subject, &version)).await
            }),
        )
        .route(
            "/schemas/ids/{id}",
            get(|State(s): State<Shared>, Path(id): Path<u32>| async move {
                serve(s, |r| {
                    r.schemas
                        .get((id as usize).wrapping_sub(1))
                        .map(|text| json!({"schema": text}))
                        .ok_or_else(|| error(StatusCode::NOT_FOUND, 40403, "Schema not found"))
                })
                .await
            }),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(|State(s): State<Shared>, Path((subject, version)): Path<(String, String)>, Json(body): Json<Value>| async move {
                serve(s, |r| {
                    let text = schema_of(&body)?;
                    r.version(&subject, &version)?;
                    let messages = r.incompatibilities(&subject, &text)?;
                    Ok(json!({"is_compatible": messages.is_empty(), "messages": messages}))
                })
                .await
            }),
        )
        .route(
            "/config",
            get(|State(s): State<Shared>| async move {
                serve(s, |r| Ok(json!({"compatibilityLevel": r.global.clone().unwrap_or_else(|| "BACKWARD".into())}))).await
            })
            .put(|State(s): State<Shared>, Json(body): Json<Value>| async move {
                serve(s, |r| {
                    let level = level_of(&body)?;
                    r.global = Some(level.clone());
                    Ok(json!({"compatibility": level}))
                })
                .await
            }),
        )
        .route(
            "/config/{subject}",
            get(|State(s): State<Shared>, Path(subject): Path<String>| async move {
                serve(s, |r| {
                    r.per_subject
                        .get(&subject)
                        .map(|level| json!({"compatibilityLevel": level}))
                        .ok_or_else(|| error(StatusCode::NOT_FOUND, 40408, "Subject does not have subject-level compatibility configured"))
                })
                .await
            })
            .put(|State(s): State<Shared>, Path(subject): Path<String>, Json(body): Json<Value>| async move {
                serve(s, |r| {
                    let level = level_of(&body)?;
                    r.per_subject.insert(subject, level.clone());
                    Ok(json!({"compatibility": level}))
                })
                .await
            }),
        )
        .with_state(state)
}

fn level_of(body: &Value) -> Result<String, Refusal> {
    const LEVELS: [&str; 7] = [
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
        "NONE",
    ];
    match body["compatibility"].as_str() {
        Some(level) if LEVELS.contains(&level) => Ok(level.to_owned()),
        _ => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
            "Invalid compatibility level",
        )),
    }
}
