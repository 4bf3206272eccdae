//! Avro events with a Confluent-compatible schema registry (the KaufmannEx seed).
//!
//! Job: give a model declared `#[procon(format = "avro")]` an Avro schema derived from its Rust
//! type, encode its events in that schema, put them on the wire in the Confluent format
//! (a zero byte, the registry's 4-byte schema id, the Avro datum), and decode such messages
//! on the consumer with the writer's schema fetched by id.
//!
//! Where each step happens, and why:
//! - **Emit** (`outbox::emit`): the envelope is encoded as an Avro datum, in the caller's
//!   transaction, next to the JSON envelope (which stays in the row for operators). The
//!   envelope's schema text is stored once in `procon_schemas` by fingerprint, in the same
//!   statement. No registry call happens here: a registry outage never fails an emit.
//! - **Relay** (`relay::rounds`): a row with a schema fingerprint is framed with the schema's
//!   registry id, registered (or looked up) once per subject and cached. While the registry
//!   cannot answer, the row stays in the outbox and its key backs off like a broker outage:
//!   publishing is delayed, nothing is lost or sent without its id. A registry that refuses the
//!   schema (incompatible, invalid) is a rejection: the row is parked after
//!   `relay.park_after_attempts`, with the registry's error.
//! - **Consumer** (`consumer::processor`): a message that starts with the zero byte is decoded
//!   with its writer schema (fetched by id, cached) and turned into the JSON envelope every
//!   handler and materializer already reads. The handler's type is filled by field name: a
//!   field the writer added is ignored, a field the writer lacks takes the type's
//!   `#[serde(default)]`, and a type mismatch is a decode error that follows the failure
//!   policy. An unknown schema id is a decode error too; a registry that cannot answer is an
//!   outage (retried, never counted as a failure).

mod compatibility;
mod envelope;
mod model;
pub mod registry;
mod subject;
mod wire;

pub use apache_avro;
pub use compatibility::incompatibilities;
pub use envelope::AvroCodecError;
pub(crate) use envelope::{decode_envelope, encode_envelope};
pub use model::{payload_record, registered_models, AvroModel, AvroRegistration, AvroSchemaError};
pub use registry::{CompatibilityReport, RegistryClient, RegistryError, Version};
pub use subject::{Compatibility, SubjectStrategy};
pub use wire::{frame, unframe};

/// The content type of Avro events (the `content-type` header the relay sets).
pub const AVRO_CONTENT_TYPE: &str = "avro/binary";
