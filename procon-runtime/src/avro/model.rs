//! The Avro schema of a model's events: the payload record derived from the Rust type, and
//! the envelope record that carries it.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use apache_avro::schema::{Name, Namespace};
use apache_avro::Schema;
use serde_json::{json, Value};
use uuid::Uuid;

/// A model's Avro schema could not be built (a name Avro does not accept, a field type that
/// is not a schema...). Reported at emit and by `procon schemas`, never as a panic.
#[derive(Debug, thiserror::Error)]
#[error("the Avro schema of `{record}` is invalid: {reason}")]
pub struct AvroSchemaError {
    /// The record (type) the schema was built for.
    pub record: String,
    /// What Avro objected to.
    pub reason: String,
}

/// The named types defined so far while a schema is built (`AvroSchemaComponent`'s context).
pub type Names = HashMap<Name, Schema>;

/// The namespace of schema fingerprints (UUID v5 of the schema's text).
const FINGERPRINT_NAMESPACE: Uuid = Uuid::from_u128(0x7072_6f63_6f6e_0000_8000_0000_0000_00a5);

/// A model's Avro schemas: its payload record, and the envelope record its events are encoded
/// with (what is registered).
#[derive(Debug, Clone)]
pub struct AvroModel {
    /// The payload record (the `before` / `after` of the envelope).
    pub payload: Schema,
    /// The envelope record, `<Payload>Event` in the payload's namespace.
    pub envelope: Schema,
    /// The envelope schema as JSON: what is stored in `procon_schemas` and registered.
    pub text: String,
    /// Names this schema text in `procon_schemas` (a UUID v5 of the text).
    pub fingerprint: String,
    /// The envelope record's full name (`com.acme.AccountEvent`), for the record-name subject
    /// strategies.
    pub full_name: String,
}

impl AvroModel {
    /// The schemas of events whose payload is the record `payload`.
    pub fn new(payload: Schema) -> Result<Self, AvroSchemaError> {
        let Schema::Record(record) = &payload else {
            return Err(AvroSchemaError {
                record: format!("{payload:?}"),
                reason: "the payload of an event must be a record".to_owned(),
            });
        };
        let name = record.name.clone();
        let event_name = format!("{}Event", name.name);
        let payload_json = serde_json::to_value(&payload).map_err(|e| AvroSchemaError {
            record: name.name.clone(),
            reason: e.to_string(),
        })?;
        let payload_ref = name.fullname(None);
        let mut envelope = json!({
            "type": "record",
            "name": event_name,
            "doc": "A procon event envelope (docs/ENVELOPE.md).",
            "fields": [
                {"name": "schema_version", "type": "int"},
                {"name": "event_id", "type": "string"},
                {"name": "event", "type": "string"},
                {"name": "entity", "type": "string"},
                {"name": "kind", "type": "string"},
                {"name": "key", "type": "string"},
                {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                {"name": "before", "type": ["null", payload_json], "default": null},
                {"name": "after", "type": ["null", payload_ref], "default": null},
                {"name": "metadata", "type": {"type": "map", "values": "string"}, "default": {},
                 "doc": "Each value is the JSON text of the metadata entry."},
                {"name": "traceparent", "type": ["null", "string"], "default": null},
            ],
        });
        if let Some(namespace) = &name.namespace {
            envelope["namespace"] = Value::String(namespace.clone());
        }
        let text = envelope.to_string();
        let schema = Schema::parse_str(&text).map_err(|e| AvroSchemaError {
            record: event_name.clone(),
            reason: e.to_string(),
        })?;
        let full_name = match name.namespace {
            Some(namespace) => format!("{namespace}.{event_name}"),
            None => event_name,
        };
        Ok(AvroModel {
            payload,
            envelope: schema,
            fingerprint: fingerprint(&text),
            text,
            full_name,
        })
    }

    /// The schemas of model `T`, built by `build` the first time and kept for the life of the
    /// process (what `#[derive(Outbox)]` with `format = "avro"` calls).
    pub fn of<T: 'static>(
        build: impl FnOnce() -> Result<Schema, AvroSchemaError>,
    ) -> Result<&'static AvroModel, AvroSchemaError> {
        static MODELS: OnceLock<Mutex<HashMap<TypeId, &'static AvroModel>>> = OnceLock::new();
        let models = MODELS.get_or_init(Default::default);
        if let Some(model) = models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&TypeId::of::<T>())
        {
            return Ok(model);
        }
        // Built outside the lock; two threads racing build the same value, one is kept.
        let model: &'static AvroModel = Box::leak(Box::new(AvroModel::new(build()?)?));
        let mut models = models.lock().unwrap_or_else(|e| e.into_inner());
        Ok(models.entry(TypeId::of::<T>()).or_insert(model))
    }
}

