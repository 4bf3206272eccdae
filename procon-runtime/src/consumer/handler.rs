//! Event handlers: the [`EventHandler`] trait, the typed [`Event`] a handler receives, its
//! [`HandlerContext`], and the registry `start()` reads handlers from.

use std::fmt;
use std::ops::Deref;

use diesel::pg::PgConnection;
use serde::de::DeserializeOwned;

use crate::event::Envelope;
use crate::transport::Position;

/// Where a message was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Coordinates {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The message's position in the partition: the Kafka offset; on Kinesis ten times the
    /// record's sequence number (see [`Position`]).
    pub position: Position,
}

impl fmt::Display for Coordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]@{}", self.topic, self.partition, self.position)
    }
}

/// A decoded event, as a handler receives it: the envelope with a typed payload (through
/// `Deref`: `event.after`, `event.metadata`...) and where it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<T> {
    /// The envelope: event id, name, kind, key, before / after, metadata.
    pub envelope: Envelope<T>,
    /// Topic, partition and position of the message.
    pub coordinates: Coordinates,
}

impl<T> Deref for Event<T> {
    type Target = Envelope<T>;
    fn deref(&self) -> &Envelope<T> {
        &self.envelope
    }
}

/// What a handler gets besides the event: the database connection *inside* the transaction
/// that also records the consumption, and the consumer's identity.
pub struct HandlerContext<'a> {
    conn: &'a mut PgConnection,
    group_id: &'a str,
    coordinates: &'a Coordinates,
    after_commit: &'a mut AfterCommit,
}

/// Callbacks to run once the consumption's transaction committed.
pub(crate) type AfterCommit = Vec<Box<dyn FnOnce()>>;

impl<'a> HandlerContext<'a> {
    pub(crate) fn new(
        conn: &'a mut PgConnection,
        group_id: &'a str,
        coordinates: &'a Coordinates,
        after_commit: &'a mut AfterCommit,
    ) -> Self {
        HandlerContext {
            conn,
            group_id,
            coordinates,
            after_commit,
        }
    }

    /// Runs `callback` after the consumption's transaction committed; never if it rolls back.
    /// A crash between the commit and the callback skips it: use it for notifications and
    /// caches, not for effects that must happen (write those in the transaction).
    pub fn after_commit(&mut self, callback: impl FnOnce() + 'static) {
        self.after_commit.push(Box::new(callback));
    }

    /// The connection, inside the consumption's transaction: whatever the handler writes
    /// commits together with the record of the event's consumption, or not at all.
    pub fn conn(&mut self) -> &mut PgConnection {
        self.conn
    }

    /// The consumer group (the service name).
    pub fn group_id(&self) -> &str {
        self.group_id
    }

    /// Where the event was read from.
    pub fn coordinates(&self) -> &Coordinates {
        self.coordinates
    }
}

impl fmt::Debug for HandlerContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerContext")
            .field("group_id", &self.group_id)
            .field("coordinates", &self.coordinates)
            .finish_non_exhaustive()
    }
}

/// A handler's failure. Any error converts into it with `?`. The transaction is rolled back
/// and the event is retried; it is never skipped silently.
pub struct HandlerError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl HandlerError {
    /// A failure described by a message.
    pub fn msg(message: impl Into<String>) -> Self {
        HandlerError(message.into().into())
    }

    /// The underlying error.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.0
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        HandlerError(Box::new(error))
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A function that applies one kind of event.
///
/// `#[event_handler(topic = "accounts", event = "account.created")]` on a function writes this
/// impl (on a hidden unit struct) and registers it; by hand it reads:
///
/// ```
/// use procon_runtime::consumer::{Event, EventHandler, HandlerContext, HandlerError};
///
/// #[derive(serde::Deserialize)]
/// struct Account { id: i64, email: String }
///
/// struct OnAccountCreated;
///
/// impl EventHandler for OnAccountCreated {
///     const TOPIC: &'static str = "accounts";
///     const EVENT: &'static str = "account.created";
///     type Payload = Account;
///     fn handle(ctx: &mut HandlerContext<'_>, event: Event<Account>) -> Result<(), HandlerError> {
///         let _conn = ctx.conn(); // write the effect here, in the consumption's transaction
///         let _email = event.after.as_ref().map(|a| &a.email);
///         Ok(())
///     }
/// }
/// procon_runtime::register_handler!(OnAccountCreated);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event handler",
    note = "annotate a function with `#[event_handler(topic = \"...\", event = \"...\")]`, or implement `procon::EventHandler`"
)]
pub trait EventHandler: 'static {
    /// The topic the events are read from.
    const TOPIC: &'static str;
    /// The event name it handles, e.g. `account.created`.
    const EVENT: &'static str;
    /// The type `before` / `after` are decoded into.
    type Payload: DeserializeOwned;
    /// Applies the event. Runs inside the transaction that records the consumption.
    fn handle(
        ctx: &mut HandlerContext<'_>,
        event: Event<Self::Payload>,
    ) -> Result<(), HandlerError>;
}

