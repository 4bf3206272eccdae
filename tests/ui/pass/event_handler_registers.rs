//! An annotated function stays callable as written and is registered under its name, topic
//! and event, wherever it is written: at module level, in a nested module, in a function body,
//! or by a `macro_rules!` macro, whatever its payload type.

#![deny(warnings)]

use procon::runtime::consumer::{registered_handlers, Registration};
use procon::{event_handler, Event, HandlerContext, HandlerError};

#[derive(serde::Deserialize)]
struct Account {
    id: i64,
}

#[event_handler(topic = "accounts", event = "account.created")]
fn on_account_created(
    ctx: &mut HandlerContext<'_>,
    event: Event<Account>,
) -> Result<(), HandlerError> {
    let _conn = ctx.conn();
    let _id = event.after.as_ref().map(|account| account.id);
    Ok(())
}

mod nested {
    use procon::{event_handler, Event, HandlerContext, HandlerError};

    /// A keyword name, and a payload from another module.
    #[event_handler(topic = "accounts", event = "account.deleted")]
    pub(super) fn r#type(
        _: &mut HandlerContext<'_>,
        _: Event<super::Account>,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// An elided lifetime in the payload type.
#[event_handler(topic = "notes", event = "note.added")]
fn on_note_added(
    _: &mut HandlerContext<'_>,
    event: Event<std::borrow::Cow<'_, str>>,
) -> Result<(), HandlerError> {
    let _text: Option<&str> = event.after.as_deref();
    Ok(())
}

macro_rules! handler {
    ($name:ident, $topic:expr, $event:expr, $payload:ty) => {
        #[event_handler(topic = $topic, event = $event)]
        fn $name(ctx: &mut HandlerContext<'_>, event: Event<$payload>) -> Result<(), HandlerError> {
            let _ = (ctx, event);
            Ok(())
        }
    };
}

handler!(on_order_placed, "orders", "order.placed", serde_json::Value);

/// The registration named `name`; exactly one.
fn registration(handlers: &[Registration], name: &str) -> (&'static str, &'static str) {
    let found: Vec<_> = handlers.iter().filter(|h| h.name == name).collect();
    assert_eq!(found.len(), 1, "{name} in {handlers:?}");
    (found[0].topic, found[0].event)
}

fn main() {
    #[event_handler(topic = "payments", event = "payment.settled")]
    fn on_payment_settled(_: &mut HandlerContext<'_>, _: Event<u64>) -> Result<(), HandlerError> {
        Ok(())
    }

    // The functions are still there, with their signatures.
    type HandlerFn<T> = fn(&mut HandlerContext<'_>, Event<T>) -> Result<(), HandlerError>;
    let _: HandlerFn<Account> = on_account_created;
    let _: HandlerFn<Account> = nested::r#type;
    let _: HandlerFn<serde_json::Value> = on_order_placed;
    let _: HandlerFn<u64> = on_payment_settled;
    let _: HandlerFn<std::borrow::Cow<'static, str>> = on_note_added;

    let handlers = registered_handlers();
    assert_eq!(handlers.len(), 5, "{handlers:?}");
    assert_eq!(
        registration(&handlers, "on_account_created"),
        ("accounts", "account.created")
    );
    assert_eq!(
        registration(&handlers, "type"),
        ("accounts", "account.deleted")
    );
    assert_eq!(
        registration(&handlers, "on_order_placed"),
        ("orders", "order.placed")
    );
    assert_eq!(
        registration(&handlers, "on_note_added"),
        ("notes", "note.added")
    );
    assert_eq!(
        registration(&handlers, "on_payment_settled"),
        ("payments", "payment.settled")
    );
}
