use procon::{event_handler, Event, HandlerError};

#[derive(serde::Deserialize)]
struct Account {
    id: i64,
}

#[event_handler(topic = "accounts", event = "account.created")]
fn on_account_created(
    conn: &mut diesel::PgConnection,
    event: Event<Account>,
) -> Result<(), HandlerError> {
    let _ = (conn, event.after.as_ref().map(|account| account.id));
    Ok(())
}

fn main() {}
