//! The attribute registers a function exactly as `register_handler!` registers the
//! hand-written `impl EventHandler` from the `EventHandler` docs.

#![deny(warnings)]

use procon::runtime::consumer::registered_handlers;
use procon::{event_handler, Event, EventHandler, HandlerContext, HandlerError};

#[derive(serde::Deserialize)]
struct Account {
    email: String,
}

#[event_handler(topic = "accounts", event = "account.created")]
fn on_account_created(
    ctx: &mut HandlerContext<'_>,
    event: Event<Account>,
) -> Result<(), HandlerError> {
    let _conn = ctx.conn();
    let _email = event.after.as_ref().map(|account| &account.email);
    Ok(())
}

struct OnAccountUpdated;

impl EventHandler for OnAccountUpdated {
    const TOPIC: &'static str = "accounts";
    const EVENT: &'static str = "account.updated";
    type Payload = Account;

    fn handle(ctx: &mut HandlerContext<'_>, event: Event<Account>) -> Result<(), HandlerError> {
        let _conn = ctx.conn();
        let _email = event.after.as_ref().map(|account| &account.email);
        Ok(())
    }
}

procon::register_handler!(OnAccountUpdated);

fn main() {
    let mut handlers: Vec<_> = registered_handlers()
        .into_iter()
        .map(|h| (h.name, h.topic, h.event))
        .collect();
    handlers.sort();
    assert_eq!(
        handlers,
        [
            ("OnAccountUpdated", "accounts", "account.updated"),
            ("on_account_created", "accounts", "account.created"),
        ]
    );
}