/// The fingerprint `procon_schemas` stores a schema text under.
pub(crate) fn fingerprint(text: &str) -> String {
    Uuid::new_v5(&FINGERPRINT_NAMESPACE, text.as_bytes()).to_string()
}

/// A payload record named `name` (in `namespace`), its fields built by `fields` in one naming
/// context, so a named type used twice is defined once. A field whose type is a union with
/// `null` first (an `Option`) defaults to `null`, so adding one is a compatible change.
pub fn payload_record(
    name: &str,
    namespace: Option<&str>,
    fields: impl FnOnce(&mut Names, &Namespace) -> Vec<(&'static str, Schema)>,
) -> Result<Schema, AvroSchemaError> {
    let invalid = |reason: String| AvroSchemaError {
        record: name.to_owned(),
        reason,
    };
    // Checked here: apache-avro panics on some invalid names instead of returning an error.
    let names_ok = is_avro_name(name) && namespace.is_none_or(|ns| ns.split('.').all(is_avro_name));
    if !names_ok {
        return Err(invalid(
            "names and namespaces are letters, digits and `_`, starting with a letter or `_`"
                .to_owned(),
        ));
    }
    let mut names = Names::default();
    let enclosing: Namespace = namespace.map(str::to_owned);
    let fields = fields(&mut names, &enclosing)
        .into_iter()
        .map(|(field, schema)| {
            if !is_avro_name(field) {
                return Err(invalid(format!("field `{field}` is not an Avro name")));
            }
            let optional =
                matches!(&schema, Schema::Union(u) if u.variants().first() == Some(&Schema::Null));
            let schema = serde_json::to_value(&schema).map_err(|e| invalid(e.to_string()))?;
            let mut field = json!({"name": field, "type": schema});
            if optional {
                field["default"] = Value::Null;
            }
            Ok(field)
        })
        .collect::<Result<Vec<_>, AvroSchemaError>>()?;
    let mut record = json!({"type": "record", "name": name, "fields": fields});
    if let Some(namespace) = namespace {
        record["namespace"] = Value::String(namespace.to_owned());
    }
    Schema::parse_str(&record.to_string()).map_err(|e| invalid(e.to_string()))
}

/// `[A-Za-z_][A-Za-z0-9_]*`, Avro's rule for names.
fn is_avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One model declared `format = "avro"`, collected from the whole program (what
/// `procon schemas` lists, registers and checks).
#[derive(Debug)]
pub struct AvroRegistration {
    /// The model's entity name.
    pub entity: &'static str,
    /// The topic its events go to (as models name it).
    pub topic: &'static str,
    /// Its schemas (`Outbox::avro_model`).
    pub model: fn() -> Option<Result<&'static AvroModel, AvroSchemaError>>,
}

inventory::collect!(AvroRegistration);

/// Every Avro model of this program, by entity.
pub fn registered_models() -> Vec<&'static AvroRegistration> {
    let mut models: Vec<_> = inventory::iter::<AvroRegistration>.into_iter().collect();
    models.sort_by_key(|m| (m.entity, m.topic));
    models
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::schema::derive::AvroSchemaComponent;

    fn account() -> Result<Schema, AvroSchemaError> {
        payload_record("Account", Some("com.acme"), |names, ns| {
            vec![
                ("id", i64::get_schema_in_ctxt(names, ns)),
                ("email", String::get_schema_in_ctxt(names, ns)),
                ("nickname", Option::<String>::get_schema_in_ctxt(names, ns)),
            ]
        })
    }

    #[test]
    fn an_optional_field_defaults_to_null_and_the_envelope_embeds_the_payload() {
        let model = AvroModel::new(account().unwrap()).unwrap();
        assert_eq!(model.full_name, "com.acme.AccountEvent");
        let text: Value = serde_json::from_str(&model.text).unwrap();
        let before = &text["fields"][7];
        assert_eq!(before["name"], "before");
        let payload = &before["type"][1];
        assert_eq!(payload["name"], "Account");
        assert_eq!(payload["fields"][2]["default"], Value::Null);
        assert!(payload["fields"][1].get("default").is_none());
        assert_eq!(text["fields"][8]["type"][1], "com.acme.Account");
        assert_eq!(model.fingerprint, fingerprint(&model.text));
    }

    #[test]
    fn a_name_avro_refuses_is_an_error_not_a_panic() {
        let error = payload_record("Bad-Name", None, |_, _| Vec::new()).unwrap_err();
        assert_eq!(error.record, "Bad-Name");
        let error = payload_record("Good", Some("com.1acme"), |_, _| Vec::new()).unwrap_err();
        assert_eq!(error.record, "Good");
        let error = payload_record("Good", None, |names, ns| {
            vec![("e-mail", String::get_schema_in_ctxt(names, ns))]
        })
        .unwrap_err();
        assert!(error.reason.contains("e-mail"), "{error}");
    }
}
