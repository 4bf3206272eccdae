use procon::{event_handler, Event, HandlerContext, HandlerError};

#[derive(serde::Deserialize)]
struct Account {
    id: i64,
}

#[event_handler(topic = "accounts", event = "account.created")]
fn on_account_created(event: Event<Account>) -> Result<(), HandlerError> {
    let _ = event.after.as_ref().map(|account| account.id);
    Ok(())
}

#[event_handler(topic = "accounts", event = "account.updated")]
fn on_account_updated(
    ctx: &mut HandlerContext<'_>,
    event: Event<Account>,
    previous: Option<Account>,
) -> Result<(), HandlerError> {
    let _ = (
        ctx,
        event.after.as_ref().map(|account| account.id),
        previous,
    );
    Ok(())
}

#[event_handler(topic = "accounts", event = "account.deleted")]
fn on_account_deleted() -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
