//! A client of a Confluent-compatible schema registry's REST API (Confluent Schema Registry,
//! Karapace, Apicurio's compatibility API, Redpanda), with the answers procon needs cached.
//!
//! Job: register a schema under a subject and learn its id, fetch a writer's schema by id,
//! check a schema's compatibility, list subjects, set a subject's compatibility level. Every
//! call is bounded by `schema_registry.timeout`. Invariants: an id once learned for a
//! (subject, schema) or a schema once fetched for an id is never asked again (the registry
//! never changes either); errors say whether the registry could not answer (an outage: try
//! again later) or refused (unknown id, incompatible schema: trying again changes nothing).
//! The URL may carry `user:password@` for basic authentication; the password is never shown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::Schema;
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::Compatibility;
use crate::secrets::redact_connection_string;

/// The media type of the registry's API.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// What the registry (or the way to it) answered instead of what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No `schema_registry.url` is configured, but an Avro event needs one.
    #[error(
        "no schema registry is configured (PROCON_SCHEMA_REGISTRY_URL), but an Avro event needs one"
    )]
    NotConfigured,
    /// The registry could not be reached, timed out, or failed (5xx): try again later.
    #[error("the schema registry at {url} is unavailable: {reason}")]
    Unavailable {
        /// The registry's URL (password hidden).
        url: String,
        /// What happened.
        reason: String,
    },
    /// Error 40401: the subject has no version.
    #[error("the schema registry has no subject `{subject}` (error 40401)")]
    SubjectNotFound {
        /// The subject.
        subject: String,
    },
    /// Error 40403: no schema has this id (or the subject has no such schema).
    #[error("the schema registry has no schema {what} (error 40403)")]
    SchemaNotFound {
        /// Which schema: `with id 7`, or `like this one under subject s`.
        what: String,
    },
    /// Error 409: the schema breaks the subject's compatibility level.
    #[error("the schema is incompatible with subject `{subject}` (error 409): {message}")]
    Incompatible {
        /// The subject.
        subject: String,
        /// The registry's explanation.
        message: String,
    },
    /// Error 42201 (or another 422): the registry does not accept the schema.
    #[error("the schema registry refused the schema for subject `{subject}` as invalid (error {code}): {message}")]
    Invalid {
        /// The subject.
        subject: String,
        /// The registry's error code.
        code: u32,
        /// The registry's explanation.
        message: String,
    },
    /// A schema the registry returned is not valid Avro.
    #[error("the schema registry returned a schema that is not valid Avro (id {id}): {reason}")]
    UnreadableSchema {
        /// The schema's id.
        id: u32,
        /// What Avro objected to.
        reason: String,
    },
    /// Any other answer.
    #[error("the schema registry answered {status} (error {code}): {message}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// The registry's error code (0 when the body had none).
        code: u32,
        /// The registry's explanation.
        message: String,
    },
}

impl RegistryError {
    /// True when the registry could not answer (or none is configured): the same call may
    /// succeed later, so the event waits instead of following a failure policy.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            RegistryError::Unavailable { .. } | RegistryError::NotConfigured
        )
    }
}

/// The registry's error body.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error_code: u32,
    #[serde(default)]
    message: String,
}

/// What a compatibility check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatibilityReport {
    /// Whether the schema may be registered.
    pub compatible: bool,
    /// Why not (the registry's messages), when it says.
    pub messages: Vec<String>,
}

/// A registered version of a subject.
#[derive(Debug, Clone, Deserialize)]
pub struct Version {
    /// The subject.
    pub subject: String,
    /// The version number.
    pub version: u32,
    /// The schema's global id.
    pub id: u32,
    /// The schema text.
    pub schema: String,
}

