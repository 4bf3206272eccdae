//! Avro messages as the apply step reads them: the JSON envelope, decoded with the writer's
//! schema (see [`crate::avro`]).
//!
//! Job: before a unit is applied, decode each framed message (a zero byte and a schema id in
//! front) with the schema the registry holds under that id. JSON messages pass untouched.
//! What can go wrong and what it leads to: a registry that cannot answer (or none configured)
//! is an outage, so the unit waits and is tried again without counting a failure; an id the
//! registry does not know, or a datum that does not match its schema, is the message's own
//! failure, counted and settled by the failure policy like an undecodable JSON payload.

use std::sync::Arc;

use crate::avro::{decode_envelope, unframe, RegistryClient, RegistryError};
use crate::config::SchemaRegistryConfig;

/// Why a message could not be decoded.
#[derive(Debug)]
pub(crate) enum Undecodable {
    /// The registry could not answer: try again later.
    Outage(RegistryError),
    /// The message itself cannot be decoded (unknown schema id, datum not of its schema).
    Invalid(String),
}

/// The consumer's registry client (none without `schema_registry.url`).
#[derive(Debug, Default)]
pub(crate) struct AvroDecoder {
    registry: Option<Arc<RegistryClient>>,
}

impl AvroDecoder {
    pub(crate) fn new(config: &SchemaRegistryConfig) -> Self {
        AvroDecoder {
            registry: config
                .url
                .as_deref()
                .map(|url| Arc::new(RegistryClient::new(url, config.timeout))),
        }
    }

    /// The JSON envelope of `payload` when it is a framed Avro message; `None` when it is
    /// not framed (JSON: read as it is).
    pub(crate) fn decode(&self, payload: &[u8]) -> Result<Option<Vec<u8>>, Undecodable> {
        let Some((id, datum)) = unframe(payload) else {
            return Ok(None);
        };
        let registry = self
            .registry
            .as_ref()
            .ok_or(Undecodable::Outage(RegistryError::NotConfigured))?;
        let schema = registry.schema(id).map_err(|error| match error {
            error if error.is_outage() => Undecodable::Outage(error),
            error => Undecodable::Invalid(format!("Avro message with schema id {id}: {error}")),
        })?;
        decode_envelope(&schema, datum).map(Some).map_err(|error| {
            Undecodable::Invalid(format!("Avro message with schema id {id}: {error}"))
        })
    }
}
