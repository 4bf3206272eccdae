//! Applying a unit of messages exactly once: one database transaction that records the
//! messages' event ids (a redelivered id is not applied again), runs their handlers, and checks
//! that this member still owns the partition before it commits.
//!
//! A message without an event id gets one derived from its (topic, partition, offset), so it
//! is recognised after a restart too. A panicking handler is caught inside the transaction: it
//! rolls back like a handler error and the connection stays usable.

use std::collections::HashMap;

use diesel::pg::PgConnection;
use diesel::Connection;
use uuid::Uuid;

use super::batch::BatchFn;
use super::handler::{
    AfterCommit, Coordinates, Dispatch, DispatchError, DispatchFn, HandlerContext, Registration,
};
use super::store;
use crate::config::UnknownEvents;
use crate::event::headers;
use crate::transport::{Message, PartitionId, Position};

/// The handlers of one consumer, by (topic as handlers name it, event name).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    handlers: HashMap<&'static str, HashMap<&'static str, Registration>>,
    /// Physical topic → the topic name handlers use.
    logical: HashMap<String, &'static str>,
}

/// Two handlers claim the same event.
#[derive(Debug, thiserror::Error)]
#[error("two handlers for event `{event}` on topic `{topic}`: `{first}` and `{second}`; keep one")]
pub struct DuplicateHandler {
    /// The topic.
    pub topic: &'static str,
    /// The event name.
    pub event: &'static str,
    /// One handler.
    pub first: &'static str,
    /// The other.
    pub second: &'static str,
}

impl Registry {
    /// Builds the registry, refusing two handlers for one event.
    pub(crate) fn new(
        registrations: impl IntoIterator<Item = Registration>,
        physical: impl Fn(&'static str) -> String,
    ) -> Result<Self, DuplicateHandler> {
        let mut registry = Registry::default();
        for registration in registrations {
            let key = (registration.topic, registration.event);
            let events = registry.handlers.entry(registration.topic).or_default();
            if let Some(first) = events.get(registration.event) {
                let (first, second) = if first.name <= registration.name {
                    (first.name, registration.name)
                } else {
                    (registration.name, first.name)
                };
                return Err(DuplicateHandler {
                    topic: key.0,
                    event: key.1,
                    first,
                    second,
                });
            }
            events.insert(registration.event, registration);
            registry
                .logical
                .insert(physical(registration.topic), registration.topic);
        }
        Ok(registry)
    }

    /// The physical topics to subscribe to.
    pub(crate) fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.logical.keys().cloned().collect();
        topics.sort();
        topics
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }

    /// The failure policy of a physical topic (configured by the name handlers use).
    pub(crate) fn failure_policy<'c>(
        &self,
        config: &'c crate::config::ConsumerConfig,
        physical_topic: &str,
    ) -> &'c crate::config::FailurePolicy {
        match self.logical.get(physical_topic) {
            Some(logical) => config.failure_policy(logical),
            None => &config.failure,
        }
    }

    /// Whether a batch handler reads this physical topic.
    pub(crate) fn has_batch_handler(&self, physical_topic: &str) -> bool {
        self.logical
            .get(physical_topic)
            .and_then(|logical| self.handlers.get(logical))
            .is_some_and(|events| events.values().any(Registration::is_batch))
    }

    fn handler(&self, physical_topic: &str, event: &str) -> Option<&Registration> {
        let logical = self.logical.get(physical_topic)?;
        self.handlers.get(logical)?.get(event)
    }
}

/// One message as the apply step reads it.
pub(crate) struct Incoming<'a> {
    pub(crate) coordinates: Coordinates,
    /// The `procon-event` header, if any.
    pub(crate) event_header: Option<&'a str>,
    /// The `procon-event-id` header, if any.
    pub(crate) event_id_header: Option<&'a str>,
    /// The `traceparent` header (W3C trace context of the emitter), if any.
    pub(crate) traceparent_header: Option<&'a str>,
    pub(crate) payload: &'a [u8],
}

