//! The [`Outbox`] trait: what a model must say about itself to be published.

use std::borrow::Cow;

use crate::avro::{AvroModel, AvroSchemaError};
use crate::realtime::{Change, Realtime};

/// A model whose changes are published as events through the transactional outbox.
///
/// `#[derive(Outbox)]` writes this impl from `#[procon(...)]` attributes; writing it by hand
/// gives exactly the same behaviour:
///
/// ```
/// use std::borrow::Cow;
/// use procon_runtime::outbox::Outbox;
/// use serde::ser::{SerializeStruct, Serializer};
///
/// struct Account { id: i64, email: String, password_hash: String }
///
/// impl Outbox for Account {
///     const ENTITY: &'static str = "account";
///     fn topic(&self) -> Cow<'_, str> { Cow::Borrowed("accounts") }
///     fn key(&self) -> String { self.id.to_string() }
///     fn serialize_payload<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
///         // `password_hash` is left out of the event, like `#[procon(skip)]` would.
///         let mut state = serializer.serialize_struct("Account", 2)?;
///         state.serialize_field("id", &self.id)?;
///         state.serialize_field("email", &self.email)?;
///         state.end()
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be published through the outbox",
    note = "add `#[derive(Outbox)]` and `#[procon(topic = \"...\")]` to `{Self}`, or implement `procon::Outbox` by hand"
)]
pub trait Outbox {
    /// The entity name: the first half of event names such as `account.created`.
    const ENTITY: &'static str;

    /// The Kafka topic this entity's events are published to.
    fn topic(&self) -> Cow<'_, str>;

    /// The Kafka message key. Events with the same key go to the same partition, in order.
    fn key(&self) -> String;

    /// Writes the event payload (the `before` / `after` objects of the envelope).
    fn serialize_payload<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;

    /// The Avro schemas of this model's events when it is published as Avro
    /// (`#[procon(format = "avro")]` writes `Some(AvroModel::of::<Self>(...))`); `None`, the
    /// default, publishes the JSON envelope. See [`crate::avro`].
    fn avro_model() -> Option<Result<&'static AvroModel, AvroSchemaError>>
    where
        Self: Sized,
    {
        None
    }

    /// Realtime notifications for a change of this entity, written to the outbox with the event
    /// (so they exist only if it commits). `#[procon(realtime = builder)]` fills this in from
    /// builder functions. Default: none.
    fn realtime(change: &Change<'_, Self>) -> Vec<Realtime>
    where
        Self: Sized,
    {
        let _ = change;
        Vec::new()
    }
}

/// Serializes a model through [`Outbox::serialize_payload`] instead of its own `Serialize` impl.
pub(crate) struct Payload<'a, T: ?Sized>(pub(crate) &'a T);

impl<T: Outbox + ?Sized> serde::Serialize for Payload<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
}
