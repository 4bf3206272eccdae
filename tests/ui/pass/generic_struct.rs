//! Generics, lifetimes and where clauses are repeated on the impl.

#![deny(warnings)]

use procon::Outbox;
use serde::Serialize;

#[derive(Outbox)]
#[procon(topic = "envelopes", entity = "envelope", key = key)]
struct Envelope<'a, K, T: Serialize>
where
    K: std::fmt::Display + Serialize,
{
    key: K,
    label: &'a str,
    data: T,
}

fn entity_of<T: Outbox>(_: &T) -> &'static str {
    T::ENTITY
}

fn main() {
    let envelope = Envelope {
        key: 42_u32,
        label: "answer",
        data: vec![1, 2, 3],
    };
    assert_eq!(entity_of(&envelope), "envelope");
    assert_eq!(envelope.topic(), "envelopes");
    assert_eq!(envelope.key(), "42");
}
