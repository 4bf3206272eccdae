//! Framing Avro outbox rows for the wire: each row's datum gets the registry's id of its
//! schema in front (the Confluent format, [`crate::avro::frame`]).
//!
//! Invariants: a row is framed with the id the registry gave for its own schema under its
//! own subject, or not sent at all. The id of a (subject, schema) is asked once per relay
//! process: the registry never changes it. A registry that cannot answer fails the row as a
//! transient error (its key backs off, the row stays in the outbox); a registry that refuses
//! the schema is a rejection (the row is parked after `relay.park_after_attempts`).

use std::collections::HashMap;
use std::sync::Arc;

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
    ids: HashMap<(String, String), u32>,
}

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

    /// Frames `row` (published to `physical_topic`) when it is an Avro event: its payload
    /// becomes the framed datum and its content type Avro's. The outer error is the
    /// database's (it ends the session); the inner one is the row's.
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
        let subject = self.strategy.subject(physical_topic, &stored.full_name);
        let key = (subject, fingerprint);
        let id = match self.ids.get(&key) {
            Some(id) => *id,
            None => {
                let Some(registry) = self.registry.clone() else {
                    return Ok(Err(RegistryError::NotConfigured.into()));
                };
                let (subject, text, auto_register) =
                    (key.0.clone(), stored.text.clone(), self.auto_register);
                let asked = tokio::task::spawn_blocking(move || {
                    if auto_register {
                        registry.register(&subject, &text).map(Some)
                    } else {
                        registry.lookup(&subject, &text)
                    }
                })
                .await;
                match asked {
                    Ok(Ok(Some(id))) => {
                        tracing::info!(subject = key.0, id, "Avro schema registered");
                        self.ids.insert(key, id);
                        id
                    }
                    Ok(Ok(None)) => return Ok(Err(TransportError::SchemaUnregistered(key.0))),
                    Ok(Err(error)) => return Ok(Err(error.into())),
                    Err(join) => {
                        return Ok(Err(RegistryError::Unavailable {
                            url: String::new(),
                            reason: format!("the registry call did not finish: {join}"),
                        }
                        .into()))
                    }
                }
            }
        };
        row.payload = frame(id, &row.payload);
        row.headers.push((
            headers::CONTENT_TYPE.to_owned(),
            AVRO_CONTENT_TYPE.to_owned(),
        ));
        Ok(Ok(()))
    }
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
