use procon::{event_handler, Event, HandlerContext, HandlerError};

#[derive(serde::Deserialize)]
struct Account {
    id: i64,
}

// The misspelled key is not also reported missing.
#[event_handler(topic = "accounts", evnt = "account.created")]
fn on_account_created(
    ctx: &mut HandlerContext<'_>,
    event: Event<Account>,
) -> Result<(), HandlerError> {
    let _ = (ctx, event.after.as_ref().map(|account| account.id));
    Ok(())
}

#[event_handler(topic = "accounts", event = "account.deleted", group = "billing")]
fn on_account_deleted(
    ctx: &mut HandlerContext<'_>,
    event: Event<Account>,
) -> Result<(), HandlerError> {
    let _ = (ctx, event.after.as_ref().map(|account| account.id));
    Ok(())
}

fn main() {}
