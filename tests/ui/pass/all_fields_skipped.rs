//! A struct whose every field is skipped writes an empty payload, and its key may be a skipped
//! field (the key is part of the message, not of the payload).

#![deny(warnings)]

use procon::Outbox;

#[derive(Outbox)]
#[procon(topic = "pings", key = at)]
struct Ping {
    #[procon(skip)]
    at: u64,
}

/// Serializes through `Outbox::serialize_payload` rather than `Serialize`.
struct Payload<'a, T>(&'a T);

impl<T: Outbox> serde::Serialize for Payload<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
}

fn main() {
    let ping = Ping { at: 3 };
    assert_eq!(Ping::ENTITY, "ping");
    assert_eq!(ping.key(), "3");
    assert_eq!(
        serde_json::to_value(Payload(&ping)).unwrap(),
        serde_json::json!({}),
    );
}
