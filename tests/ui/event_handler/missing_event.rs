use procon::{event_handler, Event, HandlerContext, HandlerError};

#[derive(serde::Deserialize)]
struct Account {
    id: i64,
}

#[event_handler(topic = "accounts")]
fn on_account_created(
    ctx: &mut HandlerContext<'_>,
    event: Event<Account>,
) -> Result<(), HandlerError> {
    let _ = (ctx, event.after.as_ref().map(|account| account.id));
    Ok(())
}

// A bare attribute misses both keys: one error, not two.
#[event_handler]
fn on_account_deleted(
    ctx: &mut HandlerContext<'_>,
    event: Event<Account>,
) -> Result<(), HandlerError> {
    let _ = (ctx, event.after.as_ref().map(|account| account.id));
    Ok(())
}

fn main() {}
