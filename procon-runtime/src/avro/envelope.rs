//! The envelope as an Avro datum: encoding an event at emit, decoding a message on the
//! consumer into the JSON envelope every handler reads (docs/ENVELOPE.md).

use apache_avro::types::Value;
use apache_avro::Schema;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AvroModel;
use crate::event::EnvelopeHead;

/// An event could not be encoded in its model's schema, or a message could not be decoded
/// with its writer's schema. Carries Avro's own explanation.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AvroCodecError(pub(crate) String);

impl AvroCodecError {
    fn of(context: &str, error: impl std::fmt::Display) -> Self {
        AvroCodecError(format!("{context}: {error}"))
    }
}

/// The envelope of `head` with payloads `before` / `after`, as a datum of `model.envelope`
/// (no framing: the relay adds the registry's schema id).
pub(crate) fn encode_envelope<P: Serialize>(
    model: &AvroModel,
    head: &EnvelopeHead<'_>,
    before: Option<P>,
    after: Option<P>,
) -> Result<Vec<u8>, AvroCodecError> {
    let payload = |value: Option<P>| -> Result<Value, AvroCodecError> {
        Ok(match value {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(value) => {
                let value = apache_avro::to_value(value)
                    .map_err(|e| AvroCodecError::of("the payload cannot be written as Avro", e))?
                    .resolve(&model.payload)
                    .map_err(|e| {
                        AvroCodecError::of("the payload does not match its Avro schema", e)
                    })?;
                Value::Union(1, Box::new(value))
            }
        })
    };
    let metadata = head
        .metadata
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.to_string())))
        .collect();
    let string = |s: &str| Value::String(s.to_owned());
    let record = Value::Record(vec![
        (
            "schema_version".into(),
            Value::Int(head.schema_version as i32),
        ),
        ("event_id".into(), Value::String(head.event_id.to_string())),
        ("event".into(), string(head.event)),
        ("entity".into(), string(head.entity)),
        ("kind".into(), string(head.kind.as_str())),
        ("key".into(), string(head.key)),
        (
            "occurred_at".into(),
            Value::TimestampMicros(head.occurred_at.timestamp_micros()),
        ),
        ("before".into(), payload(before)?),
        ("after".into(), payload(after)?),
        ("metadata".into(), Value::Map(metadata)),
        (
            "traceparent".into(),
            match head.traceparent {
                Some(t) => Value::Union(1, Box::new(string(t))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
    ]);
    apache_avro::to_avro_datum(&model.envelope, record)
        .map_err(|e| AvroCodecError::of("the event does not match its Avro schema", e))
}

/// Decodes `datum` with the writer's `schema` into the JSON envelope (the form every handler
/// and materializer reads): `occurred_at` back to RFC 3339 with six fractional digits,
/// metadata values back from their JSON text, unions unwrapped.
pub(crate) fn decode_envelope(schema: &Schema, datum: &[u8]) -> Result<Vec<u8>, AvroCodecError> {
    let mut reader = datum;
    let value = apache_avro::from_avro_datum(schema, &mut reader, None)
        .map_err(|e| AvroCodecError::of("the datum does not match its writer's schema", e))?;
    let Value::Record(fields) = value else {
        return Err(AvroCodecError(
            "the writer's schema is not a record (an event envelope)".to_owned(),
        ));
    };
    let mut envelope = serde_json::Map::with_capacity(fields.len());
    for (name, value) in fields {
        let json = match (name.as_str(), value) {
            ("occurred_at", Value::TimestampMicros(micros) | Value::Long(micros)) => {
                let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(|| {
                    AvroCodecError(format!("occurred_at {micros} is out of range"))
                })?;
                serde_json::Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            }
            ("metadata", Value::Map(entries)) => serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| {
                        let json = match value {
                            Value::String(text) => serde_json::from_str(&text)
                                .unwrap_or(serde_json::Value::String(text)),
                            other => serde_json::Value::try_from(other)
                                .unwrap_or(serde_json::Value::Null),
                        };
                        (key, json)
                    })
                    .collect(),
            ),
            (_, value) => serde_json::Value::try_from(value)
                .map_err(|e| AvroCodecError::of(&format!("field `{name}`"), e))?,
        };
        envelope.insert(name, json);
    }
    serde_json::to_vec(&envelope).map_err(|e| AvroCodecError::of("the envelope", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::payload_record;
    use crate::event::{EventKind, Metadata};
    use apache_avro::schema::derive::AvroSchemaComponent;
    use uuid::Uuid;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Account {
        id: i64,
        email: String,
        nickname: Option<String>,
    }

    fn model() -> AvroModel {
        let payload = payload_record("Account", None, |names, ns| {
            vec![
                ("id", i64::get_schema_in_ctxt(names, ns)),
                ("email", String::get_schema_in_ctxt(names, ns)),
                ("nickname", Option::<String>::get_schema_in_ctxt(names, ns)),
            ]
        })
        .unwrap();
        AvroModel::new(payload).unwrap()
    }

    #[test]
    fn an_envelope_encoded_then_decoded_is_the_json_envelope() {
        let model = model();
        let mut metadata = Metadata::new();
        metadata.insert("request_id".into(), "r-1".into());
        metadata.insert("attempt".into(), 2.into());
        let occurred_at = "2026-11-23T10:59:12.123456Z".parse().unwrap();
        let head = EnvelopeHead {
            schema_version: 1,
            event_id: Uuid::nil(),
            event: "account.updated",
            entity: "account",
            kind: EventKind::Updated,
            key: "42",
            occurred_at,
            metadata: &metadata,
            traceparent: None,
        };
        let before = Account {
            id: 42,
            email: "old@example.com".into(),
            nickname: None,
        };
        let after = Account {
            id: 42,
            email: "new@example.com".into(),
            nickname: Some("n".into()),
        };
        let datum = encode_envelope(&model, &head, Some(&before), Some(&after)).unwrap();
        let json = decode_envelope(&model.envelope, &datum).unwrap();
        let envelope: crate::event::Envelope<Account> = serde_json::from_slice(&json).unwrap();
        assert_eq!(envelope.before, Some(before));
        assert_eq!(envelope.after, Some(after));
        assert_eq!(envelope.occurred_at, occurred_at);
        assert_eq!(envelope.metadata, metadata);
        assert_eq!(envelope.kind, EventKind::Updated);
        assert_eq!(envelope.traceparent, None);
        let text: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(text["occurred_at"], "2026-11-23T10:59:12.123456Z");
    }

    #[test]
    fn a_payload_of_the_wrong_shape_and_a_truncated_datum_are_errors() {
        let model = model();
        let metadata = Metadata::new();
        let head = EnvelopeHead {
            schema_version: 1,
            event_id: Uuid::nil(),
            event: "account.created",
            entity: "account",
            kind: EventKind::Created,
            key: "1",
            occurred_at: Utc::now(),
            metadata: &metadata,
            traceparent: None,
        };
        #[derive(Serialize)]
        struct Wrong {
            id: String,
        }
        let error =
            encode_envelope(&model, &head, None, Some(Wrong { id: "x".into() })).unwrap_err();
        assert!(error.to_string().contains("does not match"), "{error}");
        let good = encode_envelope(
            &model,
            &head,
            None,
            Some(Account {
                id: 1,
                email: "e".into(),
                nickname: None,
            }),
        )
        .unwrap();
        let error = decode_envelope(&model.envelope, &good[..good.len() / 2]).unwrap_err();
        assert!(error.to_string().contains("writer's schema"), "{error}");
    }
}
