//! A struct written by a `macro_rules!` macro (whose tokens carry the macro's hygiene) derives
//! like any other, its field types and literals passed as fragments included.

#![deny(warnings)]

use procon::Outbox;

macro_rules! model {
    ($name:ident, $topic:expr, $key:ident: $key_ty:ty, $field:ident: $field_ty:ty) => {
        #[derive(Outbox)]
        #[procon(topic = $topic, key = $key)]
        struct $name {
            $key: $key_ty,
            #[procon(rename = "renamed")]
            $field: $field_ty,
            // Written in the macro: its tokens carry the macro's hygiene.
            version: u32,
            #[procon(skip)]
            hidden: u8,
        }
    };
}

model!(Order, "orders", order_id: u64, total: i64);

/// Serializes through `Outbox::serialize_payload` rather than `Serialize`.
struct Payload<'a, T>(&'a T);

impl<T: Outbox> serde::Serialize for Payload<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
}

fn main() {
    let order = Order {
        order_id: 9,
        total: -3,
        version: 2,
        hidden: 1,
    };
    assert_eq!(Order::ENTITY, "order");
    assert_eq!(order.topic(), "orders");
    assert_eq!(order.key(), "9");
    assert_eq!(
        serde_json::to_value(Payload(&order)).unwrap(),
        serde_json::json!({ "order_id": 9, "renamed": -3, "version": 2 }),
    );
    assert_eq!(order.hidden, 1);
}