impl<'a> Incoming<'a> {
    /// A transport message as the apply step reads it.
    pub(crate) fn of(message: &'a Message) -> Self {
        Incoming {
            coordinates: Coordinates {
                topic: message.partition.topic.clone(),
                partition: message.partition.partition,
                position: message.position,
            },
            event_header: message.header(headers::EVENT_NAME),
            event_id_header: message.header(headers::EVENT_ID),
            traceparent_header: message.header(headers::TRACEPARENT),
            payload: &message.payload,
        }
    }
}

/// The namespace of event ids derived from a message's coordinates.
const COORDINATES_NAMESPACE: Uuid = Uuid::from_u128(0x7072_6f63_6f6e_0000_8000_0000_0000_0001);

/// The event id of a message that carries none: derived from where it sits, so that the same
/// message read again gets the same id.
pub(crate) fn synthetic_event_id(topic: &str, partition: i32, position: Position) -> Uuid {
    Uuid::new_v5(
        &COORDINATES_NAMESPACE,
        format!("{topic}/{partition}/{position}").as_bytes(),
    )
}

/// What applying a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The handler ran and its effects committed.
    Handled,
    /// The event id was applied before (a redelivery): only the position advanced.
    Duplicate,
    /// No handler is registered for the event; recorded as consumed.
    NoHandler,
}

/// Why a message could not be applied. The transaction was rolled back: nothing of it stays.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The message says neither which event it is nor is it an envelope.
    #[error("{coordinates}: cannot tell which event this is (no `procon-event` header, and the payload is not an event envelope: {reason})")]
    Unidentified {
        coordinates: Coordinates,
        reason: String,
    },
    /// The message is Avro and cannot be decoded (an unknown schema id, a datum that does not
    /// match its schema).
    #[error("{coordinates}: cannot decode the message: {reason}")]
    Undecodable {
        coordinates: Coordinates,
        reason: String,
    },
    /// Decoding or the handler failed.
    #[error("{coordinates} event `{event}`: {source}")]
    Dispatch {
        coordinates: Coordinates,
        event: String,
        #[source]
        source: DispatchError,
    },
    /// No handler, and unknown events are configured to stop the partition.
    #[error("{coordinates} event `{event}`: no handler is registered (unknown events are configured to stop)")]
    Unknown {
        coordinates: Coordinates,
        event: String,
    },
    /// The database failed; the connection is dropped and re-established.
    #[error("{coordinates}: database error: {source}")]
    Database {
        coordinates: Coordinates,
        #[source]
        source: diesel::result::Error,
    },
    /// Another member claimed the partition (or a replay moved it): this member's work of
    /// claim `epoch` is refused.
    #[error("{partition}: another member owns the partition now, or a replay moved it; the work is left to it")]
    Fenced {
        /// The partition.
        partition: PartitionId,
        /// The epoch of the claim the refused work belonged to.
        epoch: i64,
    },
}

/// What a message says about itself when headers are missing.
#[derive(serde::Deserialize)]
struct Head {
    event: Option<String>,
    event_id: Option<Uuid>,
}

/// What is known of a message that failed: its event name (from the error, the header or the
/// payload) and its own event id, when it has one.
pub(crate) fn identity(
    message: &Incoming<'_>,
    error: &ApplyError,
) -> (Option<String>, Option<Uuid>) {
    let head: Option<Head> = serde_json::from_slice(message.payload).ok();
    let event = error
        .event()
        .map(str::to_owned)
        .or_else(|| message.event_header.map(str::to_owned))
        .or_else(|| head.as_ref().and_then(|h| h.event.clone()));
    let event_id = message
        .event_id_header
        .and_then(|h| Uuid::parse_str(h).ok())
        .or_else(|| head.and_then(|h| h.event_id));
    (event, event_id)
}

/// A message identified: which event it is and its id, read before any transaction starts.
struct Identified<'m, 'a> {
    message: &'m Incoming<'a>,
    event: String,
    event_id: Uuid,
    registration: Option<&'m Registration>,
}

