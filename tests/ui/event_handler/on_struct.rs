use procon::event_handler;

#[event_handler(topic = "accounts", event = "account.created")]
#[derive(serde::Deserialize)]
struct Account {
    id: i64,
}

fn main() {
    // The struct is still emitted: no follow-on error here.
    let account = Account { id: 1 };
    let _ = account.id;
}