/// Names the payload type of a handler's event argument: `Event<T>` → `T`. Used by the macro to
/// read the payload type off the function signature.
#[diagnostic::on_unimplemented(
    message = "the second argument of an event handler must be `Event<T>`, found `{Self}`",
    note = "write the handler as `fn(ctx: &mut HandlerContext<'_>, event: Event<Payload>) -> Result<(), HandlerError>`"
)]
pub trait HandlerEventArg {
    /// The payload type.
    type Payload;
}

impl<T> HandlerEventArg for Event<T> {
    type Payload = T;
}

/// Why a message could not be dispatched to its handler.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DispatchError {
    /// The payload is not a valid envelope of the handler's payload type.
    #[error("cannot decode the payload as `{payload_type}`: {source}")]
    Decode {
        payload_type: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The handler returned an error.
    #[error("the handler failed: {0}")]
    Handler(HandlerError),
    /// The handler panicked; its transaction was rolled back.
    #[error("the handler panicked: {0}")]
    Panicked(String),
}

/// The type-erased entry point of one handler.
pub(crate) type DispatchFn =
    fn(&mut HandlerContext<'_>, &[u8], Coordinates) -> Result<(), DispatchError>;

/// How a registered handler takes its events.
#[derive(Clone, Copy)]
pub(crate) enum Dispatch {
    /// One event per call ([`EventHandler`]).
    One(DispatchFn),
    /// The events of a unit in one call ([`super::BatchHandler`]).
    Batch(super::batch::BatchFn),
}

/// A registered handler, as collected by `inventory`.
#[derive(Clone, Copy)]
pub struct Registration {
    /// The topic.
    pub topic: &'static str,
    /// The event name.
    pub event: &'static str,
    /// The handler's name, for logs and errors.
    pub name: &'static str,
    pub(crate) dispatch: Dispatch,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("topic", &self.topic)
            .field("event", &self.event)
            .field("name", &self.name)
            .finish()
    }
}

impl Registration {
    /// The registration of handler `H`, named `name` in logs.
    pub const fn of<H: EventHandler>(name: &'static str) -> Self {
        Registration {
            topic: H::TOPIC,
            event: H::EVENT,
            name,
            dispatch: Dispatch::One(dispatch::<H>),
        }
    }

    /// The registration of batch handler `H`, named `name` in logs.
    pub const fn of_batch<H: super::BatchHandler>(name: &'static str) -> Self {
        Registration {
            topic: H::TOPIC,
            event: H::EVENT,
            name,
            dispatch: Dispatch::Batch(super::batch::dispatch_batch::<H>),
        }
    }

    /// Whether the handler takes its events in batches.
    pub fn is_batch(&self) -> bool {
        matches!(self.dispatch, Dispatch::Batch(_))
    }
}

/// Decodes `payload` as an envelope of `T`.
pub(crate) fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<Envelope<T>, DispatchError> {
    serde_json::from_slice(payload).map_err(|source| DispatchError::Decode {
        payload_type: std::any::type_name::<T>(),
        source,
    })
}

fn dispatch<H: EventHandler>(
    ctx: &mut HandlerContext<'_>,
    payload: &[u8],
    coordinates: Coordinates,
) -> Result<(), DispatchError> {
    let envelope = decode::<H::Payload>(payload)?;
    H::handle(
        ctx,
        Event {
            envelope,
            coordinates,
        },
    )
    .map_err(DispatchError::Handler)
}

inventory::collect!(Registration);

/// Every handler registered in this program.
pub fn registered_handlers() -> Vec<Registration> {
    inventory::iter::<Registration>
        .into_iter()
        .copied()
        .collect()
}

/// Registers a hand-written [`EventHandler`] so `start()` finds it (the macro does this for
/// annotated functions).
#[macro_export]
macro_rules! register_handler {
    ($handler:ty) => {
        $crate::__inventory::submit! {
            $crate::consumer::Registration::of::<$handler>(::core::stringify!($handler))
        }
    };
}
