use procon::{event_handler, Event, HandlerContext, HandlerError};

#[event_handler(topic = "accounts", event = "account.created")]
fn on_account_created<T: serde::de::DeserializeOwned>(
    ctx: &mut HandlerContext<'_>,
    event: Event<T>,
) -> Result<(), HandlerError> {
    let _ = (ctx, event);
    Ok(())
}

#[event_handler(topic = "accounts", event = "account.deleted")]
fn on_account_deleted(
    ctx: &mut HandlerContext<'_>,
    event: Event<String>,
) -> Result<(), HandlerError>
where
    String: Clone,
{
    let _ = (ctx, event);
    Ok(())
}

fn main() {}
