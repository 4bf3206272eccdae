//! Independent mistakes are all reported in one compilation, and the function is still
//! emitted unchanged: no follow-on error where `main` calls it.

use procon::{event_handler, Event, HandlerContext, HandlerError};

#[derive(serde::Deserialize)]
struct Account {
    id: i64,
}

#[event_handler(topik = "accounts", event = "", event = "account.created")]
async unsafe fn on_account_created<T>(
    ctx: &mut HandlerContext<'_>,
    event: Event<Account>,
    retries: u32,
) -> Result<(), HandlerError> {
    let _ = (ctx, event.after.as_ref().map(|account| account.id), retries);
    Ok(())
}

#[event_handler(topic = "accounts", event = "account.deleted")]
const fn on_account_deleted(id: i64) {
    let _ = id;
}

fn main() {
    on_account_deleted(1);
}
