//! Materializing another service's entity into a local table, driven by its events.
//!
//! Job: apply `<entity>.created` / `.updated` / `.deleted` events of a topic to a local Diesel
//! model, without hand-written upserts. `#[derive(Materialize)]` writes the [`Materialize`]
//! impl (field mapping and SQL); the rules below live here.
//!
//! Rules (each applied inside the consumer's transaction, so exactly once per event):
//! - `created` → insert the record built from `after`; if a record with the same master key
//!   exists, update it instead (an upsert on the master key, which needs a unique index).
//! - `updated` → the same upsert: update the record, or insert it when it is missing (the
//!   creation was never seen, e.g. the table was materialized after it happened).
//! - `deleted` → delete the record whose master key is taken from `before`; when there is none,
//!   nothing is deleted and [`Outcome::NothingToDelete`] is reported to the hooks (and logged).
//! - Columns marked `skip_on_create` are not written by inserts, `skip_on_update` not by
//!   updates, `skip` never (the local table's defaults or the hooks own them).
//! - Hooks ([`MaterializeHooks`]) run in the transaction before and after each change and once
//!   the message is processed; `after_commit` runs after the transaction committed. A hook may
//!   write to the outbox through `ctx.conn()`: such replies commit with the consumption, so
//!   consume → produce is exactly once without Kafka transactions.

mod image;

pub use image::{EventTime, Image, MaterializeError};

use diesel::pg::PgConnection;
use serde_json::Value;

use crate::consumer::{Event, EventHandler, HandlerContext, HandlerError};
use crate::event::EventKind;

/// A local model kept in sync with a remote entity's events. Written by
/// `#[derive(Materialize)]`; can be written by hand (then register it with
/// [`register_materializer!`](crate::register_materializer)).
pub trait Materialize: MaterializeHooks + Sized + Send + 'static {
    /// The topic the remote entity's events are read from.
    const TOPIC: &'static str;
    /// `<entity>.created`.
    const CREATED: &'static str;
    /// `<entity>.updated`.
    const UPDATED: &'static str;
    /// `<entity>.deleted`.
    const DELETED: &'static str;

    /// Builds the record from an event image (`after`, or `before` for deletes).
    fn from_image(image: &Image<'_>) -> Result<Self, MaterializeError>;

    /// Inserts the record, or updates the one with the same master key.
    fn upsert(&self, conn: &mut PgConnection) -> diesel::QueryResult<usize>;

    /// Deletes the record with this master key; returns how many rows went.
    fn delete(&self, conn: &mut PgConnection) -> diesel::QueryResult<usize>;
}

/// What applying one event did to the local table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The record was inserted or updated.
    Upserted,
    /// The record was deleted.
    Deleted,
    /// A delete found no record with that master key; nothing changed.
    NothingToDelete,
}

/// Hooks around materialization, each with a default that does nothing. `#[derive(Materialize)]`
/// writes an empty impl unless `#[procon(hooks)]` says the model implements them itself.
pub trait MaterializeHooks: Sized {
    /// In the transaction, before the record is written (or deleted).
    fn before_change(
        ctx: &mut HandlerContext<'_>,
        kind: EventKind,
        record: &Self,
        event: &Event<Value>,
    ) -> Result<(), HandlerError> {
        let _ = (ctx, kind, record, event);
        Ok(())
    }

    /// In the transaction, after the record was written (or deleted).
    fn after_change(
        ctx: &mut HandlerContext<'_>,
        outcome: Outcome,
        record: &Self,
        event: &Event<Value>,
    ) -> Result<(), HandlerError> {
        let _ = (ctx, outcome, record, event);
        Ok(())
    }

    /// In the transaction, once the message is processed (after `after_change`).
    fn message_processed(
        ctx: &mut HandlerContext<'_>,
        event: &Event<Value>,
    ) -> Result<(), HandlerError> {
        let _ = (ctx, event);
        Ok(())
    }

    /// After the transaction committed (not called if it rolled back). Runs on the consumer
    /// thread: keep it short, and do not assume it runs exactly once (a crash right after the
    /// commit skips it).
    fn after_commit(outcome: Outcome, record: Self) {
        let _ = (outcome, record);
    }
}

/// Applies one event of kind `kind` to model `T`, with every hook.
pub fn apply<T: Materialize>(
    ctx: &mut HandlerContext<'_>,
    kind: EventKind,
    event: Event<Value>,
) -> Result<Outcome, HandlerError> {
    let (image, side) = match kind {
        EventKind::Deleted => (event.before.as_ref(), "before"),
        EventKind::Created | EventKind::Updated => (event.after.as_ref(), "after"),
    };
    let image = image.ok_or_else(|| {
        HandlerError::from(MaterializeError::MissingImage {
            event: event.event.clone(),
            side,
        })
    })?;
    let topic = ctx.coordinates().topic.clone();
    let record = T::from_image(&Image::new(image, &topic, event.occurred_at))?;
    T::before_change(ctx, kind, &record, &event)?;
    let outcome = match kind {
        EventKind::Deleted => match record.delete(ctx.conn())? {
            0 => {
                tracing::info!(event = event.event, key = event.key, "nothing to delete");
                Outcome::NothingToDelete
            }
            _ => Outcome::Deleted,
        },
        EventKind::Created | EventKind::Updated => {
            record.upsert(ctx.conn())?;
            Outcome::Upserted
        }
    };
    T::after_change(ctx, outcome, &record, &event)?;
    T::message_processed(ctx, &event)?;
    ctx.after_commit(move || T::after_commit(outcome, record));
    Ok(outcome)
}

macro_rules! kind_handler {
    ($name:ident, $kind:expr, $event:ident, $doc:literal) => {
        #[doc = $doc]
        pub struct $name<T>(std::marker::PhantomData<T>);

        impl<T: Materialize> EventHandler for $name<T> {
            const TOPIC: &'static str = T::TOPIC;
            const EVENT: &'static str = T::$event;
            type Payload = Value;
            fn handle(
                ctx: &mut HandlerContext<'_>,
                event: Event<Value>,
            ) -> Result<(), HandlerError> {
                apply::<T>(ctx, $kind, event).map(|_| ())
            }
        }
    };
}
kind_handler!(
    OnCreated,
    EventKind::Created,
    CREATED,
    "Applies `<entity>.created` to `T`."
);
kind_handler!(
    OnUpdated,
    EventKind::Updated,
    UPDATED,
    "Applies `<entity>.updated` to `T`."
);
kind_handler!(
    OnDeleted,
    EventKind::Deleted,
    DELETED,
    "Applies `<entity>.deleted` to `T`."
);

/// Registers the three handlers of a [`Materialize`] model so `start()` finds them
/// (`#[derive(Materialize)]` does this itself).
#[macro_export]
macro_rules! register_materializer {
    ($model:ty) => {
        $crate::register_handler!($crate::materialize::OnCreated<$model>);
        $crate::register_handler!($crate::materialize::OnUpdated<$model>);
        $crate::register_handler!($crate::materialize::OnDeleted<$model>);
    };
}