/// A cached client of one registry. Cheap to share (`Arc`); blocking calls.
pub struct RegistryClient {
    base: String,
    shown: String,
    authorization: Option<String>,
    agent: ureq::Agent,
    ids: Mutex<HashMap<(String, String), u32>>,
    schemas: Mutex<HashMap<u32, Arc<Schema>>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client of the registry at `url` (`http(s)://[user:password@]host[:port][/path]`),
    /// each call bounded by `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Self {
        let (base, authorization) = split_credentials(url.trim_end_matches('/'));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        RegistryClient {
            shown: redact_connection_string(url),
            base,
            authorization,
            agent,
            ids: Mutex::default(),
            schemas: Mutex::default(),
        }
    }

    /// The registry's URL, password hidden.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Registers `schema` (JSON text) under `subject` and returns its id (the existing id when
    /// it is registered already). Cached.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let key = (subject.to_owned(), schema.to_owned());
        if let Some(id) = lock(&self.ids).get(&key) {
            return Ok(*id);
        }
        #[derive(Deserialize)]
        struct Registered {
            id: u32,
        }
        let path = format!("/subjects/{}/versions", encode(subject));
        let registered: Registered = self
            .call("POST", &path, Some(json!({"schema": schema})))
            .map_err(|e| e.about_subject(subject))?;
        lock(&self.ids).insert(key, registered.id);
        Ok(registered.id)
    }

    /// The id of `schema` under `subject` if it is registered there, without registering it.
    /// Cached.
    pub fn lookup(&self, subject: &str, schema: &str) -> Result<Option<u32>, RegistryError> {
        let key = (subject.to_owned(), schema.to_owned());
        if let Some(id) = lock(&self.ids).get(&key) {
            return Ok(Some(*id));
        }
        let path = format!("/subjects/{}", encode(subject));
        match self.call::<Version>("POST", &path, Some(json!({"schema": schema}))) {
            Ok(version) => {
                lock(&self.ids).insert(key, version.id);
                Ok(Some(version.id))
            }
            Err(Call::Registry {
                code: 40401 | 40403,
                ..
            }) => Ok(None),
            Err(error) => Err(error.about_subject(subject)),
        }
    }

    /// The schema with global id `id` (a writer's schema). Cached.
    pub fn schema(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(schema) = lock(&self.schemas).get(&id) {
            return Ok(schema.clone());
        }
        #[derive(Deserialize)]
        struct ById {
            schema: String,
        }
        let found: ById = self
            .call("GET", &format!("/schemas/ids/{id}"), None)
            .map_err(|e| match e {
                Call::Registry { code: 40403, .. } | Call::Registry { status: 404, .. } => {
                    RegistryError::SchemaNotFound {
                        what: format!("with id {id}"),
                    }
                }
                other => other.about_subject(""),
            })?;
        let schema =
            Schema::parse_str(&found.schema).map_err(|e| RegistryError::UnreadableSchema {
                id,
                reason: e.to_string(),
            })?;
        let schema = Arc::new(schema);
        lock(&self.schemas).insert(id, schema.clone());
        Ok(schema)
    }

    /// Whether `schema` may be registered under `subject` at the subject's compatibility
    /// level (compatible when the subject has no version yet).
    pub fn check(&self, subject: &str, schema: &str) -> Result<CompatibilityReport, RegistryError> {
        #[derive(Deserialize)]
        struct Checked {
            is_compatible: bool,
            #[serde(default)]
            messages: Vec<String>,
        }
        let path = format!(
            "/compatibility/subjects/{}/versions/latest?verbose=true",
            encode(subject)
        );
        match self.call::<Checked>("POST", &path, Some(json!({"schema": schema}))) {
            Ok(checked) => Ok(CompatibilityReport {
                compatible: checked.is_compatible,
                messages: checked.messages,
            }),
            Err(Call::Registry {
                code: 40401 | 40402,
                ..
            }) => Ok(CompatibilityReport {
                compatible: true,
                messages: Vec::new(),
            }),
            Err(error) => Err(error.about_subject(subject)),
        }
    }

    /// Every subject the registry holds.
    pub fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        self.call("GET", "/subjects", None)
            .map_err(|e| e.about_subject(""))
    }

    /// The latest version of `subject`, if it has one.
    pub fn latest(&self, subject: &str) -> Result<Option<Version>, RegistryError> {
        let path = format!("/subjects/{}/versions/latest", encode(subject));
        match self.call::<Version>("GET", &path, None) {
            Ok(version) => Ok(Some(version)),
            Err(Call::Registry {
                code: 40401 | 40402,
                ..
            }) => Ok(None),
            Err(error) => Err(error.about_subject(subject)),
        }
    }

    /// Every version of `subject`, oldest first (none when the subject does not exist).
    pub fn versions(&self, subject: &str) -> Result<Vec<Version>, RegistryError> {
        let path = format!("/subjects/{}/versions", encode(subject));
        let numbers: Vec<u32> = match self.call("GET", &path, None) {
            Ok(numbers) => numbers,
            Err(Call::Registry { code: 40401, .. }) => return Ok(Vec::new()),
            Err(error) => return Err(error.about_subject(subject)),
        };
        numbers
            .into_iter()
            .map(|n| {
                let path = format!("/subjects/{}/versions/{n}", encode(subject));
                self.call("GET", &path, None)
                    .map_err(|e| e.about_subject(subject))
            })
            .collect()
    }

    /// Sets `subject`'s compatibility level.
    pub fn set_compatibility(
        &self,
        subject: &str,
        level: Compatibility,
    ) -> Result<(), RegistryError> {
        #[derive(Deserialize)]
        struct Set {}
        let path = format!("/config/{}", encode(subject));
        self.call::<Set>("PUT", &path, Some(json!({"compatibility": level.as_str()})))
            .map(|_| ())
            .map_err(|e| e.about_subject(subject))
    }

    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, Call> {
        let url = format!("{}{path}", self.base);
        let unavailable = |reason: String| Call::Unavailable {
            url: self.shown.clone(),
            reason,
        };
        let response = match (method, body) {
            ("GET", _) => self.with_auth(self.agent.get(&url)).call(),
            (method, body) => {
                let request = match method {
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.post(&url),
                };
                self.with_auth(request)
                    .header("Content-Type", MEDIA_TYPE)
                    .send_json(body.unwrap_or(serde_json::Value::Null))
            }
        };
        let mut response = response.map_err(|e| unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return response
                .body_mut()
                .read_json()
                .map_err(|e| unavailable(format!("unreadable answer: {e}")));
        }
        if status >= 500 || status == 408 || status == 429 {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let body: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
        Err(Call::Registry {
            status,
            code: body.error_code,
            message: body.message,
        })
    }

    fn with_auth<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }
}

