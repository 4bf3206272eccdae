//! Applying one message exactly once: one database transaction that checks the stored
//! position, records the event id, runs the handler and stores the next position.

use std::collections::HashMap;

use diesel::pg::PgConnection;
use diesel::Connection;
use uuid::Uuid;

use super::handler::{AfterCommit, Coordinates, DispatchError, HandlerContext, Registration};
use super::store;
use crate::config::UnknownEvents;

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

    fn handler(&self, physical_topic: &str, event: &str) -> Option<&Registration> {
        let logical = self.logical.get(physical_topic)?;
        self.handlers.get(logical)?.get(event)
    }
}

/// One message as read from Kafka.
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

/// What applying a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The handler ran and its effects committed.
    Handled,
    /// The event id was applied before (a redelivery): only the position advanced.
    Duplicate,
    /// The stored position is already past this offset (applied before): nothing was done.
    PastPosition,
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
}

/// What a message says about itself when headers are missing.
#[derive(serde::Deserialize)]
struct Head {
    event: Option<String>,
    event_id: Option<Uuid>,
}

/// A message identified: which event it is and its id, read before any transaction starts.
struct Identified<'m, 'a> {
    message: &'m Incoming<'a>,
    event: String,
    event_id: Option<Uuid>,
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
        .or_else(|| head.as_ref().and_then(|h| h.event_id));
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

/// Applies consecutive messages of *one* partition, in offset order, in one transaction: lock
/// the position, apply each message not yet applied, store the position after the last one,
/// commit. On any error the whole transaction is rolled back and nothing of the batch stays.
pub(crate) fn apply_batch(
    conn: &mut PgConnection,
    group: &str,
    registry: &Registry,
    unknown: UnknownEvents,
    messages: &[Incoming<'_>],
) -> Result<Vec<Applied>, ApplyError> {
    let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
        return Ok(Vec::new());
    };
    let identified = messages
        .iter()
        .map(|m| identify(registry, unknown, m))
        .collect::<Result<Vec<_>, _>>()?;
    let (topic, partition) = (&first.coordinates.topic, first.coordinates.partition);
    let database = |coordinates: &Coordinates| {
        let coordinates = coordinates.clone();
        move |source| ApplyError::Database {
            coordinates,
            source,
        }
    };
    let mut after_commit: AfterCommit = Vec::new();
    let outcomes = conn.transaction(|conn| {
        let next = store::lock_position(conn, group, topic, partition)
            .map_err(database(&first.coordinates))?;
        let pending =
            |item: &&Identified<'_, '_>| next < 0 || item.message.coordinates.offset >= next;
        let ids: Vec<Uuid> = identified
            .iter()
            .filter(pending)
            .filter_map(|i| i.event_id)
            .collect();
        let new_ids =
            store::record_events(conn, group, &ids).map_err(database(&first.coordinates))?;
        // An id twice in one batch is new only the first time.
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        let mut outcomes = Vec::with_capacity(identified.len());
        for item in &identified {
            let coordinates = &item.message.coordinates;
            if !pending(&item) {
                outcomes.push(Applied::PastPosition);
                continue;
            }
            let fresh = match item.event_id {
                Some(id) => new_ids.contains(&id) && seen.insert(id),
                None => true,
            };
            let applied = match item.registration {
                _ if !fresh => Applied::Duplicate,
                Some(registration) => {
                    // The handler runs in a span whose parent is the emitter's span, when the
                    // message carries its trace context.
                    let span = tracing::info_span!(
                        "procon.handle",
                        event = %item.event,
                        handler = registration.name,
                        topic = %coordinates.topic,
                        partition = coordinates.partition,
                        offset = coordinates.offset,
                    );
                    crate::trace::set_parent(&span, item.message.traceparent_header);
                    let _entered = span.enter();
                    let mut ctx = HandlerContext::new(conn, group, coordinates, &mut after_commit);
                    registration
                        .dispatch(&mut ctx, item.message.payload, coordinates.clone())
                        .map_err(|source| ApplyError::Dispatch {
                            coordinates: coordinates.clone(),
                            event: item.event.clone(),
                            source,
                        })?;
                    Applied::Handled
                }
                None => Applied::NoHandler,
            };
            outcomes.push(applied);
        }
        let end = last.coordinates.offset + 1;
        if next < end {
            store::save_position(conn, group, topic, partition, end)
                .map_err(database(&last.coordinates))?;
        }
        Ok::<_, ApplyError>(outcomes)
    })?;
    for callback in after_commit {
        callback();
    }
    Ok(outcomes)
}

impl ApplyError {
    /// The event name, when the error knows it.
    pub(crate) fn event(&self) -> Option<&str> {
        match self {
            ApplyError::Dispatch { event, .. } | ApplyError::Unknown { event, .. } => Some(event),
            ApplyError::Unidentified { .. } | ApplyError::Database { .. } => None,
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
                offset: -1,
            },
            source,
        }
    }
}
