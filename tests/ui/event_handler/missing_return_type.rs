use procon::{event_handler, Event, HandlerContext};

#[derive(serde::Deserialize)]
struct Account {
    id: i64,
}

#[event_handler(topic = "accounts", event = "account.created")]
fn on_account_created(ctx: &mut HandlerContext<'_>, event: Event<Account>) {
    let _ = (ctx, event.after.as_ref().map(|account| account.id));
}

fn main() {}
