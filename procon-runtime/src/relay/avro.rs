//! Framing Avro outbox rows for the wire: each row's datum gets the registry's id of its
//! schema in front (the Confluent format, [`crate::avro::frame`]).
//!
//! Invariants: a row is framed with the id the registry gave for its own schema under its
//! own subject, or not sent at all. The id of a (subject, schema) is asked once per relay
//! session, by one call at a time: the registry never changes it. An attempt waits at most
//! [`ANSWER_WAIT`] for the answer (a slower one is picked up by a later attempt), so a slow
//! registry never stalls the other keys' rows. A registry that cannot answer fails the row as a
//! transient error (its key backs off, the row stays in the outbox); a registry that refuses
//! the schema is a rejection (the row is parked after `relay.park_after_attempts`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::source::{OutboxRow, OutboxSource, SourceError};
use crate::avro::{frame, RegistryClient, RegistryError, SubjectStrategy, AVRO_CONTENT_TYPE};
use crate::config::SchemaRegistryConfig;
use crate::event::headers;
use crate::transport::TransportError;

/// A schema read from `procon_schemas`, with the record name its subject may need.
struct StoredSchema {
    text: Arc<str>,
    full_name: String,
}

/// The relay's registry client and what it learned.
pub(crate) struct AvroFraming {
    registry: Option<Arc<RegistryClient>>,
    strategy: SubjectStrategy,
    auto_register: bool,
    schemas: HashMap<String, StoredSchema>,
    ids: HashMap<(String, String), Lookup>,
}

/// A call to the registry running on the blocking pool: the id, or none (not registered and
/// only looked up).
type Asking = tokio::task::JoinHandle<Result<Option<u32>, RegistryError>>;

/// What the relay knows of the id of a (subject, schema fingerprint).
enum Lookup {
    /// The registry's id: never asked again.
    Known(u32),
    /// The registry is being asked.
    Asking(Asking),
}

/// How long one attempt waits for the registry before the row is retried later: a registry
/// that answers in milliseconds costs the first event nothing; a slow one never holds the
/// other keys' rows longer than this.
const ANSWER_WAIT: Duration = Duration::from_millis(200);

impl AvroFraming {
    pub(crate) fn new(config: &SchemaRegistryConfig) -> Self {
        AvroFraming {
            registry: config
                .url
                .as_deref()
                .map(|url| Arc::new(RegistryClient::new(url, config.timeout))),
            strategy: config.subject_strategy,
            auto_register: config.auto_register,
            schemas: HashMap::new(),
            ids: HashMap::new(),
        }
    }

    /// Frames `row` (an Avro event, published to `physical_topic`): its payload becomes the
    /// framed datum and its content type Avro's. The outer error is the database's (it ends
    /// the session); the inner one is the row's.
    pub(crate) async fn frame(
        &mut self,
        row: &mut OutboxRow,
        physical_topic: &str,
        source: &OutboxSource,
    ) -> Result<Result<(), TransportError>, SourceError> {
        let Some(fingerprint) = row.avro_schema.clone() else {
            return Ok(Ok(()));
        };
        if !self.schemas.contains_key(&fingerprint) {
            let Some(text) = source.schema_text(&fingerprint).await? else {
                return Ok(Err(TransportError::SchemaMissing(fingerprint)));
            };
            let full_name = record_full_name(&text);
            let stored = StoredSchema {
                text: text.into(),
                full_name,
            };
            self.schemas.insert(fingerprint.clone(), stored);
        }
        let stored = &self.schemas[&fingerprint];
        let key = (
            self.strategy.subject(physical_topic, &stored.full_name),
            fingerprint,
        );
        let asking = match self.ids.remove(&key) {
            Some(Lookup::Known(id)) => {
                self.ids.insert(key, Lookup::Known(id));
                put_on_the_wire(row, id);
                return Ok(Ok(()));
            }
            Some(Lookup::Asking(asking)) => asking,
            None => {
                let Some(registry) = self.registry.clone() else {
                    return Ok(Err(RegistryError::NotConfigured.into()));
                };
                let (subject, text, auto_register) =
                    (key.0.clone(), stored.text.clone(), self.auto_register);
                tokio::task::spawn_blocking(move || {
                    if auto_register {
                        registry.register(&subject, &text).map(Some)
                    } else {
                        registry.lookup(&subject, &text)
                    }
                })
            }
        };
        Ok(self
            .answer(key, asking)
            .await
            .map(|id| put_on_the_wire(row, id)))
    }

    /// The registry's URL (password hidden), for errors.
    fn registry_url(&self) -> String {
        self.registry
            .as_ref()
            .map_or_else(String::new, |r| r.url().to_owned())
    }

    /// Waits (at most [`ANSWER_WAIT`]) for the registry's answer about `key`: a late answer is
    /// left running and picked up by the next attempt, so a slow registry holds the rounds
    /// that long at most, and is never asked twice at once about one schema.
    async fn answer(
        &mut self,
        key: (String, String),
        mut asking: Asking,
    ) -> Result<u32, TransportError> {
        let Ok(answered) = tokio::time::timeout(ANSWER_WAIT, &mut asking).await else {
            self.ids.insert(key, Lookup::Asking(asking));
            return Err(RegistryError::Unavailable {
                url: self.registry_url(),
                reason: format!("no answer within {ANSWER_WAIT:?} (still asking)"),
            }
            .into());
        };
        match answered {
            Ok(Ok(Some(id))) => {
                tracing::info!(subject = key.0, id, "Avro schema registered");
                self.ids.insert(key, Lookup::Known(id));
                Ok(id)
            }
            Ok(Ok(None)) => Err(TransportError::SchemaUnregistered(key.0)),
            Ok(Err(error)) => Err(error.into()),
            Err(join) => Err(RegistryError::Unavailable {
                url: self.registry_url(),
                reason: format!("the registry call did not finish: {join}"),
            }
            .into()),
        }
    }
}

/// The datum framed with schema `id`, and Avro's content type.
fn put_on_the_wire(row: &mut OutboxRow, id: u32) {
    row.payload = frame(id, &row.payload);
    row.headers.push((
        headers::CONTENT_TYPE.to_owned(),
        AVRO_CONTENT_TYPE.to_owned(),
    ));
}

/// The full name of the record a schema text defines (`namespace.name`).
fn record_full_name(text: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let name = value["name"].as_str().unwrap_or_default();
    match value["namespace"].as_str() {
        Some(namespace) if !namespace.is_empty() && !name.contains('.') => {
            format!("{namespace}.{name}")
        }
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::record_full_name;

    #[test]
    fn the_record_name_includes_its_namespace() {
        assert_eq!(
            record_full_name(
                r#"{"type":"record","name":"AccountEvent","namespace":"com.acme","fields":[]}"#
            ),
            "com.acme.AccountEvent"
        );
        assert_eq!(
            record_full_name(r#"{"type":"record","name":"AccountEvent","fields":[]}"#),
            "AccountEvent"
        );
    }
}
