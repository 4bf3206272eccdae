use procon::{event_handler, Event, HandlerContext, HandlerError};

#[derive(serde::Deserialize)]
struct Account {
    id: i64,
}

struct Accounts;

impl Accounts {
    #[event_handler(topic = "accounts", event = "account.created")]
    fn on_account_created(
        &self,
        ctx: &mut HandlerContext<'_>,
        event: Event<Account>,
    ) -> Result<(), HandlerError> {
        let _ = (ctx, event.after.as_ref().map(|account| account.id));
        Ok(())
    }
}

fn main() {
    let _ = Accounts::on_account_created;
}