fn identify<'m, 'a>(
    registry: &'m Registry,
    unknown: UnknownEvents,
    message: &'m Incoming<'a>,
) -> Result<Identified<'m, 'a>, ApplyError> {
    let coordinates = &message.coordinates;
    let head = match (message.event_header, message.event_id_header) {
        (Some(_), Some(_)) => None,
        _ => Some(
            serde_json::from_slice::<Head>(message.payload).map_err(|e| {
                ApplyError::Unidentified {
                    coordinates: coordinates.clone(),
                    reason: e.to_string(),
                }
            })?,
        ),
    };
    let event = match (
        message.event_header,
        head.as_ref().and_then(|h| h.event.clone()),
    ) {
        (Some(header), _) => header.to_owned(),
        (None, Some(event)) => event,
        (None, None) => {
            return Err(ApplyError::Unidentified {
                coordinates: coordinates.clone(),
                reason: "it has no `event` field".to_owned(),
            })
        }
    };
    let event_id = message
        .event_id_header
        .and_then(|h| Uuid::parse_str(h).ok())
        .or_else(|| head.as_ref().and_then(|h| h.event_id))
        .unwrap_or_else(|| {
            synthetic_event_id(
                &coordinates.topic,
                coordinates.partition,
                coordinates.position,
            )
        });
    let registration = registry.handler(&coordinates.topic, &event);
    if registration.is_none() && unknown == UnknownEvents::Stop {
        return Err(ApplyError::Unknown {
            coordinates: coordinates.clone(),
            event,
        });
    }
    Ok(Identified {
        message,
        event,
        event_id,
        registration,
    })
}

/// Who applies a unit: the group, its handlers, and the partition's claim.
pub(crate) struct UnitContext<'r> {
    pub(crate) group: &'r str,
    pub(crate) registry: &'r Registry,
    pub(crate) unknown: UnknownEvents,
    pub(crate) partition: &'r PartitionId,
    pub(crate) epoch: i64,
    /// The replay in progress on the partition, if any.
    pub(crate) replay: Option<store::Replay>,
}

/// Handlers applying replayed messages publish nothing (`procon.publish = 'off'`, read by the
/// outbox's inserts) when the replay says so; `on` again for the others of the unit.
fn set_publishing(conn: &mut PgConnection, on: bool) -> diesel::QueryResult<()> {
    use diesel::RunQueryDsl;
    diesel::sql_query("SELECT set_config('procon.publish', $1, true)")
        .bind::<diesel::sql_types::Text, _>(if on { "on" } else { "off" })
        .execute(conn)
        .map(|_| ())
}

/// A unit that failed: which message (its index), and why. Nothing of the unit stays.
#[derive(Debug)]
pub(crate) struct UnitFailed {
    /// The index of the message that failed, when one did (not a commit failure or a fence).
    pub(crate) index: Option<usize>,
    /// Boxed: the error carries coordinates (a 256-bit position) and a source.
    pub(crate) error: Box<ApplyError>,
}