/// The outcome of one call before it is given its context.
enum Call {
    Unavailable {
        url: String,
        reason: String,
    },
    Registry {
        status: u16,
        code: u32,
        message: String,
    },
}

impl Call {
    fn about_subject(self, subject: &str) -> RegistryError {
        match self {
            Call::Unavailable { url, reason } => RegistryError::Unavailable { url, reason },
            Call::Registry { code: 40401, .. } => RegistryError::SubjectNotFound {
                subject: subject.to_owned(),
            },
            Call::Registry { code: 40403, .. } => RegistryError::SchemaNotFound {
                what: format!("like this one under subject `{subject}`"),
            },
            Call::Registry {
                status: 409,
                message,
                ..
            } => RegistryError::Incompatible {
                subject: subject.to_owned(),
                message,
            },
            Call::Registry {
                status: 422,
                code,
                message,
            } => RegistryError::Invalid {
                subject: subject.to_owned(),
                code,
                message,
            },
            Call::Registry {
                status,
                code,
                message,
            } => RegistryError::Unexpected {
                status,
                code,
                message,
            },
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The URL without `user:password@`, and the basic authorization header they make.
fn split_credentials(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url.to_owned(), None);
    };
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => {
            let credentials = &url[scheme_end..scheme_end + at];
            let base = format!("{}{}", &url[..scheme_end], &url[scheme_end + at + 1..]);
            let token = base64::engine::general_purpose::STANDARD.encode(credentials);
            (base, Some(format!("Basic {token}")))
        }
        None => (url.to_owned(), None),
    }
}

/// A subject as one path segment.
fn encode(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_a_header_and_never_show() {
        let (base, auth) = split_credentials("https://svc:s3cret@registry.example:8081/api");
        assert_eq!(base, "https://registry.example:8081/api");
        assert_eq!(auth.as_deref(), Some("Basic c3ZjOnMzY3JldA=="));
        let client = RegistryClient::new(
            "https://svc:s3cret@registry.example:8081",
            Duration::from_secs(1),
        );
        assert!(!format!("{client:?}").contains("s3cret"));
        assert!(!client.url().contains("s3cret"));
        assert_eq!(split_credentials("http://h:1").1, None);
    }

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(encode("accounts-value"), "accounts-value");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
