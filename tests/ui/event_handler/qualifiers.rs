use procon::{event_handler, Event, HandlerContext, HandlerError};

#[event_handler(topic = "accounts", event = "account.created")]
const fn on_account_created(
    ctx: &mut HandlerContext<'_>,
    event: Event<String>,
) -> Result<(), HandlerError> {
    let _ = ctx;
    std::mem::forget(event);
    Ok(())
}

#[event_handler(topic = "accounts", event = "account.updated")]
unsafe fn on_account_updated(
    ctx: &mut HandlerContext<'_>,
    event: Event<String>,
) -> Result<(), HandlerError> {
    let _ = (ctx, event);
    Ok(())
}

#[event_handler(topic = "accounts", event = "account.deleted")]
extern "C" fn on_account_deleted(
    ctx: &mut HandlerContext<'_>,
    event: Event<String>,
) -> Result<(), HandlerError> {
    let _ = (ctx, event);
    Ok(())
}

fn main() {}
