use procon::{event_handler, Event, HandlerContext, HandlerError};

#[derive(serde::Deserialize)]
struct Account {
    id: i64,
}

#[event_handler(topic = "accounts", event = "account.created")]
fn on_account_created(ctx: &mut HandlerContext<'_>, account: Account) -> Result<(), HandlerError> {
    let _ = (ctx, account.id);
    Ok(())
}

// Several tokens: the whole type is underlined, once.
#[event_handler(topic = "accounts", event = "account.deleted")]
fn on_account_deleted(
    ctx: &mut HandlerContext<'_>,
    event: &Event<Account>,
) -> Result<(), HandlerError> {
    let _ = (ctx, event.after.as_ref().map(|account| account.id));
    Ok(())
}

fn main() {}