/// Applies `messages` of one partition (runs of lanes, each in order) in one transaction:
/// record their event ids, run the handler of each new one, check the claim, commit; then
/// forget the counted failures of `retried` positions. On any error the whole transaction is
/// rolled back and nothing of the unit stays.
pub(crate) fn apply_unit(
    conn: &mut PgConnection,
    unit: &UnitContext<'_>,
    messages: &[Incoming<'_>],
    retried: &[Position],
) -> Result<Vec<Applied>, UnitFailed> {
    let Some(first) = messages.first() else {
        return Ok(Vec::new());
    };
    let identified = messages
        .iter()
        .enumerate()
        .map(|(index, m)| {
            identify(unit.registry, unit.unknown, m).map_err(|error| UnitFailed {
                index: Some(index),
                error: Box::new(error),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let database = |coordinates: &Coordinates| {
        let coordinates = coordinates.clone();
        move |source| UnitFailed {
            index: None,
            error: Box::new(ApplyError::Database {
                coordinates,
                source,
            }),
        }
    };
    let mut after_commit: AfterCommit = Vec::new();
    // Messages below the replay's end are recorded under the replay's own name: applied once
    // in this replay although applied before.
    let replayed = |item: &Identified<'_, '_>| {
        unit.replay
            .is_some_and(|r| item.message.coordinates.position < r.until)
    };
    let silenced =
        |item: &Identified<'_, '_>| replayed(item) && unit.replay.is_some_and(|r| !r.publish);
    let outcomes = conn.transaction(|conn| {
        let (again, usual): (Vec<&Identified<'_, '_>>, Vec<&Identified<'_, '_>>) =
            identified.iter().partition(|item| replayed(item));
        let ids: Vec<Uuid> = usual.iter().map(|i| i.event_id).collect();
        let mut new_ids =
            store::record_events(conn, unit.group, &ids).map_err(database(&first.coordinates))?;
        if let (Some(replay), false) = (unit.replay, again.is_empty()) {
            let name = format!("{}/replay-{}", unit.group, replay.generation);
            let ids: Vec<Uuid> = again.iter().map(|i| i.event_id).collect();
            new_ids.extend(
                store::record_events(conn, &name, &ids).map_err(database(&first.coordinates))?,
            );
        }
        let mut publishing = true;
        // An id twice in one unit is new only the first time.
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        let mut outcomes = Vec::with_capacity(identified.len());
        // Events for batch handlers wait here (as indices) and are handed over together; before
        // any other handler runs, so that every key keeps its order.
        let mut batches: Vec<(&Registration, BatchFn, Vec<usize>)> = Vec::new();
        for (index, item) in identified.iter().enumerate() {
            let fresh = new_ids.contains(&item.event_id) && seen.insert(item.event_id);
            let applied = match item.registration.map(|r| (r, r.dispatch)) {
                _ if !fresh => Applied::Duplicate,
                Some((registration, Dispatch::Batch(dispatch))) => {
                    match batches
                        .iter_mut()
                        .find(|(r, _, _)| std::ptr::eq(*r, registration))
                    {
                        Some((_, _, indices)) => indices.push(index),
                        None => batches.push((registration, dispatch, vec![index])),
                    }
                    Applied::Handled
                }
                Some((registration, Dispatch::One(dispatch))) => {
                    for (batch, dispatch_batch, indices) in batches.drain(..) {
                        let quiet = indices.iter().all(|i| silenced(&identified[*i]));
                        if quiet == publishing {
                            publishing = !quiet;
                            set_publishing(conn, publishing)
                                .map_err(database(&first.coordinates))?;
                        }
                        let run = (batch, dispatch_batch, indices.as_slice());
                        run_batch(conn, unit.group, &identified, run, &mut after_commit)?;
                    }
                    if silenced(item) == publishing {
                        publishing = !silenced(item);
                        set_publishing(conn, publishing).map_err(database(&first.coordinates))?;
                    }
                    let run = (registration, dispatch);
                    run_handler(conn, unit.group, item, run, &mut after_commit).map_err(
                        |error| UnitFailed {
                            index: Some(index),
                            error: Box::new(error),
                        },
                    )?;
                    Applied::Handled
                }
                None => Applied::NoHandler,
            };
            outcomes.push(applied);
        }
        for (batch, dispatch_batch, indices) in batches.drain(..) {
            let quiet = indices.iter().all(|i| silenced(&identified[*i]));
            if quiet == publishing {
                publishing = !quiet;
                set_publishing(conn, publishing).map_err(database(&first.coordinates))?;
            }
            let run = (batch, dispatch_batch, indices.as_slice());
            run_batch(conn, unit.group, &identified, run, &mut after_commit)?;
        }
        if !store::check_epoch(conn, unit.group, unit.partition, unit.epoch)
            .map_err(database(&first.coordinates))?
        {
            return Err(UnitFailed {
                index: None,
                error: Box::new(ApplyError::Fenced {
                    partition: unit.partition.clone(),
                    epoch: unit.epoch,
                }),
            });
        }
        store::clear_failures(conn, unit.group, unit.partition, retried)
            .map_err(database(&first.coordinates))?;
        Ok::<_, UnitFailed>(outcomes)
    })?;
    for callback in after_commit {
        callback();
    }
    Ok(outcomes)
}

/// Runs one handler in a span whose parent is the emitter's span (when the message carries
/// its trace context); a panic is caught and reported as the handler's failure.
fn run_handler(
    conn: &mut PgConnection,
    group: &str,
    item: &Identified<'_, '_>,
    run: (&Registration, DispatchFn),
    after_commit: &mut AfterCommit,
) -> Result<(), ApplyError> {
    let (registration, dispatch) = run;
    let coordinates = &item.message.coordinates;
    let span = tracing::info_span!(
        "procon.handle",
        event = %item.event,
        handler = registration.name,
        topic = %coordinates.topic,
        partition = coordinates.partition,
        offset = %coordinates.position,
    );
    crate::trace::set_parent(&span, item.message.traceparent_header);
    let _entered = span.enter();
    let mut ctx = HandlerContext::new(conn, group, coordinates, after_commit);
    let result = caught(|| dispatch(&mut ctx, item.message.payload, coordinates.clone()))
        .unwrap_or_else(|panic| Err(DispatchError::Panicked(panic)));
    result.map_err(|source| ApplyError::Dispatch {
        coordinates: coordinates.clone(),
        event: item.event.clone(),
        source,
    })
}

/// Runs a batch handler on the unit's events at `indices` (in unit order), in a span of its
/// own; a panic is caught like in [`run_handler`]. A failure names the event when it is known
/// (a decode error, or a batch of one); otherwise the unit is retried one event at a time.
fn run_batch(
    conn: &mut PgConnection,
    group: &str,
    identified: &[Identified<'_, '_>],
    run: (&Registration, BatchFn, &[usize]),
    after_commit: &mut AfterCommit,
) -> Result<(), UnitFailed> {
    let (registration, dispatch, indices) = run;
    let first = &identified[indices[0]];
    let coordinates = &first.message.coordinates;
    let span = tracing::info_span!(
        "procon.handle_batch",
        event = %first.event,
        handler = registration.name,
        topic = %coordinates.topic,
        partition = coordinates.partition,
        first_offset = %coordinates.position,
        events = indices.len(),
    );
    let _entered = span.enter();
    let items: Vec<(&[u8], Coordinates)> = indices
        .iter()
        .map(|i| {
            (
                identified[*i].message.payload,
                identified[*i].message.coordinates.clone(),
            )
        })
        .collect();
    let mut ctx = HandlerContext::new(conn, group, coordinates, after_commit);
    let (at, source) = match caught(|| dispatch(&mut ctx, &items)) {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(failed)) => failed,
        Err(panic) => (None, DispatchError::Panicked(panic)),
    };
    let index = match (at, indices) {
        (Some(at), _) => Some(indices[at]),
        (None, [only]) => Some(*only),
        (None, _) => None,
    };
    let culprit = &identified[index.unwrap_or(indices[0])];
    Err(UnitFailed {
        index,
        error: Box::new(ApplyError::Dispatch {
            coordinates: culprit.message.coordinates.clone(),
            event: culprit.event.clone(),
            source,
        }),
    })
}

/// Runs a handler, turning a panic into its message: the transaction around it then rolls
/// back like after an error.
fn caught<R>(handler: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler))
        .map_err(|panic| panic_text(panic.as_ref()))
}

/// The message a panic carried.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

impl ApplyError {
    /// The event name, when the error knows it.
    pub(crate) fn event(&self) -> Option<&str> {
        match self {
            ApplyError::Dispatch { event, .. } | ApplyError::Unknown { event, .. } => Some(event),
            ApplyError::Unidentified { .. }
            | ApplyError::Undecodable { .. }
            | ApplyError::Database { .. }
            | ApplyError::Fenced { .. } => None,
        }
    }
}

impl From<diesel::result::Error> for ApplyError {
    /// Only reached when BEGIN / COMMIT / ROLLBACK themselves fail.
    fn from(source: diesel::result::Error) -> Self {
        ApplyError::Database {
            coordinates: Coordinates {
                topic: String::new(),
                partition: -1,
                position: Position::ZERO,
            },
            source,
        }
    }
}

impl From<diesel::result::Error> for UnitFailed {
    /// Only reached when BEGIN / COMMIT / ROLLBACK themselves fail.
    fn from(source: diesel::result::Error) -> Self {
        UnitFailed {
            index: None,
            error: Box::new(ApplyError::from(source)),
        }
    }
}
