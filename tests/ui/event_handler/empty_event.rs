use procon::{event_handler, Event, HandlerContext, HandlerError};

#[derive(serde::Deserialize)]
struct Account {
    id: i64,
}

#[event_handler(topic = "accounts", event = "")]
fn on_account_created(
    ctx: &mut HandlerContext<'_>,
    event: Event<Account>,
) -> Result<(), HandlerError> {
    let _ = (ctx, event.after.as_ref().map(|account| account.id));
    Ok(())
}

#[event_handler(topic = " ", event = "account.deleted")]
fn on_account_deleted(
    ctx: &mut HandlerContext<'_>,
    event: Event<Account>,
) -> Result<(), HandlerError> {
    let _ = (ctx, event.after.as_ref().map(|account| account.id));
    Ok(())
}

fn main() {}
