//! The validated model of a `#[derive(Outbox)]` input: what `valid.rs` produces once every
//! check passed, with every default applied, and all `expand.rs` needs.

use syn::{Generics, Ident, Path, Type};

/// A struct that passed every check.
pub(super) struct Model<'a> {
    /// The struct's name.
    pub(super) ident: &'a Ident,
    /// The struct's generics, repeated on the impl.
    pub(super) generics: &'a Generics,
    /// `Outbox::ENTITY`: `entity = "..."` or the struct name in snake_case.
    pub(super) entity: String,
    /// What `Outbox::topic` returns.
    pub(super) topic: String,
    /// The field whose value is `Outbox::key`.
    pub(super) key: Member<'a>,
    /// The fields written by `Outbox::serialize_payload`, in declaration order (skipped fields
    /// left out).
    pub(super) payload: Vec<PayloadField<'a>>,
    /// The realtime builder functions, in the order written.
    pub(super) realtime: Vec<Path>,
    /// The throttle window (ms) given to built notifications that set none.
    pub(super) rt_threshold: Option<u32>,
    /// Set when the events are published as Avro (`format = "avro"`).
    pub(super) avro: Option<Avro>,
}

/// How an Avro model names its records.
pub(super) struct Avro {
    /// `avro_namespace = "..."`, if written.
    pub(super) namespace: Option<String>,
    /// The payload record's name: `avro_name = "..."` or the struct's name.
    pub(super) name: String,
}

/// A field of the struct, as the generated code accesses it.
pub(super) struct Member<'a> {
    /// The field's name: `self.<ident>`.
    pub(super) ident: &'a Ident,
    /// The field's type, whose span locates errors about it (e.g. a missing trait impl).
    pub(super) ty: &'a Type,
}

/// A field written to the payload.
pub(super) struct PayloadField<'a> {
    /// Its name in the payload: `rename = "..."` or the field name.
    pub(super) name: String,
    /// The field itself.
    pub(super) member: Member<'a>,
}
