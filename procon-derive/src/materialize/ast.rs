//! The validated model of a `#[derive(Materialize)]` input: all `expand.rs` needs.

use syn::{Ident, Path, Type};

/// A struct that passed every check.
pub(super) struct Model<'a> {
    /// The struct's name.
    pub(super) ident: &'a Ident,
    /// The topic the remote entity's events come from.
    pub(super) topic: String,
    /// The remote entity name (events `<entity>.created` ...).
    pub(super) entity: String,
    /// The Diesel table module (`customers`, `schema::customers`).
    pub(super) table: Path,
    /// The fields identifying a record (at least one).
    pub(super) master_key: Vec<&'a Ident>,
    /// Every field, in declaration order.
    pub(super) fields: Vec<Column<'a>>,
    /// Whether the model implements `MaterializeHooks` itself.
    pub(super) hooks: bool,
}

/// A field and how it is filled and written.
pub(super) struct Column<'a> {
    /// The field, also the column's name.
    pub(super) ident: &'a Ident,
    /// Its type, whose span locates type errors.
    pub(super) ty: &'a Type,
    /// Where its value comes from.
    pub(super) source: Source,
    /// Written by inserts.
    pub(super) on_insert: bool,
    /// Written by updates (never for master-key fields).
    pub(super) on_update: bool,
}

/// Where a field's value comes from.
pub(super) enum Source {
    /// An event attribute, by dot-separated path.
    Attribute(String),
    /// The topic the event was read from.
    Topic,
    /// The event time.
    EventTime,
    /// Nothing: `Default::default()`, never written.
    Skipped,
}
