//! Batch handlers (Broadway's `handle_batch`): a handler that takes the events of a unit in one
//! call, inside the unit's transaction.
//!
//! A unit holds up to `batch_size` events of one partition (whole runs of lanes, each in
//! order); a batch handler gets those of its event, in that order, split by its
//! [`BatchHandler::batch_key`]. To keep each key's order when a lane mixes events of a batch
//! handler with others, a pending batch is handed over before a later event of one of its
//! lanes goes to another handler. With `batch_timeout` set, a partition whose topic has a batch
//! handler waits up to that long for `batch_size` events before it is handed out.

use serde::de::DeserializeOwned;

use super::handler::{decode, Coordinates, DispatchError, Event, HandlerContext, HandlerError};

/// A handler that applies the events of a unit in one call. Register it with
/// [`crate::register_batch_handler!`].
///
/// ```
/// use procon_runtime::consumer::{BatchHandler, Event, HandlerContext, HandlerError};
///
/// #[derive(serde::Deserialize)]
/// struct Reading { sensor: String, value: f64 }
///
/// struct StoreReadings;
///
/// impl BatchHandler for StoreReadings {
///     const TOPIC: &'static str = "readings";
///     const EVENT: &'static str = "reading.created";
///     type Payload = Reading;
///     fn handle_batch(
///         ctx: &mut HandlerContext<'_>,
///         events: Vec<Event<Reading>>,
///     ) -> Result<(), HandlerError> {
///         let _conn = ctx.conn(); // one multi-row INSERT for the whole batch, say
///         let _values: Vec<f64> = events.iter().filter_map(|e| e.after.as_ref()).map(|r| r.value).collect();
///         Ok(())
///     }
/// }
/// procon_runtime::register_batch_handler!(StoreReadings);
/// ```
pub trait BatchHandler: 'static {
    /// The topic the events are read from.
    const TOPIC: &'static str;
    /// The event name it handles.
    const EVENT: &'static str;
    /// The type `before` / `after` are decoded into.
    type Payload: DeserializeOwned;

    /// Splits a unit's events into batches (Broadway's `batch_key`): events with the same key
    /// go to one call, in order. Default: one batch per unit.
    fn batch_key(_event: &Event<Self::Payload>) -> Option<String> {
        None
    }

    /// Applies the events, in order. Runs inside the transaction that records their
    /// consumption: an error rolls the whole unit back, and its events are then applied one
    /// at a time (batches of one) so the failing event is found and retried alone.
    fn handle_batch(
        ctx: &mut HandlerContext<'_>,
        events: Vec<Event<Self::Payload>>,
    ) -> Result<(), HandlerError>;
}

/// A batch handler's failure: the index (in the batch) of the event that could not be decoded,
/// when that is what failed.
pub(crate) type BatchFailed = (Option<usize>, DispatchError);

/// The type-erased entry point of a batch handler.
pub(crate) type BatchFn =
    fn(&mut HandlerContext<'_>, &[(&[u8], Coordinates)]) -> Result<(), BatchFailed>;

/// Events of one batch key, in order.
type KeyedBatch<T> = (Option<String>, Vec<Event<T>>);

pub(crate) fn dispatch_batch<H: BatchHandler>(
    ctx: &mut HandlerContext<'_>,
    items: &[(&[u8], Coordinates)],
) -> Result<(), BatchFailed> {
    let mut batches: Vec<KeyedBatch<H::Payload>> = Vec::new();
    for (index, (payload, coordinates)) in items.iter().enumerate() {
        let envelope = decode::<H::Payload>(payload).map_err(|e| (Some(index), e))?;
        let event = Event {
            envelope,
            coordinates: coordinates.clone(),
        };
        let key = H::batch_key(&event);
        match batches.iter_mut().find(|(k, _)| *k == key) {
            Some((_, events)) => events.push(event),
            None => batches.push((key, vec![event])),
        }
    }
    for (_, events) in batches {
        H::handle_batch(ctx, events).map_err(|e| (None, DispatchError::Handler(e)))?;
    }
    Ok(())
}

/// Registers a hand-written [`BatchHandler`] so `start()` finds it.
#[macro_export]
macro_rules! register_batch_handler {
    ($handler:ty) => {
        $crate::__inventory::submit! {
            $crate::consumer::Registration::of_batch::<$handler>(::core::stringify!($handler))
        }
    };
}
