//! Reading a record's fields out of an event image (`after` or `before`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One side of an event (`after`, or `before` for deletes) with what else a field may be
/// taken from: the topic and the event time.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    value: &'a Value,
    topic: &'a str,
    occurred_at: DateTime<Utc>,
}

/// Why a record could not be built from an event. The event is not applied (the consumer's
/// failure policy decides what happens next).
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    /// The event has no `after` (or `before`, for a delete).
    #[error("`{event}` has no `{side}` image to materialize")]
    MissingImage {
        /// The event name.
        event: String,
        /// `after` or `before`.
        side: &'static str,
    },
    /// A mapped attribute is absent from the image.
    #[error("attribute `{path}` is missing from the event (mapped to `{field}`)")]
    Missing {
        /// The attribute path, e.g. `profile.email`.
        path: &'static str,
        /// The local field.
        field: &'static str,
    },
    /// A mapped attribute has a value the field's type cannot hold.
    #[error("attribute `{path}` cannot be read into `{field}`: {source}")]
    Type {
        /// The attribute path.
        path: &'static str,
        /// The local field.
        field: &'static str,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

impl<'a> Image<'a> {
    /// An image of `value`, read from `topic`, emitted at `occurred_at`.
    pub fn new(value: &'a Value, topic: &'a str, occurred_at: DateTime<Utc>) -> Self {
        Image {
            value,
            topic,
            occurred_at,
        }
    }

    /// The attribute at `path` (dot-separated for nested objects) decoded as `T`, for `field`.
    /// A JSON `null` or an absent attribute decodes into an `Option` field as `None`.
    pub fn attribute<T: DeserializeOwned>(
        &self,
        path: &'static str,
        field: &'static str,
    ) -> Result<T, MaterializeError> {
        let mut value = Some(self.value);
        for segment in path.split('.') {
            value = value.and_then(|v| v.get(segment));
        }
        let value = value.cloned().unwrap_or(Value::Null);
        serde_json::from_value(value.clone()).map_err(|source| {
            if value.is_null() {
                MaterializeError::Missing { path, field }
            } else {
                MaterializeError::Type {
                    path,
                    field,
                    source,
                }
            }
        })
    }

    /// The topic the event was read from.
    pub fn topic<T: From<String>>(&self) -> T {
        T::from(self.topic.to_owned())
    }

    /// When the event was emitted.
    pub fn event_time<T: EventTime>(&self) -> T {
        T::from_event_time(self.occurred_at)
    }
}

/// Types a field mapped to the event time can have.
pub trait EventTime {
    /// Converts the event time.
    fn from_event_time(at: DateTime<Utc>) -> Self;
}

impl EventTime for DateTime<Utc> {
    fn from_event_time(at: DateTime<Utc>) -> Self {
        at
    }
}

impl EventTime for NaiveDateTime {
    fn from_event_time(at: DateTime<Utc>) -> Self {
        at.naive_utc()
    }
}

impl<T: EventTime> EventTime for Option<T> {
    fn from_event_time(at: DateTime<Utc>) -> Self {
        Some(T::from_event_time(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(value: &Value) -> Image<'_> {
        Image::new(value, "accounts", DateTime::UNIX_EPOCH)
    }

    #[test]
    fn nested_paths_and_options() {
        let value = serde_json::json!({ "id": 4, "profile": { "email": "a@b" }, "nick": null });
        let image = image(&value);
        assert_eq!(image.attribute::<i64>("id", "id").unwrap(), 4);
        assert_eq!(
            image.attribute::<String>("profile.email", "email").unwrap(),
            "a@b"
        );
        assert_eq!(
            image.attribute::<Option<String>>("nick", "nick").unwrap(),
            None
        );
        assert_eq!(
            image.attribute::<Option<String>>("absent", "x").unwrap(),
            None
        );
        assert_eq!(image.topic::<String>(), "accounts");
    }

    #[test]
    fn missing_and_mistyped_attributes_name_the_path_and_field() {
        let value = serde_json::json!({ "id": "four" });
        let image = image(&value);
        let missing = image
            .attribute::<i64>("profile.email", "email")
            .unwrap_err();
        assert!(matches!(
            missing,
            MaterializeError::Missing {
                path: "profile.email",
                ..
            }
        ));
        let mistyped = image.attribute::<i64>("id", "account_id").unwrap_err();
        assert!(mistyped.to_string().contains("`id`"), "{mistyped}");
        assert!(mistyped.to_string().contains("`account_id`"), "{mistyped}");
    }
}
